"""`tune` as a search: the fewest candidate settings measured, one prompt × seed at a time.

The grid's settings are predicted first (`plan.predict`, no model): distinct (schedule, forecast A) pairs,
grouped per A by their predicted transformer passes, and within one pass count ordered by the criterion
`--speedup` uses (`profile.speedup`: most evenly spread skips, then the latest, then predicted error). Then, per A:

* **bisection over the pass counts** toward the fewest passes that still meet the goal (quality falls as
  passes fall: this is what the search assumes), trying at each pass count its `PER_LEVEL` best predicted
  schedules; later A values only look below the best pass count found so far;
* each candidate is measured **one prompt × seed at a time and dropped at its first miss**: the goal holds
  on every run or the candidate fails (the worst case, not the mean), so one miss is enough;
* the winner is confirmed on the **held-out runs** (every third prompt × seed, never used to steer the
  search); a miss there excludes it and the search goes on.

With `speedup` in the goal it finds the best instead of the fastest: the candidates at the largest pass count
within 1/speedup (each A's `TOP` best predicted schedules) go through successive halving on mean PSNR
(all measured on one run, the better half on the next, …).

Every pipeline run goes through a `Ledger`: one run per (schedule, A, prompt × seed) and per (steps, prompt ×
seed) for the fewer-steps baseline, counted, and capped by `budget` (`BudgetSpent`). The uncached reference
is computed once per prompt × seed by the caller (or reused from a calibration: zero runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from magcache_cli.core import rule
from magcache_cli.errors import MagCacheError
from magcache_cli.profile.plan import equal_pass_steps, predict
from magcache_cli.profile.schema import Profile
from magcache_cli.profile.speedup import DEFAULT_FORECAST, lateness, predicted_error, spread
from magcache_cli.quality.metrics import Quality
from magcache_cli.types import BranchPolicy

DEFAULT_MARGIN_DB = 0.5
PER_LEVEL = 2
TOP = 3

Metrics = dict  # one run's {"psnr", "ssim", "lpips"} against its uncached reference


class BudgetSpent(MagCacheError):
    """The search needed another pipeline run after `--budget` runs."""


@dataclass(frozen=True)
class Goal:
    """What tune looks for: absolute limits, beating fewer steps by a margin, and/or a speedup."""

    min_psnr: float | None = None
    min_ssim: float | None = None
    max_lpips: float | None = None
    beat_margin: float | None = None  # dB over the uncached pipeline at the same passes, on every run
    speedup: float | None = None  # the best quality at ≥ this passes speedup, instead of the fastest

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in (("min_psnr", self.min_psnr), ("min_ssim", self.min_ssim),
                                  ("max_lpips", self.max_lpips)) if v is not None}

    def given(self) -> dict[str, float]:
        extra = {"beat_fewer_steps_db": self.beat_margin, "speedup": self.speedup}
        return {**self.limits(), **{k: v for k, v in extra.items() if v is not None}}

    def describe(self) -> str:
        names = {"min_psnr": "PSNR ≥ {} dB", "min_ssim": "SSIM ≥ {}", "max_lpips": "LPIPS ≤ {}",
                 "beat_fewer_steps_db": "closer than fewer steps by ≥ {} dB"}
        limits = " and ".join(names[k].format(v) for k, v in self.given().items() if k in names)
        text = f"{limits} on every run" if limits else ""
        if self.speedup is not None:
            text = f"the most accurate within {self.speedup:g}× fewer passes" + (f", {text}" if text else "")
        return text

    def ok(self, m: Metrics, base: Metrics | None) -> bool:
        """Whether one run meets the goal (`base`: the fewer-steps run at the same passes)."""
        if self.min_psnr is not None and m["psnr"] < self.min_psnr:
            return False
        if self.min_ssim is not None and m["ssim"] < self.min_ssim:
            return False
        if self.max_lpips is not None and (m.get("lpips") is None or m["lpips"] > self.max_lpips):
            return False
        if self.beat_margin is None:
            return True
        return base is not None and m["psnr"] - base["psnr"] >= self.beat_margin - 1e-9


@dataclass(frozen=True)
class Cand:
    settings: rule.SkipSettings
    key: tuple  # (schedule, effective A): candidates with equal keys are one run
    passes: int  # predicted passes per run
    error: float  # predicted magnitude error (the tie-break)
    spread: int = 0  # sum of skip-run lengths cubed: the `--speedup` criterion, lower first
    late: int = 0  # sum of skipped positions: its tie-break, higher first


def quality_of(per: list[Metrics]) -> Quality:
    """Means and worst case of several runs' metrics."""
    lp = [m["lpips"] for m in per if m.get("lpips") is not None]
    return Quality(psnr=sum(m["psnr"] for m in per) / len(per), ssim=sum(m["ssim"] for m in per) / len(per),
                   lpips=sum(lp) / len(lp) if lp else None, psnr_min=min(m["psnr"] for m in per),
                   ssim_min=min(m["ssim"] for m in per), lpips_max=max(lp) if lp else None, per_output=list(per))


class Ledger:
    """Runs each (candidate, run) and (fewer steps, run) once, counts them, stops at the budget."""

    def __init__(self, cached: Callable[[Cand, int], Metrics], fewer: Callable[[int, int], Metrics],
                 spent: int = 0, budget: int | None = None):
        self._cached, self._fewer = cached, fewer
        self.runs, self.budget = spent, budget
        self.out: dict[tuple, Metrics] = {}
        self.base: dict[tuple, Metrics] = {}

    def _spend(self) -> None:
        if self.budget is not None and self.runs >= self.budget:
            raise BudgetSpent(f"the budget of {self.budget} pipeline runs is spent")
        self.runs += 1

    def cached(self, cand: Cand, i: int) -> Metrics:
        if (cand.key, i) not in self.out:
            self._spend()
            self.out[cand.key, i] = self._cached(cand, i)
        return self.out[cand.key, i]

    def fewer(self, steps: int, i: int) -> Metrics:
        if (steps, i) not in self.base:
            self._spend()
            self.base[steps, i] = self._fewer(steps, i)
        return self.base[steps, i]

    def measured(self, cand: Cand) -> list[int]:
        return sorted(i for k, i in self.out if k == cand.key)


def _schedule_key(flags: dict[str, list[bool]]) -> tuple:
    return tuple((label, tuple(f)) for label, f in sorted(flags.items()))


def forecast_applies(flags: dict[str, list[bool]]) -> bool:
    """Whether some branch skips a step after two computed ones: only then can the forecast change an output."""
    for f in flags.values():
        done = 0
        for computed in f:
            done += computed
            if not computed and done >= 2:
                return True
    return False


def candidates(profile: Profile, steps: int, settings: list[rule.SkipSettings],
               policy: BranchPolicy = BranchPolicy.JOINT) -> dict[float, dict[int, list[Cand]]]:
    """Per A, per predicted pass count (fewer than the full run): the distinct schedules, best predicted first
    (most evenly spread skips, then the latest, then the lowest predicted error, then the most conservative
    setting: lowest E and K, highest R) — the criterion of `--speedup`."""
    preds, out, seen = {}, {}, set()
    order = sorted(settings, key=lambda s: (s.forecast, s.threshold, s.max_skip_steps, -s.retention_ratio))
    for s in order:
        rule_key = (s.threshold, s.max_skip_steps, s.retention_ratio)
        if rule_key not in preds:
            preds[rule_key] = predict(profile, steps, s, policy)
        pred = preds[rule_key]
        if pred.passes >= pred.total:
            continue
        a = s.forecast if forecast_applies(pred.flags) else 0.0
        key = (_schedule_key(pred.flags), a)
        if (s.forecast, key) in seen:  # an A that cannot apply shares the reuse run (same key), listed per A
            continue
        seen.add((s.forecast, key))
        cand = Cand(s, key, pred.passes, predicted_error(profile, steps, pred, a), spread(pred), lateness(pred))
        out.setdefault(s.forecast, {}).setdefault(pred.passes, []).append(cand)
    for levels in out.values():
        for lst in levels.values():
            lst.sort(key=lambda c: (c.spread, -c.late, c.error))  # stable: the conservative order breaks ties
    return out


@dataclass
class Search:
    """One search over `levels` (from `candidates`): `choose` runs steer it, `held` runs confirm its winner."""

    ledger: Ledger
    goal: Goal
    levels: dict[float, dict[int, list[Cand]]]
    choose: list[int]
    held: list[int]
    per_step: int
    steps: int
    total: float  # passes of the uncached run
    excluded: set = field(default_factory=set)
    dropped: int = 0

    def baseline_steps(self, passes: float) -> int:
        return min(self.steps, equal_pass_steps(passes, self.per_step))

    def meets(self, cand: Cand, runs: list[int]) -> bool:
        """The goal on each run in turn; False at the first miss (the candidate is dropped there)."""
        for i in runs:
            m = self.ledger.cached(cand, i)
            base = self.ledger.fewer(self.baseline_steps(cand.passes), i) if self.goal.beat_margin is not None else None
            if not self.goal.ok(m, base):
                self.dropped += 1
                return False
        return True

    def level_ok(self, a: float, passes: int) -> Cand | None:
        for cand in self.levels[a][passes][:PER_LEVEL]:
            if cand.key not in self.excluded and self.meets(cand, self.choose):
                return cand
        return None

    def forecasts(self) -> list[float]:
        """A values in search order: the default A first, then the others, highest first."""
        return sorted(self.levels, key=lambda a: (a != DEFAULT_FORECAST, -a))

    def fastest(self) -> Cand | None:
        best: Cand | None = None
        for a in self.forecasts():
            counts = sorted(p for p in self.levels[a] if best is None or p < best.passes)
            lo, hi, found = 0, len(counts), None
            while lo < hi:  # first pass count that meets the goal, assuming quality rises with passes
                mid = (lo + hi) // 2
                hit = self.level_ok(a, counts[mid])
                if hit is not None:
                    hi, found = mid, hit
                else:
                    lo = mid + 1
            if found is not None:
                best = found
        return best

    def confirmed_fastest(self) -> Cand | None:
        while (cand := self.fastest()) is not None:
            if self.meets(cand, self.held):
                return cand
            self.excluded.add(cand.key)
        return None

    def best_within(self, speedup: float) -> Cand | None:
        """Successive halving on mean PSNR among the largest pass count within 1/speedup of the full run."""
        cap = self.total / speedup + 1e-9
        tops = [max((p for p in lv if p <= cap), default=None) for lv in self.levels.values()]
        top = max((p for p in tops if p is not None), default=None)
        if top is None:
            return None
        pool = [c for lv in self.levels.values() for c in lv.get(top, [])[:TOP]]
        measured: dict[tuple, list[int]] = {c.key: [] for c in pool}
        for i in self.choose:
            pool = [c for c in pool if self.meets(c, [i])]
            for c in pool:
                measured[c.key].append(i)
            pool.sort(key=lambda c: -sum(self.ledger.cached(c, j)["psnr"] for j in measured[c.key]) / len(measured[c.key]))
            pool = pool[:max(1, math.ceil(len(pool) / 2))]
            if len(pool) == 1:
                break
        for cand in pool:
            if self.meets(cand, self.choose + self.held):
                return cand
        return None

    def run(self) -> Cand | None:
        return self.best_within(self.goal.speedup) if self.goal.speedup else self.confirmed_fastest()


def split_runs(n: int) -> tuple[list[int], list[int]]:
    """(runs that steer the search, held-out runs): every third run is held out when there are at least two."""
    if n < 2:
        return list(range(n)), []
    held = [i for i in range(n) if i % 3 == 2] or [n - 1]
    return [i for i in range(n) if i not in held], held
