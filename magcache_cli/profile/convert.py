"""Profiles from and to other formats: published ratio lists (plain or interleaved), diffusers' MagCacheConfig,
JSON."""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from magcache_cli.errors import ProfileError, UsageError
from magcache_cli.profile.diff import curve_difference
from magcache_cli.profile.schema import (
    BranchCurves,
    Calibration,
    Defaults,
    ModelInfo,
    Profile,
    SchedulerInfo,
)
from magcache_cli.profile.validate import validated
from magcache_cli.types import ExportFormat, GuidanceMode, PadMode

PAD_MODES = PadMode.values()


EXPORT_FORMATS = ExportFormat.values()


def parse_ratios(text: str, where: str = "`ratios`") -> list[float]:
    """Numbers from a JSON list or from text separated by commas and/or whitespace (outer brackets allowed).

    Every value must be a finite number > 0; errors name the value's position in the list.
    """
    body = text.strip()
    while body[:1] == "[" and body[-1:] == "]":
        body = body[1:-1].strip()
    tokens = [t for t in re.split(r"[\s,]+", body) if t]
    if not tokens:
        raise UsageError(f"{where}: no numbers given", hint='pass the ratios, e.g. "1.0, 1.21, 1.11"')
    values = []
    for i, tok in enumerate(tokens):
        try:
            v = float(tok)
        except ValueError:
            raise UsageError(f"{where}: value {i} is not a number: {tok!r}",
                             hint="give numbers separated by commas or spaces, or a JSON list") from None
        if not math.isfinite(v) or v <= 0:
            raise UsageError(f"{where}: value {i} must be a finite number > 0, got {tok}",
                             hint="magnitude ratios are norms over norms: check the list")
        values.append(v)
    return values


def read_ratios_file(path: str | os.PathLike) -> list[float]:
    """`parse_ratios` on a file's text (a JSON list, or numbers separated by commas and/or whitespace)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read `ratios_file` {path}: {e}", hint="check the path") from e
    return parse_ratios(text, where=str(path))


def split_ratios(
    values: Sequence[float], *, interleaved: bool = False, uncond_first: bool = False, pad: str = "auto",
    steps: int | None = None, guidance_mode: str | None = None,
) -> tuple[dict[str, list[float]], int]:
    """A plain list of ratios as per-branch curves; returns `(curves, number of 1.0 pads added)`.

    - Interleaved lists are by call order, `[c0, u0, c1, u1, ...]` (the official MagCache scripts call the
      conditional pass first); `uncond_first` reads `[u0, c0, u1, c1, ...]` (ComfyUI-MagCache's order).
      A plain list is one curve, `main`.
    - Step 0 has no previous residual, so curves start with a 1.0 pad (one per branch). `pad="present"`:
      the list starts with it; `"add"`: prepend it; `"auto"`: with `steps`, a list of `steps` values per
      branch has it and `steps - 1` gets it, without `steps` it is present iff the list starts with it.
    - Branch order is the order run uses: cond then uncond (diffusers pipelines call the conditional pass
      first), or uncond then cond for `guidance_mode="batched"` (`torch.cat([negative, positive])`).
    """
    if uncond_first and not interleaved:
        raise UsageError("`uncond_first` only applies to an `interleaved` list", hint="add `interleaved=True`")
    if pad not in PAD_MODES:
        raise UsageError(f"unknown `pad` {pad!r}", hint=f"use one of {', '.join(PAD_MODES)}")
    if interleaved and guidance_mode == GuidanceMode.NONE:
        raise UsageError("an interleaved cond/uncond list needs guidance", hint="use `guidance_mode=sequential` or `guidance_mode=batched`")
    if not interleaved and guidance_mode == GuidanceMode.SEQUENTIAL:
        raise UsageError("sequential guidance needs one curve per branch",
                         hint="pass the interleaved cond/uncond list with `interleaved=True`")
    k = 2 if interleaved else 1
    n = len(values)
    if n == 0:
        raise UsageError("no ratios given", hint="pass `ratios` or `ratios_file`")
    if n % k:
        raise UsageError(f"an interleaved list needs an even number of values, got {n}",
                         hint="check the list is complete: [c0, u0, c1, u1, ...]")
    pads = "the 1.0 pad" if k == 1 else "the two 1.0 pads"
    has_pad = all(v == 1.0 for v in values[:k])
    if pad == PadMode.AUTO:
        if steps is None:
            pad = "present" if has_pad else "add"
        elif n // k in (steps, steps - 1):
            pad = "present" if n // k == steps else "add"
        else:
            raise UsageError(
                f"{n} values do not fit `steps` {steps}",
                hint=f"for {steps} steps give {steps * k} values with {pads} of step 0, or {(steps - 1) * k} without")
    if pad == "present" and not has_pad:
        raise UsageError(f"the list does not start with {pads} of step 0: it starts with {list(values[:k])}",
                         hint="pass `pad=add` to prepend it")
    padded = [1.0] * k * (pad == "add") + [float(v) for v in values]
    if steps is not None and len(padded) // k != steps:
        raise UsageError(f"{len(padded) // k} steps per branch, but `steps` is {steps}",
                         hint="check `steps` and `pad` (present: the list starts with the step-0 pad)")
    if not interleaved:
        return {"main": padded}, k * (pad == "add")
    first, second = padded[0::2], padded[1::2]
    cond, uncond = (second, first) if uncond_first else (first, second)
    curves = {"uncond": uncond, "cond": cond} if guidance_mode == GuidanceMode.BATCHED else {"cond": cond, "uncond": uncond}
    return curves, k * (pad == "add")


def profile_from_curves(
    curves: Mapping[str, Sequence[float]], *, model: str, pipeline_class: str, transformer_class: str,
    guidance_mode: str | None = None, threshold: float | None = None, max_skip_steps: int | None = None,
    retention_ratio: float | None = None, source: str | None = None, scheduler_class: str | None = None,
    revision: str | None = None,
) -> Profile:
    """A schema-v1 profile from curves published elsewhere (`profile import`, the shipped profiles).

    Nothing was measured here, so the measurement fields stay empty and `source` says where the numbers
    come from. `calibration.steps` is the curves' length; defaults left as None are the schema's defaults.
    Guidance mode: given, else `none` for a single `main` curve and `sequential` otherwise.
    """
    base = Defaults()
    first = next(iter(curves.values()), [])
    profile = Profile(
        model=ModelInfo(id=model, revision=revision, pipeline_class=pipeline_class,
                        transformer_class=transformer_class),
        scheduler=SchedulerInfo(class_name=scheduler_class),
        calibration=Calibration(steps=len(first),
                                guidance_mode=guidance_mode or ("none" if list(curves) == ["main"] else "sequential")),
        source=source,
        branches={label: BranchCurves(ratios=[float(v) for v in c]) for label, c in curves.items()},
        defaults=Defaults(threshold=base.threshold if threshold is None else threshold,
                          max_skip_steps=base.max_skip_steps if max_skip_steps is None else max_skip_steps,
                          retention_ratio=base.retention_ratio if retention_ratio is None else retention_ratio),
    )
    try:
        return validated(profile)
    except ProfileError as e:
        raise ProfileError(e.message, hint="check the ratios and the metadata options", field=e.field) from e


def import_ratios(values: Sequence[float], *, interleaved: bool = False, uncond_first: bool = False,
                  pad: str = "auto", steps: int | None = None, **meta: Any) -> tuple[Profile, int]:
    """`split_ratios` then `profile_from_curves` (meta: its keyword arguments); returns (profile, pads added)."""
    curves, added = split_ratios(values, interleaved=interleaved, uncond_first=uncond_first, pad=pad,
                                 steps=steps, guidance_mode=meta.get("guidance_mode"))
    return profile_from_curves(curves, **meta), added


def _py_list(values: Sequence[float], indent: str, width: int = 100) -> str:
    lines, line = [], ""
    for text in (repr(float(v)) for v in values):
        if line and len(indent) + len(line) + len(text) + 2 > width:
            lines.append(indent + line.rstrip())
            line = ""
        line += text + ", "
    lines.append(indent + line.rstrip())
    return "[\n" + "\n".join(lines) + "\n" + indent[:-4] + "]"


def export_diffusers(p: Profile, name: str, branch: str | None = None, steps: int | None = None) -> str:
    """Python source that builds diffusers' `MagCacheConfig` from the profile.

    diffusers takes one `mag_ratios` curve for every pass. With several branches the snippet uses `branch`
    (default `cond`, else the first) and says how far the others are from it; when they differ it also
    lists every branch's curve in `MAG_RATIOS_BY_BRANCH`. `steps` sets `num_inference_steps` (default: the
    calibrated step count; diffusers resamples the curve to it by nearest index).
    """
    labels = list(p.branches)
    chosen = branch or ("cond" if "cond" in labels else labels[0])
    if chosen not in p.branches:
        raise UsageError(f"the profile has no branch {chosen!r}", hint=f"use `branch` with one of: {', '.join(labels)}")
    if steps is not None and steps < 1:
        raise UsageError(f"`steps` must be >= 1, got {steps}", hint="pass the number of steps you will run")
    d, m = p.defaults, p.model
    origin = p.source or "measured with `magcache calibrate`"
    head = [f"MagCache for {m.id} ({m.pipeline_class}), from the magcache profile {name}.", f"Source: {origin}",
            f"Curve of {p.calibration.steps} steps; MagCacheConfig resamples it to num_inference_steps."]
    if d.forecast:
        head.append(f"The profile's defaults set forecast {d.forecast:g}; diffusers' hook has no forecast and reuses "
                    "the last residual, so its outputs differ from `magcache run` with this profile.")
    body = []
    others = [x for x in labels if x != chosen]
    if others:
        diffs = {x: curve_difference(p.branches[chosen].ratios, p.branches[x].ratios) for x in others}
        head.append(f"diffusers' MagCacheConfig takes one curve for every pass; this profile has per-branch "
                    f"curves ({', '.join(labels)}). Using {chosen!r}.")
        for x, c in diffs.items():
            head.append(f"{x} vs {chosen}: identical" if c["max_abs_diff"] == 0 else
                        f"{x} vs {chosen}: max |difference| {c['max_abs_diff']:g} at step {c['max_at_step']}, "
                        f"mean {c['mean_abs_diff']:g}")
        if any(c["max_abs_diff"] > 0 for c in diffs.values()):
            body.append("MAG_RATIOS_BY_BRANCH = {")
            body += [f"    {x!r}: {_py_list(p.branches[x].ratios, ' ' * 8)}," for x in labels]
            body += ["}", f"mag_ratios = MAG_RATIOS_BY_BRANCH[{chosen!r}]"]
    if not body:
        body.append(f"mag_ratios = {_py_list(p.branches[chosen].ratios, ' ' * 4)}")
    config = ["config = MagCacheConfig(", "    mag_ratios=mag_ratios,", f"    threshold={d.threshold!r},",
              f"    max_skip_steps={d.max_skip_steps!r},", f"    retention_ratio={d.retention_ratio!r},",
              f"    num_inference_steps={steps or p.calibration.steps},", ")",
              f"# pipe.transformer.enable_cache(config)  # pipe: your {m.pipeline_class}"]
    comments = [line for text in head for line in textwrap.wrap(text, 100, initial_indent="# ", subsequent_indent="#   ",
                                                                 break_long_words=False, break_on_hyphens=False)]
    return "\n".join([*comments, "from diffusers import MagCacheConfig", "", *body, "", *config]) + "\n"


def export_json(p: Profile, name: str) -> dict[str, Any]:
    """The curves and defaults as plain lists and numbers."""
    d = p.defaults
    return {"profile": name, "model": p.model.id, "steps": p.calibration.steps,
            "guidance_mode": p.calibration.guidance_mode,
            "branches": {label: list(b.ratios) for label, b in p.branches.items()},
            "threshold": d.threshold, "max_skip_steps": d.max_skip_steps, "retention_ratio": d.retention_ratio,
            "forecast": d.forecast, "source": p.source}
