"""Pure MagCache math: magnitude ratios, curve resampling, the skip rule and schedule simulation.

Nothing here touches hooks or models, so `magcache schedule` can show what a profile would skip without
loading a pipeline, and the skip rule is tested with numbers that can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from magcache_cli.types import FORECAST_RANGE, RETENTION_RANGE, BranchPolicy, GuidanceMode

if TYPE_CHECKING:  # torch is imported where a tensor is used: `magcache --help` and `profile validate` stay fast
    import torch


def retention_steps(retention_ratio: float, steps: int) -> int:
    """Number of leading steps that are always computed: `int(retention_ratio * steps + 0.5)`."""
    _check_steps(steps)
    _check_retention(retention_ratio)
    return int(retention_ratio * steps + 0.5)


def resample(curve: Sequence[float], steps: int) -> list[float]:
    """Nearest-index resampling of a curve measured at M steps to `steps` (N) steps.

    Output index i takes `curve[round(i * (M - 1) / (N - 1))]`, rounding half to even like `np.round`
    (the scale `(M - 1) / (N - 1)` is computed first, as in the MagCache reference code).
    N == 1 gives `[curve[0]]`; M == N gives a copy.
    """
    _check_steps(steps)
    m = len(curve)
    if m == 0:
        raise ValueError("cannot resample an empty curve")
    if steps == 1:
        return [float(curve[0])]
    if m == steps:
        return [float(v) for v in curve]
    scale = (m - 1) / (steps - 1)
    return [float(curve[round(i * scale)]) for i in range(steps)]


@dataclass(frozen=True)
class SkipSettings:
    """Run-time knobs: error threshold, max consecutive skips (K), retention ratio (R) decide which steps skip;
    `forecast` (A in [0, 1], `forecast.py`) what a skipped step replays: 0 is MagCache's reuse."""

    threshold: float
    max_skip_steps: int
    retention_ratio: float
    forecast: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ValueError(f"threshold must be a number, got {self.threshold!r}")
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"threshold must be a finite number >= 0, got {self.threshold!r}")
        if isinstance(self.max_skip_steps, bool) or not isinstance(self.max_skip_steps, int):
            raise ValueError(f"max_skip_steps must be an integer, got {self.max_skip_steps!r}")
        if self.max_skip_steps < 0:
            raise ValueError(f"max_skip_steps must be >= 0, got {self.max_skip_steps}")
        _check_retention(self.retention_ratio)
        if isinstance(self.forecast, bool) or not isinstance(self.forecast, (int, float)):
            raise ValueError(f"forecast must be a number, got {self.forecast!r}")
        if self.forecast not in FORECAST_RANGE:
            raise ValueError(f"forecast must be in {FORECAST_RANGE}, got {self.forecast!r}")


def simulate(
    curves: Mapping[str, Sequence[float]],
    steps: int,
    settings: SkipSettings,
    policy: BranchPolicy | str = BranchPolicy.JOINT,
    present: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, list[bool]]:
    """Which steps each branch computes (True) or skips (False) at `steps` steps.

    Curves of another length are resampled with `resample` first. The skip rule, per branch b at step i:

    - Retention: steps `i < retention_steps(R, N)` are always computed, and computing resets b's
      accumulators.
    - Otherwise: `acc_ratio *= ratio[i]; acc_steps += 1; acc_err += |1 - acc_ratio|`, and
      `may_skip_b = threshold > 0 and acc_err <= threshold and acc_steps <= max_skip_steps` and b has a
      cached residual (true once b was computed at least once). A threshold of 0 therefore disables
      skipping entirely.
    - policy "independent": b skips iff may_skip_b; when b computes it resets
      `acc_ratio = 1, acc_err = 0, acc_steps = 0`.
    - policy "joint": the step is skipped for all branches iff may_skip_b holds for every branch;
      otherwise every branch computes and resets its accumulators, including branches that could have
      skipped. This keeps the guidance mix from combining a fresh and a stale prediction.
    - `present` (label -> [start, stop)): a branch the pipeline runs on those steps only (a guider's extra
      pass, e.g. skip-layer guidance's `cond_skip`). Outside them it is marked computed (it is not called),
      takes no part in the joint decision and keeps nothing cached, so its first step computes.

    Raises ValueError on invalid input (no curves, empty curve, steps < 1, unknown policy).
    """
    _check_steps(steps)
    policy = BranchPolicy.parse(policy, "policy")
    if not isinstance(settings, SkipSettings):
        raise ValueError(f"settings must be a SkipSettings, got {type(settings).__name__}")
    if not curves:
        raise ValueError("no curves to simulate")
    ratios = {label: resample(curve, steps) for label, curve in curves.items()}
    retain = retention_steps(settings.retention_ratio, steps)
    branches = {label: _Branch() for label in ratios}
    spans = {label: (present or {}).get(label, (0, steps)) for label in ratios}
    for i in range(steps):
        here = [label for label, (lo, hi) in spans.items() if lo <= i < hi]
        for label in ratios:
            if label not in here:  # not called: marked computed, nothing cached
                branches[label].compute(cache=False)
        if i < retain:
            for label in here:
                branches[label].compute()
            continue
        may_skip = {label: branches[label].may_skip(ratios[label][i], settings) for label in here}
        skip_all = all(may_skip.values())
        for label in here:
            if skip_all if policy == BranchPolicy.JOINT else may_skip[label]:
                branches[label].flags.append(False)
            else:
                branches[label].compute()
    return {label: b.flags for label, b in branches.items()}


class _Branch:
    """One branch's accumulators in `simulate`, and its computed (True) / skipped flags so far."""

    def __init__(self) -> None:
        self.flags: list[bool] = []
        self.cached = False
        self.ratio, self.err, self.steps = 1.0, 0.0, 0

    def compute(self, cache: bool = True) -> None:
        """The step computes (or the branch is not called): the accumulators reset."""
        self.flags.append(True)
        self.cached = cache
        self.ratio, self.err, self.steps = 1.0, 0.0, 0

    def may_skip(self, ratio: float, settings: SkipSettings) -> bool:
        """Accumulate this step's ratio; whether the branch alone could skip it."""
        self.ratio *= ratio
        self.steps += 1
        self.err += abs(1.0 - self.ratio)
        return (settings.threshold > 0 and self.err <= settings.threshold
                and self.steps <= settings.max_skip_steps and self.cached)


def residual_stats(
    prev: torch.Tensor, cur: torch.Tensor, rows: slice | None = None
) -> tuple[float, float, float]:
    """Magnitude ratio statistics between two consecutive residuals shaped `[B, ..., D]`.

    Tokens are all middle dims flattened (`reshape(B, -1, D)`); everything is computed in float32.
    Per token: `ratio = ||cur|| / ||prev||` and `cos = cosine(cur, prev)`, both over D.
    Returns `(mean ratio, population std of the per-token ratio, mean(1 - cos))` over the tokens of the
    selected batch rows (`rows`, e.g. one branch's slice of a batched CFG call; default all rows).
    A zero-norm token in `prev` gives a non-finite ratio, returned as is.
    """
    import torch

    if prev.shape != cur.shape:
        raise ValueError(f"residual shapes differ: {tuple(prev.shape)} vs {tuple(cur.shape)}")
    if prev.ndim < 2:
        raise ValueError(f"residuals must be shaped [B, ..., D], got shape {tuple(prev.shape)}")
    if rows is not None:
        prev, cur = prev[rows], cur[rows]
    if prev.numel() == 0:
        raise ValueError("no tokens selected")
    b, d = prev.shape[0], prev.shape[-1]
    p = prev.detach().reshape(b, -1, d).float()
    c = cur.detach().reshape(b, -1, d).float()
    ratio = torch.linalg.vector_norm(c, dim=-1) / torch.linalg.vector_norm(p, dim=-1)
    cos = torch.nn.functional.cosine_similarity(c, p, dim=-1)
    return (
        ratio.mean().item(),
        ratio.std(unbiased=False).item(),
        (1.0 - cos).mean().item(),
    )


def schedule_summary(computed: Mapping[str, Sequence[bool]]) -> dict:
    """Per branch: `{"computed": [step, ...], "skipped": [step, ...], "num_computed": n, "num_skipped": n}`."""
    summary = {}
    for label, flags in computed.items():
        done = [i for i, flag in enumerate(flags) if flag]
        skipped = [i for i, flag in enumerate(flags) if not flag]
        summary[label] = {
            "computed": done,
            "skipped": skipped,
            "num_computed": len(done),
            "num_skipped": len(skipped),
        }
    return summary


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ValueError(f"steps must be an integer, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")


def _check_retention(retention_ratio: float) -> None:
    if isinstance(retention_ratio, bool) or not isinstance(retention_ratio, (int, float)):
        raise ValueError(f"retention_ratio must be a number, got {retention_ratio!r}")
    if retention_ratio not in RETENTION_RANGE:
        raise ValueError(f"retention_ratio must be in {RETENTION_RANGE}, got {retention_ratio!r}")


def rescale_window(active: Sequence[int] | None, cal_steps: int, steps: int) -> tuple[int, int]:
    """The [start, stop) step window at `steps` steps of a window measured at `cal_steps` steps.

    Uses the same nearest-index map as `resample`: step i at `steps` reads calibration step
    `resample(range(cal_steps), steps)[i]`, and belongs to the window if that step does.
    """
    if active is None:
        return 0, steps
    start, stop = active
    source = resample(list(range(cal_steps)), steps)
    first = next((i for i, j in enumerate(source) if j >= start), steps)
    end = next((i for i, j in enumerate(source) if j >= stop), steps)
    return first, end


def simulate_window(curves: Mapping[str, Sequence[float]], steps: int, settings: SkipSettings,
                    policy: BranchPolicy | str = BranchPolicy.JOINT, window: tuple[int, int] | None = None,
                    present: Mapping[str, tuple[int, int]] | None = None) -> dict[str, list[bool]]:
    """`simulate` restricted to the steps [start, stop) of a denoiser that runs only there (two-expert
    pipelines): the rule, retention included, applies to that window as if it were a run of its own;
    steps outside it are marked computed (the denoiser is not expected to be called there)."""
    start, stop = window or (0, steps)
    if stop <= start:
        return {label: [True] * steps for label in curves}
    full = {label: resample(curve, steps)[start:stop] for label, curve in curves.items()}
    inner_present = {label: (max(lo, start) - start, max(min(hi, stop), start) - start)
                     for label, (lo, hi) in (present or {}).items()}
    inner = simulate(full, stop - start, settings, policy, inner_present)
    return {label: [True] * start + inner[label] + [True] * (steps - stop) for label in curves}


@dataclass(frozen=True)
class RunPlan:
    """What `run` mode needs: the profile's curves and the skip settings (choices given as their words are
    parsed into their enums)."""

    curves: dict[str, list[float]]
    guidance_mode: GuidanceMode
    settings: SkipSettings
    policy: BranchPolicy = BranchPolicy.JOINT
    steps: int | None = None  # steps the curves were measured at
    active: list[int] | None = None  # [start, stop) calibration steps this denoiser runs; None: all
    # [start, stop) calibration steps of a branch that runs on fewer steps than its denoiser (a guider's
    # extra pass, e.g. skip-layer guidance's `cond_skip`)
    branch_active: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "guidance_mode", GuidanceMode.parse(self.guidance_mode, "guidance_mode"))
        object.__setattr__(self, "policy", BranchPolicy.parse(self.policy, "branch_policy"))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.curves)

    def covered(self, steps: int) -> tuple[int, int]:
        """The [start, stop) positions at `steps` steps that the curves cover: the calibrated `active` window
        (the steps a two-expert denoiser runs, or those a partial-schedule calibration ran); all by default."""
        return rescale_window(self.active, self.steps or steps, steps)

    def schedule(self, steps: int, begin: int = 0) -> tuple[dict[str, list[bool]], tuple[int, int]]:
        """Per-branch computed flags at `steps` steps for a run that begins at position `begin` (img2img,
        inpainting and video-to-video with strength < 1 begin mid-schedule), and the [start, stop) window the
        skip rule applies to: the run's steps that the curves cover.

        The rule, retention included, treats that window as a run of its own; every step outside it is
        computed. Batched guidance is always joint (one pass serves both branches). `run` follows this
        schedule and `magcache schedule` prints it: one code path."""
        policy = effective_policy(self.guidance_mode, self.policy)
        start, stop = self.covered(steps)
        window = (max(start, begin), stop)
        return simulate_window(self.curves, steps, self.settings, policy, window, self.present(steps)), window

    def present(self, steps: int) -> dict[str, tuple[int, int]]:
        """[start, stop) at `steps` steps of each branch that runs on fewer steps than its denoiser."""
        return {label: rescale_window(a, self.steps or steps, steps) for label, a in (self.branch_active or {}).items()}


def effective_policy(guidance_mode: GuidanceMode | str, policy: BranchPolicy | str) -> BranchPolicy:
    """The branch policy a run really follows: batched guidance is always joint (one pass serves both branches,
    so they cannot skip on different steps)."""
    if guidance_mode == GuidanceMode.BATCHED:
        return BranchPolicy.JOINT
    return BranchPolicy.parse(policy, "branch_policy")


FEW_STEPS = 8


def few_step_note(steps: int) -> str | None:
    """A plain note for schedules of `FEW_STEPS` steps or fewer (distilled / turbo models), else None."""
    if steps > FEW_STEPS:
        return None
    return (f"{steps} steps: on few-step (distilled or turbo) models skipping rarely pays; each skipped step is "
            f"{100 / steps:.0f}% of the schedule and the retained first steps leave few to skip. Compare with the "
            "uncached output before relying on it.")
