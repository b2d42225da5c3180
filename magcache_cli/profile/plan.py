"""A profile as something to run: its curves split per denoiser into RunPlans, the skip settings it defaults to,
and what a run would skip (`predict`) without loading a model."""

from __future__ import annotations

from dataclasses import dataclass

from magcache_cli.core import rule as ratios
from magcache_cli.core.branches import split_label
from magcache_cli.core.rule import RunPlan, effective_policy
from magcache_cli.errors import BranchError
from magcache_cli.profile.schema import Profile
from magcache_cli.types import BranchPolicy, GuidanceMode


def profile_denoisers(profile: Profile) -> list[str]:
    """The denoisers a profile has curves for: `transformer`, then any expert named in labels like
    `transformer_2.cond`."""
    owners = [split_label(label)[0] for label in profile.branches if split_label(label)[0]]
    return list(dict.fromkeys(["transformer", *owners]))


def plans_by_denoiser(profile: Profile, settings: ratios.SkipSettings, policy: str,
                      denoisers: list[str]) -> dict[str, RunPlan]:
    """Split the profile's branches by denoiser: `transformer_2.cond` belongs to `transformer_2`; unprefixed
    branches (`cond`) to the first denoiser and to every other model of the pipeline that owns no branch of its
    own, as one shared plan (a model such as Ideogram 4's unconditional transformer serves one of them; the
    shared call order says which). Each plan has its curves and the window of steps its denoiser runs."""
    policy = BranchPolicy.parse(policy, "branch_policy")
    groups: dict[str, dict] = {}
    for label, b in profile.branches.items():
        owner, local = split_label(label)
        name = owner or denoisers[0]  # `cond` and `transformer.cond` both belong to the first denoiser
        if name not in denoisers:
            raise BranchError(f"profile branch {label} is for a denoiser `{owner}` this pipeline does not have",
                              hint=f"its denoisers: {', '.join(denoisers)}")
        groups.setdefault(name, {})[local] = b
    cal = profile.calibration
    plans = {name: RunPlan({lb: list(b.ratios) for lb, b in bs.items()}, cal.guidance_mode, settings, policy,
                           cal.steps, next(iter(bs.values())).active, _branch_active(bs))
             for name, bs in groups.items()}
    shared = plans.get(denoisers[0])
    if shared is not None:
        for name in denoisers[1:]:
            plans.setdefault(name, shared)  # the same object: one namespace of labels
    return plans


def _branch_active(branches: dict) -> dict[str, list[int]] | None:
    """The branches of one denoiser that run on fewer steps than its first branch (a guider's extra pass)."""
    first = next(iter(branches.values())).active
    own = {lb: b.active for lb, b in branches.items() if b.active is not None and b.active != first}
    return own or None


def settings_from(profile: Profile, threshold: float | None = None, max_skip_steps: int | None = None,
                  retention_ratio: float | None = None, forecast: float | None = None) -> ratios.SkipSettings:
    d = profile.defaults
    return ratios.SkipSettings(
        threshold=d.threshold if threshold is None else threshold,
        max_skip_steps=d.max_skip_steps if max_skip_steps is None else max_skip_steps,
        retention_ratio=d.retention_ratio if retention_ratio is None else retention_ratio,
        forecast=d.forecast if forecast is None else forecast,
    )


@dataclass(frozen=True)
class Prediction:
    """What a run at `steps` steps would do, per run: per-branch computed (True) / skipped flags, transformer
    passes computed out of `total`, and the passes speedup."""

    flags: dict[str, list[bool]]
    passes: int
    total: int
    policy: BranchPolicy

    @property
    def speedup(self) -> float:
        return self.total / self.passes if self.passes else float("inf")


def predict(profile: Profile, steps: int, settings: ratios.SkipSettings, policy: BranchPolicy = BranchPolicy.JOINT) -> Prediction:
    """What a run would skip, without a model: per-branch flags, passes (per run) and the passes speedup.

    The schedule is the one the run hooks follow (`RunPlan.schedule`): batched guidance is always joint,
    and a second expert's branches are simulated inside the steps that expert runs.
    """
    cal = profile.calibration
    denoisers = profile_denoisers(profile)
    label_of = {(split_label(lb)[0] or denoisers[0], split_label(lb)[1]): lb for lb in profile.branches}
    flags: dict[str, list[bool]] = {}
    passes = total = 0
    for name, plan in plans_by_denoiser(profile, settings, policy, denoisers).items():
        sim, (start, stop) = plan.schedule(steps)
        flags.update({label_of[name, label]: f for label, f in sim.items()})
        inside = [f[start:stop] for f in sim.values()]
        if cal.guidance_mode == GuidanceMode.SEQUENTIAL:  # a branch on fewer steps (a guider's extra pass) counts there only
            spans = plan.present(steps)
            for label, f in sim.items():
                lo, hi = spans.get(label, (start, stop))
                lo, hi = max(lo, start), min(hi, stop)
                passes += sum(f[lo:hi])
                total += max(0, hi - lo)
        else:
            passes += sum(any(step) for step in zip(*inside))
            total += stop - start
    return Prediction(flags, passes, total, effective_policy(cal.guidance_mode, policy))


def equal_pass_steps(passes: float, per_step: int) -> int:
    """Uncached steps that cost `passes` transformer passes: round to nearest (halves up), at least 1."""
    return max(1, int(passes / per_step + 0.5))
