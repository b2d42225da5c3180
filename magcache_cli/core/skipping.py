"""Cached runs: hooks that follow a precomputed skip schedule per branch, replaying the branch's cached residual
(or its forecast, `forecast.py`) on skipped steps. The schedule depends only on the profile's curves, the
settings and the position the run begins at (`RunPlan.schedule`): an img2img run with strength < 1 begins
mid-schedule, and the rule applies to the steps it runs as to a run of its own. The forecast changes what a
skipped step outputs, never which steps skip."""

from __future__ import annotations

import torch

from magcache_cli.core.branches import Assignment, assign_profiled
from magcache_cli.core.forecast import ResidualCache
from magcache_cli.core.hooks import StackHooks, StepCalls
from magcache_cli.core.rule import RunPlan
from magcache_cli.log import warn


class SkippingHooks(StackHooks):
    """Skips the stack on the steps the plan's schedule marks, per branch; one cached residual per branch, two
    with a forecast (`plan.settings.forecast` > 0)."""

    def __init__(self, pipe, denoiser_name: str, plan: RunPlan, prefix: str = "", calls: StepCalls | None = None,
                 gated: bool = False):
        self.plan = plan
        self._cache = ResidualCache(plan.settings.forecast)
        self.forecasting = self._cache.forecast > 0
        self._cache_sig: dict[str, tuple] = {}  # main input shape of the call that cached each residual
        self._schedule: dict[str, list[bool]] | None = None
        self._covered: tuple[int, int] = (0, 0)
        self.missed: dict[str, int] = {}  # why passes the schedule skipped were computed, and how often
        super().__init__(pipe, denoiser_name, prefix, calls, gated)

    def _default_steps(self) -> int | None:
        return self.plan.steps

    def _reset_branches(self) -> None:
        self._cache.clear()
        self._cache_sig = {}
        self._schedule = None

    def held_bytes(self) -> dict[str, int]:
        """Bytes of residuals held between calls, per branch key (`uncond+cond` for a batched call)."""
        return self._cache.held_bytes()

    def _located(self, step: int) -> None:
        """The first call of a pipeline call fixes the schedule: its position is where the run begins."""
        plan = self.plan
        if self._schedule is None:
            steps = self._steps = self._steps or plan.steps
            if plan.steps and steps != plan.steps:
                msg = f"calibration.steps: profile measured at {plan.steps} steps, running {steps} (curves resampled)"
                warn(msg, self.warnings)
            self._schedule, _ = plan.schedule(steps, begin=step)
            self._covered = plan.covered(steps)
        start, stop = self._covered
        if not start <= step < stop and step not in self._report.uncovered:
            self._report.uncovered.append(step)  # computed: the curves say nothing about this step

    def _assign(self, batch: int) -> Assignment:
        return assign_profiled(self._context, batch, self.state.call_in_step, self.plan.guidance_mode,
                               self.plan.labels)

    def _decide(self, a: Assignment, batch: int) -> bool:
        sched = self._schedule
        step = self.state.step
        if step >= len(next(iter(sched.values()))) or any(sched[label][step] for label in a.labels):
            return True
        # scheduled to skip: only with a residual cached by a call of the same input layout
        if self._cache.last(a.key) is None:
            return self._miss("no residual was cached for the branch")
        if self._cache_sig.get(a.key) != self._sig:
            return self._miss("the call's input shape differs from the call that cached the residual")
        return False

    def _miss(self, reason: str) -> bool:
        self.missed[reason] = self.missed.get(reason, 0) + 1
        return True

    def skip_warnings(self) -> list[str]:
        """One line per reason a pass the schedule skipped was computed instead (never silently)."""
        who = self.prefix.rstrip(".") or self.denoiser_name
        return [f"{who}: {n} pass(es) scheduled to skip were computed: {reason}" for reason, n in self.missed.items()]

    def _prepare(self, a: Assignment, computing: bool) -> None:
        if computing:
            self._cache.begin_compute(a.key)
            return
        r, delta, weight = self._cache.replay(a.key, self.state.step)
        self._tap.residual = r
        if self.forecasting:  # always both tensors: the compiled skip layout has one graph whatever the weight
            self._tap.delta = r if delta is None else delta
            self._tap.weight = torch.full((), weight, dtype=torch.float32, device=r.device)

    def _on_residual(self, residual: torch.Tensor) -> None:
        key = self.state.current.key
        self._cache.store(key, residual, self.state.step)
        self._cache_sig[key] = self._sig
