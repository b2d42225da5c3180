"""Cached runs: hooks that follow a precomputed skip schedule per branch, replaying the branch's cached residual
(or its forecast, `forecast.py`) on skipped steps. The schedule depends only on the profile's curves, the
settings and the position the run begins at (`RunPlan.schedule`): an img2img run with strength < 1 begins
mid-schedule, and the rule applies to the steps it runs as to a run of its own. The forecast changes what a
skipped step outputs, never which steps skip."""

from __future__ import annotations

import torch

from magcache_cli.core.branches import Assignment, assign_profiled
from magcache_cli.core.calls import CallPlan, CallState, StepCalls
from magcache_cli.core.forecast import ResidualCache
from magcache_cli.core.hooks import HookConfig, StackHooks
from magcache_cli.core.proxies import Tap
from magcache_cli.core.report import CallReport
from magcache_cli.core.rule import RunPlan
from magcache_cli.core.stacks import StackSpec


class Skipping:
    """The cached-run strategy (`Strategy` in hooks.py): skips the stack on the steps the plan's schedule marks,
    per branch; one cached residual per branch, two with a forecast (`plan.settings.forecast` > 0)."""

    def __init__(self, plan: RunPlan):
        self.run_plan = plan
        self._cache = ResidualCache(plan.settings.forecast)
        self.forecasting = self._cache.forecast > 0
        self.default_steps = plan.steps
        self._cache_sig: dict[str, tuple] = {}  # main input shape of the call that cached each residual
        self.missed: dict[str, int] = {}  # why passes the schedule skipped were computed, and how often

    def clear(self) -> None:
        self._cache.clear()
        self._cache_sig = {}

    def opened(self, report: CallReport) -> None:
        pass

    def plan(self, steps: int | None, begin: int) -> CallPlan:
        """The schedule of a call of `steps` steps whose first denoiser call is at `begin` (where the run
        begins), the positions the curves cover, and a warning when the curves are resampled."""
        plan = self.run_plan
        steps = steps or plan.steps
        warning = None
        if plan.steps and steps != plan.steps:
            warning = f"calibration.steps: profile measured at {plan.steps} steps, running {steps} (curves resampled)"
        schedule, _ = plan.schedule(steps, begin=begin)
        return CallPlan(steps, begin, schedule, plan.covered(steps), warning)

    def assign(self, pipe, context: str | None, batch: int, call_index: int) -> Assignment:
        return assign_profiled(context, batch, call_index, self.run_plan.guidance_mode, self.run_plan.labels)

    def decide(self, plan: CallPlan, call: CallState) -> bool:
        a = call.current
        if plan.computes(call.step, a.labels):
            return True
        # scheduled to skip: only with a residual cached by a call of the same input layout
        if self._cache.last(a.key) is None:
            return self._miss("no residual was cached for the branch")
        if self._cache_sig.get(a.key) != call.sig:
            return self._miss("the call's input shape differs from the call that cached the residual")
        return False

    def _miss(self, reason: str) -> bool:
        self.missed[reason] = self.missed.get(reason, 0) + 1
        return True

    def prepare(self, call: CallState, tap: Tap) -> None:
        key = call.current.key
        if call.computing:
            self._cache.begin_compute(key)
            return
        r, delta, weight = self._cache.replay(key, call.step)
        tap.residual = r
        if self.forecasting:  # always both tensors: the compiled skip layout has one graph whatever the weight
            tap.delta = r if delta is None else delta
            tap.weight = torch.full((), weight, dtype=torch.float32, device=r.device)

    def residual(self, call: CallState, residual: torch.Tensor, spec: StackSpec) -> None:
        key = call.current.key
        self._cache.store(key, residual, call.step)
        self._cache_sig[key] = call.sig

    def output(self, call: CallState, output) -> None:
        pass

    def stepping(self, args: tuple, kwargs: dict) -> None:
        pass

    def held_bytes(self) -> dict[str, int]:
        """Bytes of residuals held between calls, per branch key (`uncond+cond` for a batched call)."""
        return self._cache.held_bytes()

    def skip_warnings(self, who: str) -> list[str]:
        """One line per reason a pass the schedule skipped was computed instead (never silently)."""
        return [f"{who}: {n} pass(es) scheduled to skip were computed: {reason}" for reason, n in self.missed.items()]


def SkippingHooks(pipe, denoiser_name: str, plan: RunPlan, prefix: str = "", calls: StepCalls | None = None,
                  gated: bool = False) -> StackHooks:
    """Cached-run hooks on `pipe`'s `denoiser_name`: `StackHooks` with a `Skipping` strategy."""
    return StackHooks(pipe, Skipping(plan), HookConfig(denoiser_name, prefix, gated), calls)
