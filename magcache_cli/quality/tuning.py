"""`tune` on a pipeline: the search of `search.py` with real runs, its result in the shape `tune` reports and writes.

One model load, one uncached reference per prompt × seed (or the calibration's own outputs, `reference_from`),
then only the runs the search asks for. `SearchResult` is a `TuneResult` (same table, same JSON, same
`defaults.tuned`), plus the goal, the runs it was chosen on and the held-out runs that confirmed it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from magcache_cli.errors import MagCacheError
from magcache_cli.profile.plan import equal_pass_steps
from magcache_cli.profile.schema import Profile
from magcache_cli.quality.compare import Measured, OnRun, Reference, reference, time_configs
from magcache_cli.quality.metrics import lpips_scorer, measure
from magcache_cli.quality.search import BudgetSpent, Cand, Goal, Ledger, Search, candidates, quality_of, split_runs
from magcache_cli.quality.timing import DEFAULT_REPEATS
from magcache_cli.quality.tune import Grid, Point, Target, TuneResult, _mark_pareto
from magcache_cli.runner.outputs import as_array
from magcache_cli.runner.run import run
from magcache_cli.types import BranchPolicy


@dataclass
class SearchResult(TuneResult):
    goal: Goal = field(default_factory=Goal)
    choose: list[int] = field(default_factory=list)  # indices of the prompt × seed runs that steered the search
    held: list[int] = field(default_factory=list)  # held-out runs (confirmed the winner)
    pairs: list[tuple[str, int]] = field(default_factory=list)
    ledger: Ledger | None = None
    budget: int | None = None
    budget_spent: bool = False
    dropped: int = 0  # candidates dropped at their first missed run
    reference_runs: int = 0  # runs spent on the uncached reference (0 when reused from a calibration)

    def split(self, runs: list[int]) -> dict[str, Any] | None:
        """The chosen setting and its fewer-steps baseline on some of the runs."""
        c = self.chosen
        if c is None or not runs or self.ledger is None:
            return None
        steps = min(self.reference.steps, equal_pass_steps(c.measured.passes, self.reference.per_step))
        q = quality_of([self.ledger.out[c.key, i] for i in runs])
        have = [self.ledger.base[steps, i] for i in runs if (steps, i) in self.ledger.base]
        base = quality_of(have) if len(have) == len(runs) else None
        return {"runs": len(runs), **{k: v for k, v in q.to_json().items() if v is not None},
                "fewer_steps": None if base is None else {"steps": steps, "psnr": round(base.psnr, 4),
                                                          "psnr_min": round(base.psnr_min, 4)}}

    def meets(self, point) -> bool:
        """Whether a measured point met the goal on every prompt × seed (measured on all of them)."""
        if self.ledger is None or len(self.ledger.measured(point)) < len(self.pairs):
            return False
        steps = min(self.reference.steps, equal_pass_steps(point.measured.passes, self.reference.per_step))
        return all(self.goal.ok(self.ledger.out[point.key, i], self.ledger.base.get((steps, i)))
                   for i in range(len(self.pairs)))

    def summary(self) -> dict[str, Any]:
        """How the search went, for `--json` and the table's footer."""
        return {"goal": self.goal.given(), "reference_runs": self.reference_runs, "pipeline_runs": self.runs,
                "candidates_measured": len(self.points), "dropped": self.dropped, "budget": self.budget,
                "budget_spent": self.budget_spent, "runs_chosen_on": len(self.choose), "runs_held_out": len(self.held),
                "chosen_on": self.split(self.choose), "held_out": self.split(self.held)}

    def evidence(self) -> dict[str, Any]:
        ev = super().evidence()
        return {**ev, "target": self.goal.given(), "chosen_on": self.split(self.choose),
                "held_out": self.split(self.held), "pipeline_runs": self.runs, "search": "bisection"}


def reference_from(outputs: list, steps: int, passes: float, wall_s: float) -> Reference:
    """The uncached reference from outputs already made with every step computed (a calibration's):
    no pipeline run."""
    scorer, note = lpips_scorer()
    return Reference(steps, passes, wall_s, [as_array(o) for o in outputs], max(1, round(passes / steps)),
                     scorer, note)


def _runner(pipe, profile: Profile, ref: Reference, pairs, call_kwargs, policy, on_run: OnRun, record: dict):
    """The ledger's two run functions: one prompt × seed, cached with a candidate or at fewer steps."""
    def one(i: int, label: str, kwargs: dict, **kw):
        prompt, seed = pairs[i]
        res = run(pipe, [prompt], [seed], kwargs, on_run=(lambda *_: on_run(label)) if on_run else None, **kw)
        return res, measure([as_array(res.outputs[0])], [ref.arrays[i]], ref.lpips).per_output[0]

    def cached(cand: Cand, i: int) -> dict:
        res, m = one(i, "cached", call_kwargs, profile=profile, settings=cand.settings, policy=policy)
        record[cand.key, i] = (res.transformer_calls, res.wall_s, res.schedule)
        return m

    def fewer(steps: int, i: int) -> dict:
        res, m = one(i, f"{steps} steps", {**call_kwargs, "num_inference_steps": steps}, profile=None, no_cache=True)
        record[steps, i] = (res.transformer_calls, res.wall_s, None)
        return m

    return cached, fewer


def _points(ledger: Ledger, cands: dict[tuple, Cand], record: dict, ref: Reference, metric: str) -> list[Point]:
    points = []
    for key, cand in cands.items():
        runs = ledger.measured(cand)
        if not runs:
            continue
        calls, walls, sched = zip(*(record[key, i] for i in runs))
        passes, wall = sum(calls) / len(calls), statistics.median(walls)
        passes = int(passes) if float(passes).is_integer() else passes
        m = Measured(ref.steps, passes, wall, quality_of([ledger.out[key, i] for i in runs]), sched[0] or {})
        points.append(Point(cand.settings, key, m, ref.passes / passes, ref.wall_s / wall if wall else float("inf")))
    _mark_pareto(points, metric)
    return points


def _baselines(ledger: Ledger, record: dict, ref: Reference) -> dict[int, Measured]:
    out = {}
    for steps in sorted({s for s, _ in ledger.base}):
        runs = sorted(i for s, i in ledger.base if s == steps)
        walls = [record[steps, i][1] for i in runs]
        out[steps] = Measured(steps, steps * ref.per_step, statistics.median(walls),
                              quality_of([ledger.base[steps, i] for i in runs]))
    return out


def search_tune(pipe, profile: Profile, prompts: list[str], seeds: list[int], call_kwargs: dict[str, Any], goal: Goal,
                grid: Grid = Grid(), policy: BranchPolicy = BranchPolicy.JOINT, on_run: OnRun = None, budget: int | None = None,
                repeats: int = DEFAULT_REPEATS, ref: Reference | None = None) -> SearchResult:
    """Search the grid for the fastest setting meeting `goal` (or the best within `goal.speedup`).

    `ref` reuses uncached outputs made already (e.g. by calibration; prompt-major, one per prompt × seed) instead
    of running the reference. `budget` caps the pipeline runs, reference included; when it is spent the search
    stops and keeps the best confirmed setting, if any. The chosen setting's wall time comes from `repeats`
    interleaved timings, as in `tune.tune`."""
    pairs = [(p, s) for p in prompts for s in seeds]
    if budget is not None and budget < len(pairs) + (0 if ref is not None else len(pairs)):
        raise MagCacheError(f"--budget {budget} is too small: the reference alone takes {len(pairs)} runs and each "
                            "candidate at least one more", hint=f"give at least {2 * len(pairs)}")
    spent = 0
    if ref is None:
        ref = reference(pipe, prompts, seeds, call_kwargs, on_run=on_run)
        spent = len(pairs)
    record: dict = {}
    ledger = Ledger(*_runner(pipe, profile, ref, pairs, call_kwargs, policy, on_run, record), spent, budget)
    levels = candidates(profile, ref.steps, grid.settings(), policy)
    choose, held = split_runs(len(pairs))
    search = Search(ledger, goal, levels, choose, held, ref.per_step, ref.steps, ref.passes)
    winner, spent_out = None, False
    try:
        winner = search.run()
        if winner is not None:  # the fewer-steps baseline of the winner on every run, for the report
            steps = search.baseline_steps(winner.passes)
            for i in range(len(pairs)):
                ledger.fewer(steps, i)
    except BudgetSpent:
        spent_out = True
    return _result(profile, ref, pairs, prompts, seeds, call_kwargs, goal, policy, levels, ledger, record, search,
                   winner, budget, spent_out, spent, pipe, on_run, repeats)


def _result(profile, ref, pairs, prompts, seeds, call_kwargs, goal, policy, levels, ledger, record, search, winner,
            budget, spent_out, ref_runs, pipe, on_run, repeats) -> SearchResult:
    from magcache_cli.core.rule import effective_policy

    cands: dict = {}
    for lv in levels.values():  # A ascending: a key shared by an A that cannot apply keeps the lowest A (the reuse run)
        for lst in lv.values():
            for c in lst:
                cands.setdefault(c.key, c)
    target = Target(goal.min_psnr, goal.min_ssim, goal.max_lpips)
    points = _points(ledger, cands, record, ref, target.metric if target.given() else "psnr")
    chosen = next((p for p in points if winner is not None and p.key == winner.key), None)
    if chosen is not None and len(ledger.measured(winner)) < len(pairs):
        chosen = None  # confirmed on every run or not at all
    timings = None
    if chosen is not None and repeats:
        fewer = min(ref.steps, equal_pass_steps(chosen.measured.passes, ref.per_step))
        timings = time_configs(pipe, profile, prompts[0], seeds[0], call_kwargs, chosen.settings, policy, False,
                               fewer, repeats, on_run)
        chosen.speedup_wall = timings.speedup("uncached", "cached")
    return SearchResult(ref, points, target, effective_policy(profile.calibration.guidance_mode, policy), chosen,
                        _baselines(ledger, record, ref), list(prompts), list(seeds), dict(call_kwargs), ledger.runs,
                        timings, goal=goal, choose=search.choose, held=search.held, pairs=pairs, ledger=ledger,
                        budget=budget, budget_spent=spent_out, dropped=search.dropped, reference_runs=ref_runs)
