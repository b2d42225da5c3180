"""Quality you can measure before trusting a profile: compare, tune, the step-reduction baseline, branch study.

Library only: every function returns data, the CLI renders it. All measurements are against the uncached
pipeline with the same prompts, seeds and call settings; quality numbers are means over the prompt × seed
outputs (the worst output is reported too).

Three facts keep the cost down:

* one uncached reference per prompt × seed, reused by every setting measured against it;
* the outputs depend on the settings only through the skip schedule (`ratios.simulate`), so settings
  with identical schedules are run once, and an all-computed schedule *is* the reference;
* the model is loaded once by the caller and never reloaded here.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__, ratios
from .errors import MagCacheError
from .metrics import Quality, lpips_scorer, measure
from .outputs import as_array
from .profile import Profile
from .replay import RunResult, plans_by_denoiser, profile_denoisers, run

DEFAULT_THRESHOLDS = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24, 0.32, 0.48)
DEFAULT_MAX_SKIPS = (2, 3, 4, 5, 6)
DEFAULT_RETENTIONS = (0.1, 0.2)

OnRun = Callable[[str], None] | None


# ------------------------------------------------------------------------------------------ predictions


def passes_per_step(profile: Profile) -> int:
    """Transformer passes one uncached step costs: one per branch for sequential guidance, else 1."""
    if profile.calibration.guidance_mode != "sequential":
        return 1
    return max(Counter(label.rpartition(".")[0] for label in profile.branches).values())


def predict(profile: Profile, steps: int, settings: ratios.SkipSettings, policy: str = "joint") -> dict[str, Any]:
    """What a run would skip, without a model: per-branch flags, passes (per run) and the passes speedup.

    The schedule is the one the run hooks follow (`RunPlan.schedule`): batched guidance is always joint,
    and a second expert's branches are simulated inside the steps that expert runs.
    """
    cal = profile.calibration
    denoisers = profile_denoisers(profile)
    label_of = {(lb.rpartition(".")[0] or denoisers[0], lb.rpartition(".")[2]): lb for lb in profile.branches}
    flags: dict[str, list[bool]] = {}
    passes = total = 0
    for name, plan in plans_by_denoiser(profile, settings, policy, denoisers).items():
        sim, (start, stop) = plan.schedule(steps)
        flags.update({label_of[name, label]: f for label, f in sim.items()})
        inside = [f[start:stop] for f in sim.values()]
        if cal.guidance_mode == "sequential":
            passes += sum(sum(f) for f in inside)
            total += (stop - start) * len(inside)
        else:
            passes += sum(any(step) for step in zip(*inside))
            total += stop - start
    if cal.guidance_mode == "batched":
        policy = "joint"
    return {"flags": flags, "passes": passes, "total": total, "speedup": total / passes if passes else float("inf"),
            "policy": policy}


def equal_pass_steps(passes: float, per_step: int) -> int:
    """Uncached steps that cost `passes` transformer passes: round to nearest (halves up), at least 1."""
    return max(1, int(passes / per_step + 0.5))


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class Measured:
    """One configuration run over all prompt × seed pairs and measured against the uncached reference."""

    steps: int
    passes: float  # transformer passes per run
    wall_s: float  # pipeline wall time per run: the median over the runs
    quality: Quality
    schedule: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Reference:
    """The uncached outputs every measurement is compared with."""

    steps: int
    passes: float  # per run
    wall_s: float  # per run (median)
    arrays: list[np.ndarray]
    per_step: int
    lpips: Callable | None
    lpips_note: str | None
    result: RunResult | None = None


def _arrays(result: RunResult) -> list[np.ndarray]:
    return [as_array(o) for o in result.outputs]


class _Clock:
    """Times each pipeline call of a `replay.run` through its `on_run` callback (called just before each)."""

    def __init__(self, on_run: OnRun, label: str):
        self.on_run, self.label, self.stamps = on_run, label, []

    def __call__(self, i: int, prompt: str, seed: int) -> None:
        self.stamps.append(time.perf_counter())
        if self.on_run:
            self.on_run(self.label)

    def median(self, result: RunResult) -> float:
        """Median seconds per call: robust to a call slowed by a busy machine (the mean is not)."""
        d = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        d.append(max(0.0, result.wall_s - sum(d)))  # the last call: the rest of the pipeline time
        return statistics.median(d)


def _run(pipe, prompts, seeds, call_kwargs, label: str, on_run: OnRun, **kw) -> tuple[RunResult, float]:
    clock = _Clock(on_run, label)
    res = run(pipe, prompts, seeds, call_kwargs, on_run=clock, **kw)
    return res, clock.median(res)


def _passes(result: RunResult) -> float:
    passes = result.transformer_calls / max(1, len(result.prompts_seeds))
    return int(passes) if passes.is_integer() else passes


def warm_up(pipe, prompt: str, call_kwargs: dict[str, Any]) -> None:
    """One short uncached call so one-off costs (allocation, kernel selection) are not timed in a run."""
    run(pipe, [prompt], [0], {**call_kwargs, "num_inference_steps": min(2, call_kwargs["num_inference_steps"])},
        profile=None, no_cache=True)


def reference(pipe, profile: Profile, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any],
              on_run: OnRun = None, warmup: bool = True, lpips: tuple | None = None) -> Reference:
    """Run the uncached pipeline once per prompt × seed; every later measurement reuses these outputs."""
    scorer, note = lpips or lpips_scorer()
    if warmup:
        warm_up(pipe, prompts[0], call_kwargs)
    res, wall = _run(pipe, prompts, seeds, call_kwargs, "uncached", on_run, profile=None, no_cache=True)
    passes = _passes(res)
    steps = int(call_kwargs["num_inference_steps"])
    return Reference(steps, passes, wall, _arrays(res), max(1, round(passes / steps)), scorer, note, res)


def measure_run(ref: Reference, result: RunResult, wall: float, steps: int | None = None) -> Measured:
    q = measure(_arrays(result), ref.arrays, ref.lpips)
    return Measured(steps or result.steps, _passes(result), wall, q, result.schedule, list(result.warnings))


def cached(pipe, profile: Profile, ref: Reference, prompts, seeds, call_kwargs, settings: ratios.SkipSettings,
           policy: str = "joint", on_run: OnRun = None, force: bool = False) -> tuple[Measured, RunResult]:
    """The cached pipeline with `settings`; `force` uses a profile measured on another transformer."""
    res, wall = _run(pipe, prompts, seeds, call_kwargs, "cached", on_run, profile=profile, settings=settings,
                     policy=policy, force=force)
    return measure_run(ref, res, wall), res


def fewer_steps(pipe, ref: Reference, prompts, seeds, call_kwargs, steps: int,
                on_run: OnRun = None) -> tuple[Measured, RunResult]:
    """The honest baseline: the plain pipeline at `steps` steps, measured against the full-step reference."""
    res, wall = _run(pipe, prompts, seeds, {**call_kwargs, "num_inference_steps": steps}, f"{steps} steps", on_run,
                     profile=None, no_cache=True)
    return measure_run(ref, res, wall, steps), res


def wall_suspect(speedup_wall: float, speedup_passes: float) -> bool:
    """A wall-time speedup clearly above the pass speedup cannot come from skipping: the machine was busy
    while some runs were timed, and the wall numbers should not be trusted (the pass counts still are)."""
    return speedup_wall > 1.1 * speedup_passes


def closer(cached_q: Quality, baseline_q: Quality) -> str:
    """Which is closer to the full uncached output by PSNR: "cached", "fewer_steps" or "tie" (within 0.05 dB)."""
    d = cached_q.psnr - baseline_q.psnr
    return "tie" if abs(d) < 0.05 else "cached" if d > 0 else "fewer_steps"


# ---------------------------------------------------------------------------------------------- compare


@dataclass
class Comparison:
    reference: Reference
    cached: Measured
    baseline: Measured
    baseline_steps: int
    winner: str  # cached | fewer_steps | tie
    settings: ratios.SkipSettings
    policy: str
    prompts_seeds: list[tuple[str, int]]
    cached_result: RunResult
    cached_arrays: list[np.ndarray]
    baseline_arrays: list[np.ndarray]

    @property
    def speedup_passes(self) -> float:
        return self.reference.passes / self.cached.passes if self.cached.passes else float("inf")

    @property
    def speedup_wall(self) -> float:
        return self.reference.wall_s / self.cached.wall_s if self.cached.wall_s else float("inf")

    @property
    def wall_suspect(self) -> bool:
        return wall_suspect(self.speedup_wall, self.speedup_passes)

    def to_json(self) -> dict[str, Any]:
        ref, c, b = self.reference, self.cached, self.baseline
        return {
            "steps": ref.steps,
            "settings": {**dataclasses.asdict(self.settings), "branch_policy": self.policy},
            "uncached": {"passes_per_run": ref.passes, "wall_s_per_run": round(ref.wall_s, 4)},
            "cached": {"passes_per_run": c.passes, "wall_s_per_run": round(c.wall_s, 4), **c.quality.to_json(),
                       "branches": c.schedule},
            "speedup": {"passes": round(self.speedup_passes, 3), "wall": round(self.speedup_wall, 3)},
            "fewer_steps": {"steps": self.baseline_steps, "passes_per_run": b.passes,
                            "wall_s_per_run": round(b.wall_s, 4), **b.quality.to_json()},
            "closer_to_uncached": self.winner,
            "wall_times_suspect": self.wall_suspect,
            "lpips_note": ref.lpips_note,
            "warnings": c.warnings,
        }


def compare(pipe, profile: Profile, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any],
            settings: ratios.SkipSettings, policy: str = "joint", on_run: OnRun = None,
            force: bool = False) -> Comparison:
    """Uncached, cached and fewer-steps runs on the same prompts and seeds, measured against the uncached."""
    ref = reference(pipe, profile, prompts, seeds, call_kwargs, on_run)
    measured, res = cached(pipe, profile, ref, prompts, seeds, call_kwargs, settings, policy, on_run, force)
    steps = min(ref.steps, equal_pass_steps(measured.passes, ref.per_step))
    base, base_res = fewer_steps(pipe, ref, prompts, seeds, call_kwargs, steps, on_run)
    return Comparison(ref, measured, base, steps, closer(measured.quality, base.quality), settings, res.policy or policy,
                      res.prompts_seeds, res, _arrays(res), _arrays(base_res))


# ------------------------------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class Grid:
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    max_skip_steps: tuple[int, ...] = DEFAULT_MAX_SKIPS
    retention_ratios: tuple[float, ...] = DEFAULT_RETENTIONS

    def settings(self) -> list[ratios.SkipSettings]:
        return [ratios.SkipSettings(float(e), int(k), float(r))
                for r, k, e in itertools.product(self.retention_ratios, self.max_skip_steps, self.thresholds)]


@dataclass
class Point:
    """One grid setting; points with the same schedule share one measurement."""

    settings: ratios.SkipSettings
    key: tuple
    measured: Measured
    speedup_passes: float
    speedup_wall: float
    pareto: bool = False


def _schedule_key(prediction: dict[str, Any]) -> tuple:
    return tuple((label, tuple(f)) for label, f in sorted(prediction["flags"].items()))


def sweep(pipe, profile: Profile, ref: Reference, prompts, seeds, call_kwargs, settings_list: Sequence[ratios.SkipSettings],
          policy: str = "joint", on_run: OnRun = None, metric: str = "psnr") -> list[Point]:
    """Measure every setting, running each distinct skip schedule once; marks the Pareto front (passes vs metric)."""
    steps = ref.steps
    by_key: dict[tuple, Measured] = {}
    points = []
    for s in settings_list:
        pred = predict(profile, steps, s, policy)
        key = _schedule_key(pred)
        if key not in by_key:
            if pred["passes"] == pred["total"]:  # nothing skipped: exactly the reference
                q = measure(ref.arrays, ref.arrays, ref.lpips)
                sched = {lb: {"computed": list(range(steps)), "skipped": []} for lb in pred["flags"]}
                by_key[key] = Measured(steps, ref.passes, ref.wall_s, q, sched)
            else:
                by_key[key], _ = cached(pipe, profile, ref, prompts, seeds, call_kwargs, s, policy, on_run)
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
    """One point per schedule: the most conservative setting that gives it (lowest E, lowest K, highest R)."""
    best: dict[tuple, Point] = {}
    for p in points:
        s, cur = p.settings, best.get(p.key)
        if cur is None or (s.threshold, s.max_skip_steps, -s.retention_ratio) < (
                cur.settings.threshold, cur.settings.max_skip_steps, -cur.settings.retention_ratio):
            best[p.key] = p
    return sorted(best.values(), key=lambda p: (p.measured.passes, -p.measured.quality.psnr))


# -------------------------------------------------------------------------------------------------- tune


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

    @property
    def wall_suspect(self) -> bool:
        return any(wall_suspect(p.speedup_wall, p.speedup_passes) for p in self.points)

    @property
    def chosen_baseline(self) -> tuple[int, Measured] | None:
        if self.chosen is None:
            return None
        steps = min(self.reference.steps, equal_pass_steps(self.chosen.measured.passes, self.reference.per_step))
        return steps, self.baselines[steps]

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
            **({"wall_times_suspect": True} if wall_suspect(c.speedup_wall, c.speedup_passes) else {}),
            "passes": {"cached": c.measured.passes, "uncached": ref.passes},
            "fewer_steps_baseline": {"steps": steps, "psnr": round(base.quality.psnr, 4),
                                     "ssim": round(base.quality.ssim, 4), "closer": closer(q, base.quality)},
            "branch_policy": self.policy,
            "steps": ref.steps,
            "call": cal,
            "prompts": list(self.prompts),
            "seeds": [int(s) for s in self.seeds],
            "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "magcache": __version__,
        }


def tune(pipe, profile: Profile, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any], target: Target,
         grid: Grid = Grid(), policy: str = "joint", on_run: OnRun = None) -> TuneResult:
    """Sweep the grid, pick the fewest-passes setting meeting `target` (None if none does), and measure
    the fewer-steps baseline at every Pareto point's pass count."""
    if not target.given():
        raise MagCacheError("no quality target", hint="pass --min-psnr, --min-ssim or --max-lpips")
    scorer, note = lpips_scorer()
    if target.max_lpips is not None and scorer is None:
        raise MagCacheError(f"--max-lpips needs LPIPS, but {note[0].lower()}{note[1:]}",
                            hint="use --min-psnr or --min-ssim, or put torchvision's AlexNet weights in the torch hub cache")
    ref = reference(pipe, profile, prompts, seeds, call_kwargs, on_run, lpips=(scorer, note))
    runs = len(prompts) * len(seeds)
    n_runs = runs
    points = sweep(pipe, profile, ref, prompts, seeds, call_kwargs, grid.settings(), policy, on_run, target.metric)
    n_runs += runs * sum(1 for p in distinct(points) if p.measured.passes < ref.passes)
    # a setting that skips nothing meets any target and saves nothing: never chosen
    ok = [p for p in distinct(points) if p.measured.passes < ref.passes and p.measured.quality.meets(**target.given())]
    chosen = min(ok, key=lambda p: (p.measured.passes, -_value(p.measured.quality, target.metric)), default=None)
    wanted = {min(ref.steps, equal_pass_steps(p.measured.passes, ref.per_step))
              for p in distinct(points) if p.pareto or p is chosen}
    baselines: dict[int, Measured] = {}
    for steps in sorted(wanted):
        if steps == ref.steps:
            baselines[steps] = Measured(steps, ref.passes, ref.wall_s, measure(ref.arrays, ref.arrays, ref.lpips))
        else:
            baselines[steps], _ = fewer_steps(pipe, ref, prompts, seeds, call_kwargs, steps, on_run)
            n_runs += runs
    return TuneResult(ref, points, target, "joint" if profile.calibration.guidance_mode == "batched" else policy,
                      chosen, baselines, list(prompts), list(seeds), dict(call_kwargs), n_runs)


def with_tuned_defaults(profile: Profile, result: TuneResult) -> Profile:
    """A copy of the profile whose defaults are the chosen setting, with the evidence in `defaults.tuned`."""
    if result.chosen is None:
        raise MagCacheError("no setting meets the target")
    s = result.chosen.settings
    defaults = dataclasses.replace(profile.defaults, threshold=s.threshold, max_skip_steps=s.max_skip_steps,
                                   retention_ratio=s.retention_ratio, tuned=result.evidence())
    return dataclasses.replace(profile, defaults=defaults)


# -------------------------------------------------------------------------------------- branch study


def shared_curve_profile(profile: Profile, source: str = "cond") -> Profile:
    """The profile with `source`'s curve used for every branch (what diffusers' hook does with one list)."""
    if source not in profile.branches:
        raise MagCacheError(f"the profile has no {source!r} branch (branches: {', '.join(profile.branches)})")
    curve = profile.branches[source]
    branches = {label: dataclasses.replace(curve) for label in profile.branches}
    return dataclasses.replace(profile, branches=branches)


def at_budgets(rows: dict[str, list[Point]], budgets: Sequence[float]) -> list[dict[str, Any]]:
    """For each pass budget, each configuration's best PSNR among its points that cost at most that much."""
    table = []
    for b in budgets:
        row: dict[str, Any] = {"passes": b}
        for name, points in rows.items():
            fit = [p for p in points if p.measured.passes <= b + 1e-9]
            best = max(fit, key=lambda p: p.measured.quality.psnr, default=None)
            row[name] = None if best is None else {
                "psnr": best.measured.quality.psnr, "ssim": best.measured.quality.ssim, "passes": best.measured.passes,
                "threshold": best.settings.threshold, "max_skip_steps": best.settings.max_skip_steps}
        table.append(row)
    return table

