"""`--speedup X`: skip settings chosen from a profile's curves, without running the model.

Among the settings whose predicted transformer passes are at most 1/X of the full run (`plan.predict`, the
schedule the run hooks follow), the one expected to be most accurate is the one whose skips are **spread most
evenly**: the lowest `spread`, the sum over branches and runs of consecutive skipped steps of the run length
cubed. A skipped step's error grows with its distance from the last computed step (linearly for reuse, and
the forecast's first-order extrapolation leaves a quadratic term), so a run of L skips costs about
`Σ_k k² ≈ L³/3`: two runs of 2 cost far less than one of 4. Measured on the demo model
(`benchmarks/speedup_study.py`, docs/quality.md): among all schedules at the same passes, the spread ranks
measured PSNR with Spearman 0.95–0.99 at 1.5–3×, the magnitude error below at 0.27–0.78 (−0.49–0.58 in a
first run on other prompts).

Ties go to the **latest skips** (the largest sum of skipped positions: an error made early is carried
through every later step, which is why MagCache retains the first steps), then to the lower **predicted
magnitude error**: with `m_i = ratio_1 · … · ratio_i` the residual's norm relative to step 0, a step t skipped
after computed steps p < c replays

    m̂_t = m_c + A · (t − c) / (c − p) · (m_c − m_p)          (A = 0: MagCache's reuse, m̂_t = m_c)

with error `|m̂_t − m_t| / m_t`, summed over skipped steps and branches; then to more passes, then to the
most conservative setting (lowest threshold and K, highest R). On validation runs not used to design it,
the choice ranks 2nd of 18, 4th of 20, 1st of 35 and 1st of 22 schedules at its passes (1.5, 2, 2.5, 3×).

The forecast A is not fitted to the curves (a one-step fit of the forecast overshoots, docs/quality.md): it
is the profile's own `defaults.forecast` when the profile was tuned or sets one, else the best fixed A
measured on the demo model for the schedule's longest skip run: 0.75 up to 3 consecutive skips, 0.5 beyond.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from magcache_cli.core import rule
from magcache_cli.errors import UsageError
from magcache_cli.profile.plan import Prediction, predict
from magcache_cli.profile.schema import Profile
from magcache_cli.types import SPEEDUP_RANGE, BranchPolicy

THRESHOLDS = tuple(round(0.01 * 1.25 ** i, 4) for i in range(24))  # 0.01 … 1.7, 25 % apart
MAX_SKIPS = tuple(range(1, 9))
RETENTIONS = (0.1, 0.15, 0.2, 0.25, 0.3)
DEFAULT_FORECAST = 0.5  # without evidence, for skip runs longer than SHORT_RUN (docs/quality.md)
SHORT_FORECAST, SHORT_RUN = 0.75, 3  # the best fixed A measured for skip runs of at most 3 steps


@dataclass(frozen=True)
class Candidate:
    settings: rule.SkipSettings
    prediction: Prediction
    spread: int  # sum of skip-run lengths cubed (see the module doc); lower is better
    error: float  # predicted magnitude error, a tie-break; lower is better

    def rank(self) -> tuple:
        s = self.settings
        return (self.spread, -lateness(self.prediction), round(self.error, 9), -self.prediction.passes,
                s.threshold, s.max_skip_steps, -s.retention_ratio)


@dataclass(frozen=True)
class SpeedupChoice:
    """The settings `--speedup` runs with, what they are predicted to do, and why they were chosen."""

    asked: float
    candidate: Candidate
    reaching: int  # settings of the grid that reach the speedup
    forecast_from: str  # "option" | "profile" | "default"

    @property
    def settings(self) -> rule.SkipSettings:
        return self.candidate.settings

    @property
    def prediction(self) -> Prediction:
        return self.candidate.prediction

    def to_json(self) -> dict:
        s, p = self.settings, self.prediction
        return {"asked": self.asked, "threshold": s.threshold, "max_skip_steps": s.max_skip_steps,
                "retention_ratio": s.retention_ratio, "forecast": s.forecast, "forecast_from": self.forecast_from,
                "passes": p.passes, "total_passes": p.total, "predicted_speedup": round(p.speedup, 4),
                "spread": self.candidate.spread, "predicted_error": round(self.candidate.error, 6),
                "settings_reaching": self.reaching}


def magnitudes(curve: list[float]) -> list[float]:
    """Residual norm at each step relative to step 0: the running product of the ratios (`ratio[0]` is 1)."""
    out, m = [], 1.0
    for i, r in enumerate(curve):
        m = m * r if i else 1.0
        out.append(m)
    return out


def branch_error(curve: list[float], flags: list[bool], forecast: float) -> float:
    """Predicted error of one branch's skipped steps: sum of `|m̂_t − m_t| / m_t` (see the module doc)."""
    m = magnitudes(curve)
    total, done = 0.0, []  # steps computed so far
    for t, computed in enumerate(flags):
        if computed:
            done.append(t)
            continue
        if not done:
            continue
        c = done[-1]
        guess = m[c]
        if forecast and len(done) >= 2:
            p = done[-2]
            guess += forecast * (t - c) / (c - p) * (m[c] - m[p])
        total += abs(guess - m[t]) / abs(m[t]) if m[t] else 0.0
    return total


def skip_runs(flags: list[bool]) -> list[int]:
    """Lengths of the runs of consecutive skipped steps."""
    runs, cur = [], 0
    for computed in [*flags, True]:
        if not computed:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return runs


def spread(prediction: Prediction) -> int:
    """Sum over branches and skip runs of the run length cubed."""
    return sum(n ** 3 for f in prediction.flags.values() for n in skip_runs(f))


def lateness(prediction: Prediction) -> int:
    """Sum over branches of the positions of the skipped steps: larger when the skips come later."""
    return sum(i for f in prediction.flags.values() for i, computed in enumerate(f) if not computed)


def longest_run(prediction: Prediction) -> int:
    return max((n for f in prediction.flags.values() for n in skip_runs(f)), default=0)


def default_forecast(prediction: Prediction) -> float:
    """A without evidence from the profile: 0.75 for skip runs of at most 3 steps, else 0.5."""
    return SHORT_FORECAST if longest_run(prediction) <= SHORT_RUN else DEFAULT_FORECAST


def predicted_error(profile: Profile, steps: int, prediction: Prediction, forecast: float) -> float:
    """Sum of `branch_error` over the profile's branches, each curve resampled to `steps`."""
    total = 0.0
    for label, flags in prediction.flags.items():
        curve = rule.resample(profile.branches[label].ratios, steps)
        total += branch_error(curve, flags, forecast)
    return total


def profile_forecast(profile: Profile) -> float | None:
    """The profile's A when it has evidence for one: tuned defaults, or a forecast set in its defaults."""
    d = profile.defaults
    if d.tuned is not None or d.forecast > 0:
        return d.forecast
    return None


def candidates(profile: Profile, steps: int, forecast: float | None, policy: BranchPolicy = BranchPolicy.JOINT,
               fixed: dict | None = None) -> list[Candidate]:
    """Every grid setting (THRESHOLDS × MAX_SKIPS × RETENTIONS, with the knobs in `fixed` held), predicted;
    `forecast` None: each with `default_forecast` of its schedule."""
    fixed = fixed or {}
    grid = itertools.product(
        [fixed["threshold"]] if fixed.get("threshold") is not None else THRESHOLDS,
        [fixed["max_skip_steps"]] if fixed.get("max_skip_steps") is not None else MAX_SKIPS,
        [fixed["retention_ratio"]] if fixed.get("retention_ratio") is not None else RETENTIONS)
    out = []
    for e, k, r in grid:
        pred = predict(profile, steps, rule.SkipSettings(float(e), int(k), float(r)), policy)
        a = default_forecast(pred) if forecast is None else float(forecast)
        out.append(Candidate(rule.SkipSettings(float(e), int(k), float(r), a), pred, spread(pred),
                             predicted_error(profile, steps, pred, a)))
    return out


def choose(profile: Profile, steps: int, speedup: float, policy: BranchPolicy = BranchPolicy.JOINT, forecast: float | None = None,
           fixed: dict | None = None) -> SpeedupChoice:
    """The best ranked setting (`Candidate.rank`) whose predicted passes are at most 1/`speedup` of the full run.

    `fixed` holds the knobs given explicitly (threshold, max_skip_steps, retention_ratio): only the others
    are searched. Raises UsageError when no setting reaches the speedup."""
    if speedup not in SPEEDUP_RANGE:
        raise UsageError(f"speedup must be {SPEEDUP_RANGE}, got {speedup:g}", hint="e.g. --speedup 2")
    source = "option" if forecast is not None else "profile"
    if forecast is None:
        forecast = profile_forecast(profile)
        source = "profile" if forecast is not None else "default"
    cands = candidates(profile, steps, forecast, policy, fixed)
    reach = [c for c in cands if c.prediction.passes * speedup <= c.prediction.total + 1e-9]
    if not reach:
        best = min(cands, key=lambda c: c.prediction.passes)
        raise UsageError(
            f"no setting reaches {speedup:g}× fewer transformer passes at {steps} steps on this profile's curves "
            f"(at most {best.prediction.speedup:.2f}×: {best.prediction.passes} of {best.prediction.total} passes)",
            hint="ask for less, run more --steps, or leave --threshold / --max-skip-steps / --retention-ratio free")
    best = min(reach, key=Candidate.rank)
    return SpeedupChoice(float(speedup), best, len(reach), source)
