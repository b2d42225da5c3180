"""`profile verify`: re-measure a profile's curves on one prompt × seed and say how far they moved, and what
that does to the skip schedule at the profile's defaults. The command a team runs in CI after upgrading
diffusers, torch, the weights or an adapter.

The tolerance comes from the demo-model measurements (docs/workflows.md, benchmarks/lora_quant.py), as
the mean |Δ ratio| per step (max over branches) between the profile and one re-measured calibration pair:
0.0042-0.0044 on the same weights, also quantized (torchao int8 / float8, quanto int8, bfloat16), where the
profile needs nothing; 0.0103 with the bold LoRA at scale 0.25 (recalibrating gained 0-0.5 dB at equal
passes); 0.0178 at 0.5 and 0.0267 at 1.0 (recalibrating gained 0.6-4.3 dB). 0.012 lies between: about 2.7×
the same-weights spread, below the LoRA at scale 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from magcache_cli.profile.diff import curve_difference, diff_profiles
from magcache_cli.profile.schema import Profile
from magcache_cli.runner.calibrate import calibrate

# mean |Δ ratio| per step (max over branches) past which `verify` fails
DEFAULT_TOLERANCE = 0.012


@dataclass
class VerifyResult:
    distance: float  # max over branches of the mean |Δ ratio| per step
    max_abs_diff: float  # max over branches and steps of |Δ ratio|
    tolerance: float
    prompt: str
    seed: int
    curves: dict[str, dict[str, Any]]  # per branch: profile.diff.curve_difference
    schedule: dict[str, Any]  # at the profile's defaults: passes before / after, steps that differ
    fresh: Profile = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.distance <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "distance": self.distance, "tolerance": self.tolerance,
                "max_abs_diff": self.max_abs_diff, "prompt": self.prompt, "seed": self.seed, "curves": self.curves,
                "schedule": self.schedule, "warnings": list(self.warnings)}


def _schedule(profile: Profile, fresh: Profile) -> dict[str, Any]:
    """The skip schedule of the profile's curves and of the fresh ones, at the profile's defaults."""
    d = profile.defaults
    sched = diff_profiles(profile, fresh)["schedules"][0]
    return {"threshold": d.threshold, "max_skip_steps": d.max_skip_steps, "retention_ratio": d.retention_ratio,
            "steps": profile.calibration.steps, "passes_profile": sched["a"]["passes"],
            "passes_now": sched["b"]["passes"], "total_passes": sched["a"]["total_passes"],
            "differ_at": {k: v for k, v in sched["differ_at"].items() if v}}


def verify(pipe, profile: Profile, call_kwargs: dict[str, Any], *, prompt: str | None = None,
           seed: int | None = None, tolerance: float | None = None, inputs=None,
           on_step=None) -> VerifyResult:
    """Calibrate `pipe` on one prompt × seed (the profile's first, unless given) with `call_kwargs` and compare
    the curves with the profile's, branch by branch (`curve_difference`, the fresh curve resampled to the
    profile's steps). `distance` is the largest per-branch mean |Δ ratio|; `ok` when it is within `tolerance`
    (DEFAULT_TOLERANCE when None). Branches only one side has are named in `warnings`."""
    cal = profile.calibration
    prompt = prompt if prompt is not None else (cal.prompts[0] if cal.prompts else "")
    seed = int(seed if seed is not None else (cal.seeds[0] if cal.seeds else 0))
    fresh = calibrate(pipe, [prompt], [seed], call_kwargs, model_id=profile.model.id, revision=profile.model.revision,
                      defaults={"threshold": profile.defaults.threshold,
                                "max_skip_steps": profile.defaults.max_skip_steps,
                                "retention_ratio": profile.defaults.retention_ratio},
                      inputs=inputs, on_step=on_step).profile
    common = [lb for lb in profile.branches if lb in fresh.branches]
    warnings = [f"branch {lb}: only in the {'profile' if lb in profile.branches else 're-measured curves'}"
                for lb in list(profile.branches) + list(fresh.branches) if lb not in common]
    curves = {lb: curve_difference(profile.branches[lb].ratios, fresh.branches[lb].ratios) for lb in common}
    distance = max((c["mean_abs_diff"] for c in curves.values()), default=float("inf"))
    worst = max((c["max_abs_diff"] for c in curves.values()), default=float("inf"))
    return VerifyResult(distance=distance, max_abs_diff=worst,
                        tolerance=DEFAULT_TOLERANCE if tolerance is None else float(tolerance), prompt=prompt,
                        seed=seed, curves=curves, schedule=_schedule(profile, fresh), fresh=fresh, warnings=warnings)

