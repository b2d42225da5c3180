"""`--speedup X`: skip settings chosen from a profile's curves, without running the model.

Among the settings whose predicted transformer passes are at most 1/X of the full run (`plan.predict`, the
schedule the run hooks follow), the one expected to be most accurate is the one whose **predicted error** is
smallest. The error of a skipped step is what the skipped residual's magnitude would be off by, predicted
from the magnitude-ratio curve alone: with `m_i = ratio_1 · … · ratio_i` the residual's norm relative to step
0, a step t skipped after computed steps p < c replays

    m̂_t = m_c + A · (t − c) / (c − p) · (m_c − m_p)          (A = 0: MagCache's reuse, m̂_t = m_c)

and its error is `|m̂_t − m_t| / m_t` (the rule's own `|1 − acc_ratio|` for A = 0). A schedule's predicted
error is the sum over its skipped steps and branches. Ties go to more passes (closer to the full run), then
to the most conservative setting (lowest threshold and K, highest R). docs/quality.md measures how this
criterion ranks against measured quality on the demo model (`benchmarks/speedup_study.py`).

The forecast A is not chosen from the curves (a one-step fit of the forecast overshoots, docs/quality.md):
it is the profile's own `defaults.forecast` when the profile was tuned or sets one, else `DEFAULT_FORECAST`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from magcache_cli.core import rule
from magcache_cli.errors import UsageError
from magcache_cli.profile.plan import Prediction, predict
from magcache_cli.profile.schema import Profile

THRESHOLDS = tuple(round(0.01 * 1.25 ** i, 4) for i in range(24))  # 0.01 … 1.7, 25 % apart
MAX_SKIPS = tuple(range(1, 9))
RETENTIONS = (0.1, 0.15, 0.2, 0.25, 0.3)
DEFAULT_FORECAST = 0.5  # the best fixed A at the longest skip runs measured in docs/quality.md


@dataclass(frozen=True)
class Candidate:
    settings: rule.SkipSettings
    prediction: Prediction
    error: float  # predicted error (see the module doc); lower is better

    def rank(self) -> tuple:
        s = self.settings
        return (round(self.error, 9), -self.prediction.passes, s.threshold, s.max_skip_steps, -s.retention_ratio)


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
                "predicted_error": round(self.candidate.error, 6), "settings_reaching": self.reaching}


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


def candidates(profile: Profile, steps: int, forecast: float, policy: str = "joint",
               fixed: dict | None = None) -> list[Candidate]:
    """Every grid setting (THRESHOLDS × MAX_SKIPS × RETENTIONS, with the knobs in `fixed` held), predicted."""
    fixed = fixed or {}
    grid = itertools.product(
        [fixed["threshold"]] if fixed.get("threshold") is not None else THRESHOLDS,
        [fixed["max_skip_steps"]] if fixed.get("max_skip_steps") is not None else MAX_SKIPS,
        [fixed["retention_ratio"]] if fixed.get("retention_ratio") is not None else RETENTIONS)
    out = []
    for e, k, r in grid:
        s = rule.SkipSettings(float(e), int(k), float(r), float(forecast))
        pred = predict(profile, steps, s, policy)
        out.append(Candidate(s, pred, predicted_error(profile, steps, pred, forecast)))
    return out


def choose(profile: Profile, steps: int, speedup: float, policy: str = "joint", forecast: float | None = None,
           fixed: dict | None = None) -> SpeedupChoice:
    """The most accurate predicted setting whose passes are at most 1/`speedup` of the full run.

    `fixed` holds the knobs given explicitly (threshold, max_skip_steps, retention_ratio): only the others
    are searched. Raises UsageError when no setting reaches the speedup."""
    if not speedup > 1:
        raise UsageError(f"speedup must be > 1, got {speedup:g}", hint="e.g. --speedup 2")
    source = "option" if forecast is not None else "profile"
    if forecast is None:
        forecast = profile_forecast(profile)
        if forecast is None:
            forecast, source = DEFAULT_FORECAST, "default"
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

