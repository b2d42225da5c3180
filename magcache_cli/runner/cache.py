"""A profile applied to a pipeline: the hooks for every denoiser, the compatibility guard, the reports."""

from __future__ import annotations

from typing import Any

from magcache_cli.core import rule as ratios
from magcache_cli.core.branches import denoiser_prefix
from magcache_cli.core.calls import StepCalls
from magcache_cli.core.hooks import StackHooks
from magcache_cli.core.report import CallReport, merge_reports
from magcache_cli.core.skipping import SkippingHooks
from magcache_cli.core.stacks import find_denoisers
from magcache_cli.errors import CompatibilityError
from magcache_cli.log import warn
from magcache_cli.profile.plan import plans_by_denoiser
from magcache_cli.profile.schema import Profile, config_fingerprint
from magcache_cli.runner.provenance import setup_warning

_ATTR = "_magcache_cache"


def check_compatibility(pipe, profile: Profile, force: bool = False) -> list[str]:
    """Refuse a profile measured on another transformer (class or config); return warnings for softer drift
    (another scheduler; other LoRA adapters, quantization or transformer file: one warning naming them).

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
    setup = setup_warning(profile.model, pipe)  # LoRAs, quantization, a single file: same architecture
    if setup:
        warnings.append(setup)
    if problems and not force:
        raise CompatibilityError("profile does not match this model: " + "; ".join(problems),
                                 hint="calibrate this model, or pass `force=True` to use the profile anyway")
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
        self.warnings: list[str] = []
        for w in check_compatibility(pipe, profile, force):
            warn(w, self.warnings)
        denoisers = find_denoisers(pipe)
        plans = plans_by_denoiser(profile, settings, policy, [n for n, _ in denoisers])
        shared, calls = plans.get(denoisers[0][0]), StepCalls()
        self._all = [SkippingHooks(pipe, n, plans[n], prefix="" if plans[n] is shared else denoiser_prefix(k, n),
                                   calls=calls, gated=k > 0)
                     for k, (n, _) in enumerate(denoisers) if n in plans]

    def start_call(self, steps: int | None = None) -> None:
        """A pipeline call of `steps` steps starts now (the runner's call start; without it the scheduler's
        `set_timesteps` or the first denoiser call starts it)."""
        for h in self._all:
            h.start_call(steps)

    @property
    def hooks(self) -> StackHooks:
        """The hooks of the first denoiser (the only one, except in two-expert pipelines)."""
        return self._all[0]

    @property
    def all_hooks(self) -> list[StackHooks]:
        return list(self._all)

    @property
    def reports(self) -> list[CallReport]:
        """One report per pipeline call; with several denoisers, their reports are merged."""
        per = [rs for rs in ([r for r in h.reports if r.calls] for h in self._all) if rs]
        if not per:
            return []
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
