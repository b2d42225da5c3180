"""Library behind `magcache profile ...`: find profiles by name, list, diff, import, export and plot them.

Nothing here prints: functions return data (or write the one file asked for) and raise typed errors.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import magcache_cli

from .errors import MagCacheError, ProfileError, UsageError
from .profile import Defaults, Profile, load_profile, profile_from_dict, profile_to_dict
from .ratios import SkipSettings, resample, timeline

PROFILE_PATH_ENV = "MAGCACHE_PROFILE_PATH"
PROFILE_SUFFIXES = (".yaml", ".yml")
PAD_MODES = ("auto", "add", "present")
EXPORT_FORMATS = ("diffusers", "json")


class MissingExtraError(MagCacheError):
    """An optional dependency (a `magcache-cli[...]` extra) is not installed."""


# ------------------------------------------------------------------------------------- finding profiles


def shipped_dir() -> Path:
    """The repository's top-level `profiles/` folder (curves published by the MagCache authors)."""
    # magcache_cli/profiles is a symlink to the repo's top-level profiles/ (so wheels carry copies)
    return Path(magcache_cli.__file__).parent / "profiles"


def profile_dirs() -> list[Path]:
    """Folders searched for profile names, first match wins: `MAGCACHE_PROFILE_PATH` entries
    (os.pathsep-separated, in order), then the shipped `profiles/`. A team's file shadows a shipped one."""
    env = os.environ.get(PROFILE_PATH_ENV, "")
    return [*(Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()), shipped_dir()]


def available_profiles() -> dict[str, Path]:
    """Profile name (file stem) -> file, for every `*.yaml` / `*.yml` in `profile_dirs()`, sorted by name."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix in PROFILE_SUFFIXES and f.is_file() and not f.name.startswith("."):
                found.setdefault(f.stem, f)
    return dict(sorted(found.items()))


def resolve_profile(ref: str | os.PathLike) -> Path:
    """A profile reference as users type it: an existing path wins, otherwise a profile name.

    Names are file stems looked up in `profile_dirs()` (e.g. `flux1-dev`). Raises ProfileError whose hint
    lists the available names.
    """
    text = os.fspath(ref)
    if text and Path(text).exists():
        return Path(text)
    names = available_profiles()
    if text in names:
        return names[text]
    listing = ", ".join(names) or "none installed"
    looks_like_path = "/" in text or os.sep in text or Path(text).suffix in PROFILE_SUFFIXES
    what = "profile file not found" if looks_like_path else "no profile file or profile named"
    raise ProfileError(f"{what}: {text!r}", path=text, hint=(
        f"pass a path to a profile file, or one of the names: {listing} (see `magcache profile list`; "
        f"more folders via {PROFILE_PATH_ENV})"))


def load_by_ref(ref: str | os.PathLike) -> tuple[Profile, Path]:
    """`resolve_profile` then `load_profile`."""
    path = resolve_profile(ref)
    return load_profile(path), path


def list_profiles() -> list[dict[str, Any]]:
    """One row per profile name: name, path, shipped, model, steps, guidance, branches, defaults, source.

    A file that does not validate is listed with `error` instead of the profile fields.
    """
    shipped = shipped_dir()
    rows = []
    for name, path in available_profiles().items():
        row: dict[str, Any] = {"name": name, "path": str(path), "shipped": path.resolve().parent == shipped.resolve()}
        try:
            p = load_profile(path)
        except ProfileError as e:
            rows.append({**row, "error": str(e)})
            continue
        d = p.defaults
        rows.append({**row, "model": p.model.id, "pipeline_class": p.model.pipeline_class,
                     "steps": p.calibration.steps, "guidance_mode": p.calibration.guidance_mode,
                     "branches": list(p.branches),
                     "defaults": {"threshold": d.threshold, "max_skip_steps": d.max_skip_steps,
                                  "retention_ratio": d.retention_ratio},
                     "source": p.source})
    return rows


# ------------------------------------------------------------------------------------------------ import


def parse_ratios(text: str, where: str = "--ratios") -> list[float]:
    """Numbers from a JSON list or from text separated by commas and/or whitespace (outer brackets allowed).

    Every value must be a finite number > 0; errors name the value's position in the list.
    """
    body = text.strip()
    while body[:1] == "[" and body[-1:] == "]":
        body = body[1:-1].strip()
    tokens = [t for t in re.split(r"[\s,]+", body) if t]
    if not tokens:
        raise UsageError(f"{where}: no numbers given", hint='pass the ratios, e.g. --ratios "1.0, 1.21, 1.11"')
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
        raise UsageError(f"cannot read --ratios-file {path}: {e}", hint="check the path") from e
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
        raise UsageError("--uncond-first only applies to an --interleaved list", hint="add --interleaved")
    if pad not in PAD_MODES:
        raise UsageError(f"unknown --pad {pad!r}", hint=f"use one of {', '.join(PAD_MODES)}")
    if interleaved and guidance_mode == "none":
        raise UsageError("an interleaved cond/uncond list needs guidance", hint="use --guidance-mode sequential or batched")
    if not interleaved and guidance_mode == "sequential":
        raise UsageError("sequential guidance needs one curve per branch",
                         hint="pass the interleaved cond/uncond list with --interleaved")
    k = 2 if interleaved else 1
    n = len(values)
    if n == 0:
        raise UsageError("no ratios given", hint="pass --ratios or --ratios-file")
    if n % k:
        raise UsageError(f"an interleaved list needs an even number of values, got {n}",
                         hint="check the list is complete: [c0, u0, c1, u1, ...]")
    pads = "the 1.0 pad" if k == 1 else "the two 1.0 pads"
    has_pad = all(v == 1.0 for v in values[:k])
    if pad == "auto":
        if steps is None:
            pad = "present" if has_pad else "add"
        elif n // k in (steps, steps - 1):
            pad = "present" if n // k == steps else "add"
        else:
            raise UsageError(
                f"{n} values do not fit --steps {steps}",
                hint=f"for {steps} steps give {steps * k} values with {pads} of step 0, or {(steps - 1) * k} without")
    if pad == "present" and not has_pad:
        raise UsageError(f"the list does not start with {pads} of step 0: it starts with {list(values[:k])}",
                         hint="pass --pad add to prepend it")
    padded = [1.0] * k * (pad == "add") + [float(v) for v in values]
    if steps is not None and len(padded) // k != steps:
        raise UsageError(f"{len(padded) // k} steps per branch, but --steps is {steps}",
                         hint="check --steps and --pad (present: the list starts with the step-0 pad)")
    if not interleaved:
        return {"main": padded}, k * (pad == "add")
    first, second = padded[0::2], padded[1::2]
    cond, uncond = (second, first) if uncond_first else (first, second)
    curves = {"uncond": uncond, "cond": cond} if guidance_mode == "batched" else {"cond": cond, "uncond": uncond}
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
    data = {
        "schema_version": 1,
        "model": {"id": model, "revision": revision, "pipeline_class": pipeline_class,
                  "transformer_class": transformer_class, "config_fingerprint": None, "stack": []},
        "scheduler": {"class": scheduler_class, "config": {}},
        "calibration": {"steps": len(first),
                        "guidance_mode": guidance_mode or ("none" if list(curves) == ["main"] else "sequential")},
        "source": source,
        "branches": {label: {"ratios": [float(v) for v in c]} for label, c in curves.items()},
        "defaults": {"threshold": base.threshold if threshold is None else threshold,
                     "max_skip_steps": base.max_skip_steps if max_skip_steps is None else max_skip_steps,
                     "retention_ratio": base.retention_ratio if retention_ratio is None else retention_ratio},
    }
    try:
        return profile_from_dict(data)
    except ProfileError as e:
        raise ProfileError(e.message, hint="check the ratios and the metadata options", field=e.field) from e


def import_ratios(values: Sequence[float], *, interleaved: bool = False, uncond_first: bool = False,
                  pad: str = "auto", steps: int | None = None, **meta: Any) -> tuple[Profile, int]:
    """`split_ratios` then `profile_from_curves` (meta: its keyword arguments); returns (profile, pads added)."""
    curves, added = split_ratios(values, interleaved=interleaved, uncond_first=uncond_first, pad=pad,
                                 steps=steps, guidance_mode=meta.get("guidance_mode"))
    return profile_from_curves(curves, **meta), added


# -------------------------------------------------------------------------------------------------- diff


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))  # an empty mapping reads as absent
        else:
            out[f"{prefix}{k}"] = v
    return out


def curve_difference(a: Sequence[float], b: Sequence[float], top: int = 3) -> dict[str, Any]:
    """|a - b| per step, `b` resampled to `a`'s length: max and where, mean, and the `top` steps that differ most."""
    rb = resample(b, len(a))
    d = [abs(x - y) for x, y in zip(a, rb)]
    worst = sorted(range(len(d)), key=lambda i: (-d[i], i))[:top]
    return {"max_abs_diff": round(max(d), 6), "max_at_step": d.index(max(d)),
            "mean_abs_diff": round(sum(d) / len(d), 6), "resampled": len(b) != len(a),
            "most_different": [{"step": i, "a": a[i], "b": rb[i], "abs_diff": round(d[i], 6)}
                               for i in worst if d[i] > 0]}


def _schedule(p: Profile, steps: int, settings: SkipSettings, policy: str) -> dict[str, Any]:
    # The same prediction `run` and `schedule` make (batched guidance is always joint; a second expert's
    # branches are simulated inside the steps it runs).
    from .quality import predict

    pred = predict(p, steps, settings, policy)
    return {"passes": pred["passes"], "total_passes": pred["total"], "branches": {
        label: {"timeline": timeline(f), "num_computed": sum(f), "num_skipped": len(f) - sum(f),
                "skipped": [i for i, x in enumerate(f) if not x]} for label, f in pred["flags"].items()}}


def diff_profiles(a: Profile, b: Profile, policy: str = "joint") -> dict[str, Any]:
    """What differs between two profiles, as plain data (`--json` prints it as is).

    - `metadata`: every field outside `branches` that differs (dotted paths), with both values;
    - `curves`: per branch present in both, `curve_difference` on A's step grid (B resampled if needed);
      `only_in_a` / `only_in_b` name the other branches;
    - `schedules`: the skip schedule both profiles give with the same settings (`quality.predict`, as `run`
      and `schedule` simulate it), once at A's defaults and steps and once at B's (once when they are equal):
      per-branch timelines, transformer passes, and the steps where the two schedules differ.
    """
    ma = _flatten({k: v for k, v in profile_to_dict(a).items() if k != "branches"})
    mb = _flatten({k: v for k, v in profile_to_dict(b).items() if k != "branches"})
    fields = list(ma) + [k for k in mb if k not in ma]
    metadata = [{"field": k, "a": ma.get(k), "b": mb.get(k)} for k in fields if ma.get(k) != mb.get(k)]
    common = [label for label in a.branches if label in b.branches]
    curves = {label: curve_difference(a.branches[label].ratios, b.branches[label].ratios) for label in common}
    schedules = []
    for who, p in (("a", a), ("b", b)):
        d = p.defaults
        settings = SkipSettings(d.threshold, d.max_skip_steps, d.retention_ratio)
        key = {"threshold": d.threshold, "max_skip_steps": d.max_skip_steps,
               "retention_ratio": d.retention_ratio, "steps": p.calibration.steps}
        if schedules and all(schedules[0][k] == v for k, v in key.items()):
            schedules[0]["defaults_of"] = "a+b"
            continue
        sa = _schedule(a, p.calibration.steps, settings, policy)
        sb = _schedule(b, p.calibration.steps, settings, policy)
        ta, tb = sa["branches"], sb["branches"]
        differ = {label: [i for i, (x, y) in enumerate(zip(ta[label]["timeline"], tb[label]["timeline"])) if x != y]
                  for label in common}
        schedules.append({"defaults_of": who, **key, "policy": policy, "a": sa, "b": sb, "differ_at": differ})
    return {"metadata": metadata, "curves": curves, "compared_on_steps": a.calibration.steps,
            "only_in_a": [x for x in a.branches if x not in b.branches],
            "only_in_b": [x for x in b.branches if x not in a.branches], "schedules": schedules}


# ------------------------------------------------------------------------------------------------ export


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
        raise UsageError(f"the profile has no branch {chosen!r}", hint=f"use --branch with one of: {', '.join(labels)}")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}", hint="pass the number of steps you will run")
    d, m = p.defaults, p.model
    origin = p.source or "measured with `magcache calibrate`"
    head = [f"MagCache for {m.id} ({m.pipeline_class}), from the magcache profile {name}.", f"Source: {origin}",
            f"Curve of {p.calibration.steps} steps; MagCacheConfig resamples it to num_inference_steps."]
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
            "source": p.source}


# -------------------------------------------------------------------------------------------------- plot

_MARKS = "●×+o◆"


def ascii_chart(curves: Mapping[str, Sequence[float]], stds: Mapping[str, Sequence[float] | None] | None = None,
                height: int = 10, width: int = 72) -> list[str]:
    """A text chart of ratio curves: one column per step (resampled to `width` if longer), `height` rows.

    Branch k is drawn with `●×+o◆`[k], `*` where several branches meet, `·` the ±std band, `┈` the
    1.0 line. The y axis is labelled at the top (max), at 1.0 and at the bottom (min).
    """
    n = max(len(c) for c in curves.values())
    cols = min(n, width)
    series = {label: resample(c, cols) for label, c in curves.items()}
    bands = {label: resample(s, cols) for label, s in (stds or {}).items() if s is not None and label in series}
    lows = [v - bands.get(label, [0.0] * cols)[i] for label, c in series.items() for i, v in enumerate(c)]
    highs = [v + bands.get(label, [0.0] * cols)[i] for label, c in series.items() for i, v in enumerate(c)]
    lo, hi = min([*lows, 1.0]), max([*highs, 1.0])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.01, hi + 0.01

    def row(v: float) -> int:
        return min(height - 1, max(0, round((hi - v) / (hi - lo) * (height - 1))))

    grid = [[" "] * cols for _ in range(height)]
    grid[row(1.0)] = ["┈"] * cols
    for label, s in bands.items():
        for x, (v, e) in enumerate(zip(series[label], s)):
            for y in range(row(v + e), row(v - e) + 1):
                grid[y][x] = "·"
    owner: dict[tuple[int, int], str] = {}
    for k, (label, c) in enumerate(series.items()):
        for x, v in enumerate(c):
            y = row(v)
            grid[y][x] = "*" if owner.get((y, x), label) != label else _MARKS[k % len(_MARKS)]
            owner[(y, x)] = label
    labels = {0: f"{hi:.4f}", row(1.0): "1.0000", height - 1: f"{lo:.4f}"}
    lines = [f"{labels.get(y, ''):>7} {'┤' if y in labels else '│'}{''.join(r)}" for y, r in enumerate(grid)]
    lines.append(" " * 8 + "└" + "─" * cols)
    last = f"step {n - 1}"
    lines.append(" " * 9 + "0" + last.rjust(cols - 1))
    keys = [f"{_MARKS[k % len(_MARKS)]} {label}" for k, label in enumerate(series)]
    extra = ["* several"] if len(series) > 1 else []
    lines.append(" " * 9 + "  ".join(keys + extra + (["· ±ratio_std"] if bands else []) + ["┈ 1.0"]))
    return lines


def plot_png(p: Profile, output: str | os.PathLike, title: str) -> Path:
    """Draw every branch's ratio curve with its ±ratio_std band and save it (format from the suffix)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plotting to a file needs matplotlib, which is not installed",
                                hint="pip install 'magcache-cli[plot]', or leave out --output for a terminal chart") from None
    out = Path(output)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, b in p.branches.items():
        steps = list(range(len(b.ratios)))
        line = ax.plot(steps, b.ratios, marker=".", label=label)[0]
        if b.ratio_std is not None:
            ax.fill_between(steps, [r - s for r, s in zip(b.ratios, b.ratio_std)],
                            [r + s for r, s in zip(b.ratios, b.ratio_std)], color=line.get_color(), alpha=0.2,
                            label=f"{label} ±ratio_std")
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    if all(b.ratio_std is None for b in p.branches.values()):
        title += "\n(no ratio_std in this profile: no band)"
    ax.set(title=title, xlabel="step", ylabel="magnitude ratio ‖r_t‖ / ‖r_{t-1}‖")
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=120)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write {out}: {e}", hint="check the folder and use a .png, .svg or .pdf name") from e
    return out
