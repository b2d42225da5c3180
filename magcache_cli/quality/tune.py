"""`tune`: sweep skip settings, measure each distinct (schedule, forecast) once, keep the Pareto front, choose by
a target. The forecast A changes what skipped steps output, not which steps skip, so a schedule is predicted
once for all A."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from magcache_cli.core import rule as ratios
from magcache_cli.core.distributed import Exchange, local_exchange
from magcache_cli.core.rule import effective_policy
from magcache_cli.errors import MagCacheError
from magcache_cli.profile.plan import Prediction, equal_pass_steps, predict
from magcache_cli.profile.schema import Profile
from magcache_cli.quality.compare import (
    Measured,
    OnRun,
    Reference,
    cached,
    closer,
    fewer_steps,
    reference,
    time_configs,
    wall_suspect,
)
from magcache_cli.quality.metrics import Quality, lpips_scorer, measure
from magcache_cli.quality.search import forecast_applies
from magcache_cli.quality.timing import DEFAULT_REPEATS, Timings
from magcache_cli.types import BranchPolicy
from magcache_cli.version import __version__

DEFAULT_THRESHOLDS = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.48)


DEFAULT_MAX_SKIPS = (2, 3, 4, 5, 6)


DEFAULT_RETENTIONS = (0.1, 0.2)


DEFAULT_FORECASTS = (0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Grid:
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    max_skip_steps: tuple[int, ...] = DEFAULT_MAX_SKIPS
    retention_ratios: tuple[float, ...] = DEFAULT_RETENTIONS
    forecasts: tuple[float, ...] = DEFAULT_FORECASTS

    def settings(self) -> list[ratios.SkipSettings]:
        return [ratios.SkipSettings(float(e), int(k), float(r), float(a))
                for a, r, k, e in itertools.product(self.forecasts, self.retention_ratios, self.max_skip_steps,
                                                    self.thresholds)]


@dataclass
class Point:
    """One grid setting; points with the same schedule and forecast share one measurement."""

    settings: ratios.SkipSettings
    key: tuple
    measured: Measured
    speedup_passes: float
    speedup_wall: float
    pareto: bool = False


def _schedule_key(prediction: dict[str, Any]) -> tuple:
    return tuple((label, tuple(f)) for label, f in sorted(prediction.flags.items()))


def sweep(pipe, profile: Profile, ref: Reference, prompts, seeds, call_kwargs, settings_list: Sequence[ratios.SkipSettings],
          policy: BranchPolicy = BranchPolicy.JOINT, on_run: OnRun = None, metric: str = "psnr",
          exchange: Exchange | None = None) -> list[Point]:
    """Measure every setting, running each distinct (skip schedule, forecast) once; marks the Pareto front
    (passes vs metric). Schedules are predicted once per (E, K, R); a forecast that cannot apply to a schedule
    (no skip after two computed steps) shares the reuse run.

    With an `exchange` over several ranks, the distinct runs are shared out and every rank gets all
    measurements."""
    steps = ref.steps
    by_key: dict[tuple, Measured] = {}
    preds: dict[tuple, Prediction] = {}
    keyed, todo = [], {}
    for s in settings_list:
        rule = (s.threshold, s.max_skip_steps, s.retention_ratio)
        if rule not in preds:
            preds[rule] = predict(profile, steps, s, policy)
        pred = preds[rule]
        key = (_schedule_key(pred), s.forecast if forecast_applies(pred.flags) else 0.0)
        keyed.append((s, key))
        if key not in by_key and key not in todo:
            if pred.passes == pred.total:  # nothing skipped: exactly the reference
                q = measure(ref.arrays, ref.arrays, ref.lpips)
                sched = {lb: {"computed": list(range(steps)), "skipped": []} for lb in pred.flags}
                by_key[key] = Measured(steps, ref.passes, ref.wall_s, q, sched)
            else:
                todo[key] = s
    exchange = exchange or local_exchange()
    mine = {key: cached(pipe, profile, ref, prompts, seeds, call_kwargs, s, policy, on_run)[0]
            for _, (key, s) in exchange.sharded(list(todo.items()))}
    by_key.update(exchange.union(mine))
    points = []
    for s, key in keyed:
        m = by_key[key]
        points.append(Point(s, key, m, ref.passes / m.passes if m.passes else float("inf"),
                            ref.wall_s / m.wall_s if m.wall_s else float("inf")))
    _mark_pareto(points, metric)
    return points


def _value(q: Quality, metric: str) -> float:
    """Higher is better for every metric returned here (LPIPS is negated)."""
    v = getattr(q, metric)
    if v is None:
        return float("-inf")
    return -v if metric == "lpips" else v


def _mark_pareto(points: list[Point], metric: str) -> None:
    for p in points:
        pv, pp = _value(p.measured.quality, metric), p.measured.passes
        p.pareto = not any(
            (o.measured.passes <= pp and _value(o.measured.quality, metric) >= pv)
            and (o.measured.passes < pp or _value(o.measured.quality, metric) > pv)
            for o in points
        )


def distinct(points: list[Point]) -> list[Point]:
    """One point per (schedule, forecast): the most conservative setting that gives it (lowest E, lowest K,
    highest R, then lowest A)."""
    best: dict[tuple, Point] = {}
    for p in points:
        s, cur = p.settings, best.get(p.key)
        if cur is None or (s.threshold, s.max_skip_steps, -s.retention_ratio, s.forecast) < (
                cur.settings.threshold, cur.settings.max_skip_steps, -cur.settings.retention_ratio,
                cur.settings.forecast):
            best[p.key] = p
    return sorted(best.values(), key=lambda p: (p.measured.passes, -p.measured.quality.psnr))


@dataclass
class Target:
    min_psnr: float | None = None
    min_ssim: float | None = None
    max_lpips: float | None = None

    @property
    def metric(self) -> str:
        return "psnr" if self.min_psnr is not None else "ssim" if self.min_ssim is not None else "lpips"

    def given(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def describe(self) -> str:
        names = {"min_psnr": "PSNR ≥ {} dB", "min_ssim": "SSIM ≥ {}", "max_lpips": "LPIPS ≤ {}"}
        return " and ".join(names[k].format(v) for k, v in self.given().items())


@dataclass
class TuneResult:
    reference: Reference
    points: list[Point]
    target: Target
    policy: str
    chosen: Point | None
    baselines: dict[int, Measured]  # steps -> fewer-steps measurement, at the Pareto points' pass counts
    prompts: list[str]
    seeds: list[int]
    call_kwargs: dict[str, Any]
    runs: int  # pipeline calls made (reference, schedules, baselines), warm-up excluded
    timings: Timings | None = None  # interleaved repeats of uncached / chosen / its fewer-steps baseline

    @property
    def wall_note(self) -> str | None:
        """Why the wall times cannot be trusted (the machine was disturbed), or None."""
        if self.timings is not None and self.chosen is not None:
            return self.timings.verdict(self.chosen.speedup_passes)
        if any(wall_suspect(p.speedup_wall, p.speedup_passes) for p in self.points):
            return "a wall-time speedup exceeds what the skipped passes allow: the machine was busy while timing"
        return None

    @property
    def wall_suspect(self) -> bool:
        return self.wall_note is not None

    @property
    def chosen_baseline(self) -> tuple[int, Measured] | None:
        if self.chosen is None:
            return None
        steps = min(self.reference.steps, equal_pass_steps(self.chosen.measured.passes, self.reference.per_step))
        return steps, self.baselines.get(steps)  # None: not measured (a search whose --budget ran out)

    def evidence(self) -> dict[str, Any]:
        """The `defaults.tuned` block written into the profile."""
        c, ref = self.chosen, self.reference
        steps, base = self.chosen_baseline
        q = c.measured.quality
        cal = {k: self.call_kwargs[k] for k in ("guidance_scale", "height", "width", "num_frames")
               if self.call_kwargs.get(k) is not None}
        return {
            "target": self.target.given(),
            "measured": {k: v for k, v in q.to_json().items() if v is not None},
            "speedup_passes": round(c.speedup_passes, 3),
            "speedup_wall": round(c.speedup_wall, 3),
            **({"wall_times_suspect": True} if self.wall_note else {}),
            **({"wall_repeats": self.timings.repeats} if self.timings else {}),
            "passes": {"cached": c.measured.passes, "uncached": ref.passes},
            "fewer_steps_baseline": None if base is None else {
                "steps": steps, "psnr": round(base.quality.psnr, 4), "ssim": round(base.quality.ssim, 4),
                "closer": closer(q, base.quality)},
            "branch_policy": self.policy,
            "steps": ref.steps,
            "call": cal,
            "prompts": list(self.prompts),
            "seeds": [int(s) for s in self.seeds],
            "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "magcache": __version__,
        }


def tune(pipe, profile: Profile, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any], target: Target,
         grid: Grid = Grid(), policy: BranchPolicy = BranchPolicy.JOINT, on_run: OnRun = None,
         exchange: Exchange | None = None, repeats: int = DEFAULT_REPEATS) -> TuneResult:
    """Sweep the grid, pick the fewest-passes setting meeting `target` (None if none does), and measure
    the fewer-steps baseline at every Pareto point's pass count. In one process, the chosen setting's
    wall-time speedup comes from `repeats` interleaved timings (uncached, chosen, its fewer-steps baseline;
    medians), after the sweep has warmed everything up.

    With an `exchange` over several ranks, every rank runs the uncached reference and a share of the
    distinct schedules and baselines; every rank gets the same result."""
    if not target.given():
        raise MagCacheError("no quality target", hint="give `min_psnr`, `min_ssim` or `max_lpips`")
    scorer, note = lpips_scorer()
    if target.max_lpips is not None and scorer is None:
        raise MagCacheError(f"`max_lpips` needs LPIPS, but {note[0].lower()}{note[1:]}",
                            hint="use `min_psnr` or `min_ssim`, or put torchvision's AlexNet weights in the torch hub cache")
    ref = reference(pipe, prompts, seeds, call_kwargs, on_run=on_run, lpips=(scorer, note))
    runs = len(prompts) * len(seeds)
    n_runs = runs
    exchange = exchange or local_exchange()
    points = sweep(pipe, profile, ref, prompts, seeds, call_kwargs, grid.settings(), policy, on_run, target.metric,
                   exchange)
    n_runs += runs * sum(1 for p in distinct(points) if p.measured.passes < ref.passes)
    # a setting that skips nothing meets any target and saves nothing: never chosen
    ok = [p for p in distinct(points) if p.measured.passes < ref.passes and p.measured.quality.meets(**target.given())]
    chosen = min(ok, key=lambda p: (p.measured.passes, -_value(p.measured.quality, target.metric)), default=None)
    wanted = {min(ref.steps, equal_pass_steps(p.measured.passes, ref.per_step))
              for p in distinct(points) if p.pareto or p is chosen}
    baselines: dict[int, Measured] = {}
    if ref.steps in wanted:
        baselines[ref.steps] = Measured(ref.steps, ref.passes, ref.wall_s, measure(ref.arrays, ref.arrays, ref.lpips))
    fewer = sorted(wanted - {ref.steps})
    baselines.update(exchange.union({steps: fewer_steps(pipe, ref, prompts, seeds, call_kwargs, steps, on_run)[0]
                                     for _, steps in exchange.sharded(fewer)}))
    baselines = dict(sorted(baselines.items()))
    n_runs += runs * len(fewer)
    timings = None
    if chosen is not None and repeats and not (exchange is not None and exchange.info.distributed):
        fewer = min(ref.steps, equal_pass_steps(chosen.measured.passes, ref.per_step))
        timings = time_configs(pipe, profile, prompts[0], seeds[0], call_kwargs, chosen.settings, policy, False,
                               fewer, repeats, on_run)
        chosen.speedup_wall = timings.speedup("uncached", "cached")
    return TuneResult(ref, points, target, effective_policy(profile.calibration.guidance_mode, policy),
                      chosen, baselines, list(prompts), list(seeds), dict(call_kwargs), n_runs, timings)


def with_tuned_defaults(profile: Profile, result: TuneResult) -> Profile:
    """A copy of the profile whose defaults are the chosen setting, with the evidence in `defaults.tuned`."""
    if result.chosen is None:
        raise MagCacheError("no setting meets the target")
    s = result.chosen.settings
    defaults = dataclasses.replace(profile.defaults, threshold=s.threshold, max_skip_steps=s.max_skip_steps,
                                   retention_ratio=s.retention_ratio, forecast=s.forecast, tuned=result.evidence())
    return dataclasses.replace(profile, defaults=defaults)
