"""The Python API: apply a profile to a pipeline you already have, or calibrate it in your own code.

    import magcache_cli as magcache

    profile = magcache.load_profile("flux.yaml")          # a path, or the name of a shipped profile
    with magcache.apply(pipe, profile, threshold=0.12) as cache:
        image = pipe("a cat playing chess", num_inference_steps=28).images[0]
    report = cache.report                                 # per-branch computed/skipped steps, passes

    profile = magcache.calibrate(pipe, ["a cat playing chess"], seeds=[0, 1], num_inference_steps=28)
    magcache.save_profile(profile, "flux.yaml")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import ratios
from .errors import CompatibilityError
from .hooks import CallReport, MagCacheHooks
from .profile import Profile, config_fingerprint
from .profile import load_profile as _load_profile_file
from .replay import merge_reports, plans_by_denoiser, settings_from
from .stacks import find_denoisers

_ATTR = "_magcache_cache"


def load_profile(ref: str | os.PathLike) -> Profile:
    """Load a profile from a path, or by the name of a shipped profile (see `magcache profile list`)."""
    try:
        from .profile_tools import resolve_profile
    except ImportError:  # profile tools are optional for the API
        return _load_profile_file(ref)
    return _load_profile_file(resolve_profile(str(ref)))


def check_compatibility(pipe, profile: Profile, force: bool = False) -> list[str]:
    """Refuse a profile measured on another transformer (class or config); return warnings for softer drift.

    `force=True` turns the refusal into a warning.
    """
    _, denoiser = find_denoisers(pipe)[0]
    problems, warnings = [], []
    cls = type(denoiser).__name__
    if profile.model.transformer_class and profile.model.transformer_class != cls:
        problems.append(f"model.transformer_class: profile has {profile.model.transformer_class}, pipeline has {cls}")
    fp = profile.model.config_fingerprint
    if fp and fp != config_fingerprint(dict(getattr(denoiser, "config", {}) or {})):
        problems.append("model.config_fingerprint: the transformer config differs from the calibrated one "
                        f"({profile.model.id})")
    sched = profile.scheduler.class_name
    if sched and sched != type(pipe.scheduler).__name__:
        warnings.append(f"scheduler.class: profile calibrated with {sched}, pipeline uses {type(pipe.scheduler).__name__}")
    if problems and not force:
        raise CompatibilityError("profile does not match this model: " + "; ".join(problems),
                                 hint="calibrate this model (magcache calibrate), or pass --force / force=True to use it anyway")
    return [f"forced: {p}" for p in problems] + warnings


def call_warnings(profile: Profile, call_kwargs: dict[str, Any]) -> list[str]:
    """Name each call setting that differs from the calibration (the curves may not transfer).

    A different step count is reported by the hooks, which resample the curves."""
    cal = profile.calibration
    pairs = [("guidance_scale", cal.guidance_scale, call_kwargs.get("guidance_scale")),
             ("height", cal.height, call_kwargs.get("height")),
             ("width", cal.width, call_kwargs.get("width")),
             ("num_frames", cal.num_frames, call_kwargs.get("num_frames"))]
    out = []
    for name, was, now in pairs:
        if was is not None and now is not None and was != now:
            out.append(f"calibration.{name}: profile measured at {was}, running at {now}")
    return out


class MagCache:
    """A profile applied to a pipeline. `report` is the last pipeline call's `CallReport`."""

    def __init__(self, pipe, profile: Profile, settings: ratios.SkipSettings, policy: str, force: bool):
        self.pipe, self.profile, self.settings, self.policy = pipe, profile, settings, policy
        self.warnings = check_compatibility(pipe, profile, force)
        denoisers = find_denoisers(pipe)
        plans = plans_by_denoiser(profile, settings, policy, [n for n, _ in denoisers])
        self._all = [MagCacheHooks(pipe, n, mode="run", plan=plans[n], prefix="" if k == 0 else f"{n}.")
                     for k, (n, _) in enumerate(denoisers) if n in plans]

    @property
    def hooks(self) -> MagCacheHooks:
        """The hooks of the first denoiser (the only one, except in two-expert pipelines)."""
        return self._all[0]

    @property
    def all_hooks(self) -> list[MagCacheHooks]:
        return list(self._all)

    @property
    def reports(self) -> list[CallReport]:
        """One report per pipeline call; with two experts, their reports are merged."""
        per = [[r for r in h.reports if r.calls] for h in self._all]
        return [merge_reports(rs) for rs in zip(*per)] if len(per) > 1 else per[0]

    @property
    def report(self) -> CallReport | None:
        reports = self.reports
        return reports[-1] if reports else None

    def apply(self) -> "MagCache":
        current = getattr(self.pipe, _ATTR, None)
        if current is not None and current is not self:
            current.remove()  # applying twice replaces, never stacks
        for h in self._all:
            h.install()
        setattr(self.pipe, _ATTR, self)
        return self

    def remove(self) -> None:
        for h in reversed(self._all):
            h.remove()
        if getattr(self.pipe, _ATTR, None) is self:
            delattr(self.pipe, _ATTR)

    def __enter__(self) -> "MagCache":
        return self.apply()

    def __exit__(self, *exc) -> None:
        self.remove()


def apply(pipe, profile: Profile | str | os.PathLike, *, threshold: float | None = None,
          max_skip_steps: int | None = None, retention_ratio: float | None = None,
          branch_policy: str = "joint", force: bool = False) -> MagCache:
    """Apply a profile to `pipe` (hooks installed now); use as a context manager or call `.remove()`."""
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    settings = settings_from(profile, threshold, max_skip_steps, retention_ratio)
    return MagCache(pipe, profile, settings, branch_policy, force).apply()


def remove(pipe) -> None:
    """Remove whatever profile is applied to `pipe` (no-op if none)."""
    current = getattr(pipe, _ATTR, None)
    if current is not None:
        current.remove()


def calibrate(pipe, prompts: list[str] | str, seeds: list[int] | int = 0, *, model_id: str | None = None,
              **call_kwargs) -> Profile:
    """Calibrate `pipe` on prompts × seeds (full inference, outputs unchanged) and return the Profile."""
    from .calibration import calibrate as _calibrate

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    model_id = model_id or getattr(getattr(pipe, "config", None), "_name_or_path", None) or type(pipe).__name__
    _, denoiser = find_denoisers(pipe)[0]
    p = next(iter(denoiser.parameters()), None)
    dtype = str(p.dtype).removeprefix("torch.") if p is not None else None
    device = str(p.device) if p is not None else None
    return _calibrate(pipe, prompts, seeds, call_kwargs, model_id=str(model_id), dtype=dtype, device=device).profile


def save_profile(profile: Profile, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a profile atomically (refuses to overwrite unless `overwrite=True`)."""
    from .profile import save_profile as _save

    return _save(profile, path, overwrite=overwrite)
