"""Quality you can measure before trusting a profile: a cached run against the uncached reference and against
the step-reduction baseline (`compare`); `tune.py` builds its sweep on the same pieces.

Library only: every function returns data, the CLI renders it. All measurements are against the uncached
pipeline with the same prompts, seeds and call settings; quality numbers are means over the prompt × seed
outputs (the worst output is reported too).

Three facts keep the cost down:

* one uncached reference per prompt × seed, reused by every setting measured against it;
* the outputs depend on the settings only through the skip schedule (`core.rule.simulate`), so settings
  with identical schedules are run once, and an all-computed schedule *is* the reference;
* the model is loaded once by the caller and never reloaded here.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from magcache_cli.core import rule as ratios
from magcache_cli.profile.plan import equal_pass_steps
from magcache_cli.profile.schema import Profile
from magcache_cli.quality.metrics import Quality, lpips_scorer, measure
from magcache_cli.quality.timing import DEFAULT_REPEATS, Timings, interleaved
from magcache_cli.runner.outputs import as_array
from magcache_cli.runner.run import RunResult, run
from magcache_cli.types import BranchPolicy

OnRun = Callable[[str], None] | None


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
    """Times each pipeline call of a `runner.run.run` through its `on_run` callback (called just before each)."""

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


def reference(pipe, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any], *, on_run: OnRun = None,
              warmup: bool = True, lpips: tuple | None = None) -> Reference:
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
           policy: BranchPolicy = BranchPolicy.JOINT, on_run: OnRun = None, force: bool = False) -> tuple[Measured, RunResult]:
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
    timings: Timings | None = None  # interleaved repeats; the wall_s above are their medians then
    reuse: Measured | None = None  # with a forecast: the same schedule with MagCache's plain reuse (A = 0)

    @property
    def speedup_passes(self) -> float:
        return self.reference.passes / self.cached.passes if self.cached.passes else float("inf")

    @property
    def speedup_wall(self) -> float:
        return self.reference.wall_s / self.cached.wall_s if self.cached.wall_s else float("inf")

    @property
    def wall_note(self) -> str | None:
        """Why the wall times cannot be trusted (the machine was disturbed), or None."""
        if self.timings is not None:
            return self.timings.verdict(self.speedup_passes)
        if wall_suspect(self.speedup_wall, self.speedup_passes):
            return "the wall-time speedup exceeds what the skipped passes allow: the machine was busy while timing"
        return None

    @property
    def wall_suspect(self) -> bool:
        return self.wall_note is not None

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
            "reuse": None if self.reuse is None else {
                "passes_per_run": self.reuse.passes, "wall_s_per_run": round(self.reuse.wall_s, 4),
                **self.reuse.quality.to_json()},
            "closer_to_uncached": self.winner,
            "wall_times_suspect": self.wall_suspect,
            "wall_note": self.wall_note,
            "timing": None if self.timings is None else self.timings.to_json(),
            "lpips_note": ref.lpips_note,
            "warnings": c.warnings,
        }


def compare(pipe, profile: Profile, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any],
            settings: ratios.SkipSettings, policy: BranchPolicy = BranchPolicy.JOINT, on_run: OnRun = None,
            force: bool = False, repeats: int = DEFAULT_REPEATS) -> Comparison:
    """Uncached, cached and fewer-steps runs on the same prompts and seeds, measured against the uncached.

    Quality comes from every prompt × seed; wall time from `repeats` interleaved timings of the first one
    (uncached, cached, fewer steps in turn; the quality runs before them are the warm-up), reported as
    medians. `repeats=0` keeps the medians of the quality runs instead. With a forecast (`settings.forecast` >
    0) the same schedule also runs with plain reuse (quality only), to show what the forecast adds.
    """
    ref = reference(pipe, prompts, seeds, call_kwargs, on_run=on_run)
    measured, res = cached(pipe, profile, ref, prompts, seeds, call_kwargs, settings, policy, on_run, force)
    reuse = None
    if settings.forecast > 0:
        reuse, _ = cached(pipe, profile, ref, prompts, seeds, call_kwargs, dataclasses.replace(settings, forecast=0.0),
                          policy, on_run, force)
    steps = min(ref.steps, equal_pass_steps(measured.passes, ref.per_step))
    base, base_res = fewer_steps(pipe, ref, prompts, seeds, call_kwargs, steps, on_run)
    timings = None
    if repeats:
        timings = time_configs(pipe, profile, prompts[0], seeds[0], call_kwargs, settings, policy, force, steps,
                               repeats, on_run)
        ref = dataclasses.replace(ref, wall_s=timings.median("uncached"))
        measured = dataclasses.replace(measured, wall_s=timings.median("cached"))
        base = dataclasses.replace(base, wall_s=timings.median("fewer_steps"))
    return Comparison(ref, measured, base, steps, closer(measured.quality, base.quality), settings, res.policy or policy,
                      res.prompts_seeds, res, _arrays(res), _arrays(base_res), timings, reuse)


def time_configs(pipe, profile: Profile, prompt: str, seed: int, call_kwargs: dict[str, Any],
                 settings: ratios.SkipSettings, policy: str, force: bool, fewer: int, repeats: int,
                 on_run: OnRun = None, warm_up: bool = False) -> Timings:
    """Interleaved wall times of one prompt × seed: uncached, cached, and uncached at `fewer` steps."""
    def one(args: dict[str, Any], **kw: Any) -> Callable[[], float]:
        return lambda: run(pipe, [prompt], [seed], args, **kw).wall_s

    calls = {"uncached": one(call_kwargs, profile=None, no_cache=True),
             "cached": one(call_kwargs, profile=profile, settings=settings, policy=policy, force=force),
             "fewer_steps": one({**call_kwargs, "num_inference_steps": fewer}, profile=None, no_cache=True)}
    return interleaved(calls, repeats, warm_up=warm_up, on_call=on_run)
