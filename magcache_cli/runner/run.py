"""One cached run: the pipeline over prompts × seeds with skipping driven by a profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from magcache_cli.core import rule as ratios
from magcache_cli.core.distributed import Exchange, local_exchange
from magcache_cli.core.report import CallReport
from magcache_cli.core.rule import effective_policy
from magcache_cli.core.stacks import StackSpec, find_denoisers
from magcache_cli.log import warn
from magcache_cli.profile.plan import settings_from
from magcache_cli.profile.schema import Profile
from magcache_cli.runner.cache import MagCache, call_warnings
from magcache_cli.runner.calibrate import each_call
from magcache_cli.runner.inputs import prompt_seed_pairs
from magcache_cli.types import BranchPolicy


@dataclass
class RunResult:
    steps: int
    schedule: dict[str, dict[str, list[int]]]  # label -> {"computed": [...], "skipped": [...]}
    transformer_calls: int  # denoiser passes that ran the block stack, summed over runs
    total_calls: int  # all denoiser passes, summed over runs
    wall_s: float  # pipeline calls alone
    outputs: list[Any] = field(default_factory=list)
    prompts_seeds: list[tuple[str, int]] = field(default_factory=list)
    reports: list[CallReport] = field(default_factory=list)
    stack: StackSpec | None = None
    warnings: list[str] = field(default_factory=list)
    settings: ratios.SkipSettings | None = None
    policy: str | None = None
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # denoiser -> [begin, stop) it ran
    notes: list[str] = field(default_factory=list)

    @property
    def window(self) -> tuple[int, int] | None:
        """The [begin, stop) schedule positions the run executed (begin > 0: it started mid-schedule)."""
        if not self.windows:
            return None
        return min(w[0] for w in self.windows.values()), max(w[1] for w in self.windows.values())
    indices: list[int] = field(default_factory=list)  # of outputs in prompts × seeds (a rank's share differs)

    def to_json(self) -> dict[str, Any]:
        out = {
            "steps": self.steps,
            "window": None if self.window is None else list(self.window),
            "branches": self.schedule,
            "transformer_calls": self.transformer_calls,
            "total_calls": self.total_calls,
            "wall_s": round(self.wall_s, 4),
            "settings": None if self.settings is None else {
                "threshold": self.settings.threshold,
                "max_skip_steps": self.settings.max_skip_steps,
                "retention_ratio": self.settings.retention_ratio,
                "forecast": self.settings.forecast,
                "branch_policy": self.policy,
            },
            "stack": self.stack.paths if self.stack else None,
            "warnings": self.warnings,
            "notes": self.notes,
        }
        if len(self.windows) > 1:
            out["windows"] = {name: list(w) for name, w in self.windows.items()}
        return out


def uncovered_warning(reports: list[CallReport], profile: Profile) -> str | None:
    """The warning for steps a run executed that the profile's curves do not cover (they were computed)."""
    steps = sorted({s for r in reports for s in r.uncovered})
    if not steps:
        return None
    n, cal = reports[0].steps, profile.calibration
    actives = {tuple(b.active) for b in profile.branches.values() if b.active}
    measured = f" (calibrated on steps {min(a[0] for a in actives)}–{max(a[1] for a in actives) - 1} of {cal.steps})" if actives else ""
    span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}–{steps[-1]}"
    return (f"{span} of {n} are not covered by the profile's curves{measured}: computed, never skipped. To cover "
            "them, calibrate with a strength at least this run's (or on the full schedule: text-to-image or "
            "strength 1).")


def _schedule_of(report: CallReport) -> dict[str, dict[str, list[int]]]:
    labels = list(dict.fromkeys([*report.computed, *report.skipped]))
    return {lb: {"computed": sorted(report.computed.get(lb, [])), "skipped": sorted(report.skipped.get(lb, []))}
            for lb in labels}


def _warnings(cache, profile: Profile, call_kwargs: dict[str, Any]) -> list[str]:
    """Every warning of the run, once: compatibility, call settings that differ from the calibration, hooks."""
    out: list[str] = list(cache.warnings)
    for w in call_warnings(profile, call_kwargs):
        warn(w, out)
    for w in (w for h in cache.all_hooks for w in h.warnings):
        if w not in out:
            out.append(w)  # logged by the hooks already
    for w in (w for h in cache.all_hooks for w in h.skip_warnings()):
        warn(w, out)
    return out


class _CallCounter:
    """Counts the calls of every model that may denoise, for uncached runs (changes nothing)."""

    def __init__(self, modules):
        self.calls = 0
        self._handles = [m.register_forward_pre_hook(self._count) for m in modules]

    def _count(self, *_):
        self.calls += 1

    def remove(self):
        for h in self._handles:
            h.remove()


def run(
    pipe,
    prompts: list[str],
    seeds: list[int],
    call_kwargs: dict[str, Any],
    *,
    profile: Profile | None,
    settings: ratios.SkipSettings | None = None,
    policy: BranchPolicy = BranchPolicy.JOINT,
    no_cache: bool = False,
    force: bool = False,
    on_step: Callable[[int], None] | None = None,
    on_run: Callable[[int, str, int], None] | None = None,
    exchange: Exchange | None = None,
    on_output: Callable[[int, Any], None] | None = None,
) -> RunResult:
    """Generate every prompt × seed, skipping per the profile (or not at all with `no_cache`).

    The hooks are removed afterwards, also when the pipeline raises. A profile measured on another
    transformer is refused unless `force`. With an `exchange` over several ranks, only this rank's share of
    the prompt × seed runs is generated (`prompts_seeds`, `indices`). `on_output(i, output)` gets each output as soon as it exists
    (so a caller can save it before a later run fails); `i` is its index in the whole prompt × seed list.
    """
    runs = (exchange or local_exchange()).sharded(prompt_seed_pairs(prompts, seeds))
    steps = int(call_kwargs.get("num_inference_steps") or (profile.calibration.steps if profile else 0))
    done = _Done(on_output)
    if no_cache or profile is None:
        counter = _CallCounter([m for _, m in find_denoisers(pipe)])
        try:
            for i, pair, out, wall in each_call(pipe, runs, call_kwargs, on_run):
                done.add(i, pair, out, wall)
        finally:
            counter.remove()
        return RunResult(steps, {}, counter.calls, counter.calls, done.wall, done.outputs, done.pairs,
                         indices=done.indices, notes=[n for n in [ratios.few_step_note(steps)] if n])
    settings = settings or settings_from(profile)
    cache = MagCache(pipe, profile, settings, policy, force)
    cache.hooks.on_step = on_step
    with cache:
        for i, pair, out, wall in each_call(pipe, runs, call_kwargs, on_run,
                                            lambda: cache.start_call(call_kwargs.get("num_inference_steps"))):
            done.add(i, pair, out, wall)
    return _cached_result(cache, profile, call_kwargs, steps, done)


class _Done:
    """The finished runs: outputs (each handed to `on_output` as soon as it exists), pairs, indices, time."""

    def __init__(self, on_output: Callable[[int, Any], None] | None):
        self.on_output, self.outputs, self.pairs, self.indices, self.wall = on_output, [], [], [], 0.0

    def add(self, index: int, pair: tuple[str, int], output: Any, wall: float) -> None:
        self.outputs.append(output)
        self.wall += wall
        self.pairs.append(pair)
        self.indices.append(index)
        if self.on_output:
            self.on_output(index, output)


def _cached_result(cache: MagCache, profile: Profile, call_kwargs: dict[str, Any], steps: int,
                   done: _Done) -> RunResult:
    reports = cache.reports
    windows = {h.denoiser_name: h.call.report.window for h in cache.all_hooks
               if h.call.report is not None and h.call.report.window}
    warnings = _warnings(cache, profile, call_kwargs)
    if reports and (uncovered := uncovered_warning(reports, profile)):
        warn(uncovered, warnings)
    steps = reports[0].steps if reports else steps
    return RunResult(
        steps=steps,
        schedule=_schedule_of(reports[0]) if reports else {},
        transformer_calls=sum(r.computed_calls for r in reports),
        total_calls=sum(r.calls for r in reports),
        wall_s=done.wall,
        outputs=done.outputs,
        prompts_seeds=done.pairs,
        reports=reports,
        stack=cache.hooks.spec,
        warnings=warnings,
        windows=windows,
        notes=[n for n in [ratios.few_step_note(steps)] if n],
        settings=cache.settings,
        policy=effective_policy(profile.calibration.guidance_mode, cache.policy),
        indices=done.indices,
    )
