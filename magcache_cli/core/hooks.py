"""The hooks on one denoiser of a pipeline: install and remove exactly, start each pipeline call in one place,
follow its steps and calls, label each call with its guidance branches, and swap the stack's block lists for
one call. What a call computes and what happens to its residual is the strategy's (`Strategy`): recording
(core/recording.py) or skipping (core/skipping.py), one object plugged into the one hook class.

Where things happen, chosen so that nothing runs inside the blocks (which users compile):

* a pipeline call starts in `StackHooks.start_call` only, called from whichever the pipeline reveals first: the
  runner before `pipe(...)`, the scheduler's ``set_timesteps`` (its step count and schedule), a scheduler that
  replaced the one the hooks patched (``pipe.scheduler = ...`` after `install`: the new one is patched and
  its schedule read), or the first denoiser call when nothing said so. Its state is one `CallState`;
* a forward pre-hook on the denoiser (eager, outside any compiled block) locates the call in the scheduler's
  full schedule (`positions.py`), labels it with its branches, fixes the call's `CallPlan` at its first
  denoiser call, decides compute or skip and swaps the stack's block lists for that call (`proxies.py`); a
  forward hook swaps them back, also when the call raises, and hands the residual to the strategy;
* under a whole-model ``torch.compile`` the hooks are `torch.compiler.disable`d and the one discovery call runs
  eagerly (see `compile.py`), so the forward pass is one graph per layout, computed or skipped.

Removing the hooks restores the original modules and methods exactly.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from magcache_cli.core.branches import Assignment, context_label
from magcache_cli.core.calls import CallPlan, CallState, StepCalls
from magcache_cli.core.patching import Patches
from magcache_cli.core.positions import StepClock
from magcache_cli.core.proxies import Layout, Tap, build_layouts, observed_residual
from magcache_cli.core.report import CallReport
from magcache_cli.core.stacks import Observation, StackSpec, analyse, set_submodule, unwrap_compiled
from magcache_cli.log import warn


class Strategy(Protocol):
    """What a kind of hooks decides: how calls are labelled, what a pipeline call computes, what a computed
    call's residual is for, what a skipped call replays. Recording and Skipping implement it."""

    forecasting: bool  # skipped calls replay a forecast (`Tap.delta`, `Tap.weight`), not only the residual
    default_steps: int | None  # a call's step count when neither the runner nor the scheduler says

    def clear(self) -> None: ...  # a call starts, or the hooks are removed: forget per-call tensors
    def opened(self, report: CallReport) -> None: ...  # a call's first denoiser call: its report exists
    def plan(self, steps: int | None, begin: int) -> CallPlan: ...  # what a call beginning at `begin` computes
    def assign(self, pipe, context: str | None, batch: int, call_index: int) -> Assignment: ...
    def decide(self, plan: CallPlan, call: CallState) -> bool: ...  # compute `call.current`? (spec known)
    def prepare(self, call: CallState, tap: Tap) -> None: ...  # decided: before the block lists are swapped
    def residual(self, call: CallState, residual: torch.Tensor, spec: StackSpec) -> None: ...  # computed
    def output(self, call: CallState, output) -> None: ...  # a denoiser call ended (`output` None: it raised)
    def stepping(self, args: tuple, kwargs: dict) -> None: ...  # the scheduler's step() is about to run
    def held_bytes(self) -> dict[str, int]: ...
    def skip_warnings(self, who: str) -> list[str]: ...


@dataclass(frozen=True)
class HookConfig:
    """Which denoiser the hooks are on, and how its calls count. `prefix` is added to branch labels in reports
    ("transformer_2."); a `gated` model (found among the pipeline's components, not its `transformer`) is a
    denoiser only for the calls it gets inside the denoising loop: not a vocoder or a text connector."""

    denoiser_name: str = "transformer"
    prefix: str = ""
    gated: bool = False


class StackHooks:
    """Hooks on one denoiser of a pipeline, driven by a `Strategy`. `call` is the current pipeline call's
    state, `reports` one `CallReport` per pipeline call that reached the denoiser.

    Install with `install()` (idempotent) and undo with `remove()`, or use it as a context manager.
    """

    def __init__(self, pipe, strategy: Strategy, config: HookConfig = HookConfig(), calls: StepCalls | None = None):
        self.pipe, self.strategy, self.config = pipe, strategy, config
        self.denoiser: nn.Module = unwrap_compiled(getattr(pipe, config.denoiser_name))
        self.scheduler = pipe.scheduler  # the one the hooks follow: the pipeline's at the last call start
        self.calls = calls or StepCalls()  # shared by the hooks of one pipeline's denoisers
        self.calls.members.append(self)
        self.call = CallState()
        self.spec: StackSpec | None = None
        self.reports: list[CallReport] = []
        self.warnings: list[str] = []
        self.on_step: Callable[[int], None] | None = None  # optional callback(steps done) once per step
        self._context: str | None = None  # the pipeline's `cache_context` name around the current call
        self._tap = Tap()
        self._layouts: dict[Layout, dict[str, nn.Module]] = {}
        self._observation: Observation | None = None
        self._patches = Patches()
        self._installed = False

    @property
    def denoiser_name(self) -> str:
        return self.config.denoiser_name

    @property
    def prefix(self) -> str:
        return self.config.prefix

    @property
    def step(self) -> int:
        return self.call.step

    def held_bytes(self) -> dict[str, int]:
        """Bytes of residuals held between calls, per branch key (`uncond+cond` for a batched call)."""
        return self.strategy.held_bytes()

    def skip_warnings(self) -> list[str]:
        """One line per reason a pass the schedule skipped was computed instead (never silently)."""
        return self.strategy.skip_warnings(self.prefix.rstrip(".") or self.denoiser_name)

    # ---- the one place a pipeline call starts --------------------------------------------------------
    def start_call(self, steps: int | None = None, *, scheduled: bool = False) -> None:
        """Start a pipeline call of `steps` steps (None: the scheduler's or the profile's count).

        `scheduled`: the pipeline's scheduler has its schedule set for this call (its `set_timesteps` ran, or
        it replaced the patched one): its step count and schedule are read, and denoiser calls from now on are
        the denoising loop's. The scheduler is the one the pipeline holds now (re-patched if replaced)."""
        self._set_layout(Layout.ORIGINAL)  # (always in place between denoiser calls)
        self._follow_scheduler()
        if steps is None and scheduled:  # the scheduler may not say: the count this call was started with
            steps = self.call.steps
        clock = StepClock(self.scheduler, steps)
        if scheduled:
            clock.read_schedule()
        self.calls.restart(None)
        self.strategy.clear()
        self.call.reset(started=True, steps=clock.steps or self.strategy.default_steps, clock=clock,
                        in_loop=scheduled)

    def _follow_scheduler(self) -> bool:
        """Patch the scheduler the pipeline holds now if it is not the one followed; True if it was replaced."""
        current = getattr(self.pipe, "scheduler", None)
        if current is self.scheduler or current is None:
            return False
        self.scheduler = current
        if self._installed and not self._patches.holds(current):
            self._patch_scheduler(current)
        return True

    # ---- install / remove ------------------------------------------------------------------------------
    def install(self) -> "StackHooks":
        if self._installed:
            return self
        from magcache_cli.core.compile import compiled_entry, gate_eager

        d = self.denoiser
        # Disabled for dynamo: under a whole-model compile the hooks run as plain Python, never as a graph
        # that would guard on (and recompile for) the step, the branch or the caches.
        self._patches.hooked(
            d.register_forward_pre_hook(torch.compiler.disable(self._before_call), with_kwargs=True),
            d.register_forward_hook(torch.compiler.disable(self._after_call), with_kwargs=True, always_call=True),
        )
        entry = compiled_entry(getattr(self.pipe, self.denoiser_name))
        if entry is not None:  # a whole-model compile: the discovery call runs eagerly
            owner, name, eager = entry
            self._patches.wrap(owner, name, lambda compiled: gate_eager(compiled, eager, lambda: self.spec is None))
        self.scheduler = self.pipe.scheduler
        self._patch_scheduler(self.scheduler)
        if hasattr(d, "cache_context"):
            self._patches.wrap(d, "cache_context", self._wrap_cache_context)
        self._installed = True
        return self

    def remove(self) -> None:
        if not self._installed:
            return
        self._patches.undo()
        self._set_layout(Layout.ORIGINAL)
        self._installed = False
        self.strategy.clear()
        self._tap.clear()

    def __enter__(self) -> "StackHooks":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _patch_scheduler(self, scheduler) -> None:
        self._patches.wrap(scheduler, "step", lambda original: self._wrap_step(original, scheduler))
        self._patches.wrap(scheduler, "set_timesteps", lambda original: self._wrap_set_timesteps(original, scheduler))

    def _wrap_step(self, original, owner):
        @functools.wraps(original)  # pipelines read step()'s signature (eta, generator)
        def step(*args, **kwargs):
            if owner is not self.scheduler:  # a scheduler the pipeline no longer holds
                return original(*args, **kwargs)
            self.strategy.stepping(args, kwargs)
            out = original(*args, **kwargs)
            call = self.call
            if call.clock is not None:
                call.clock.stepped()
            done = call.step + 1  # a second step() in the same denoising step reports nothing new
            if self.on_step is not None and call.report is not None and call.report.calls and done > call.notified:
                call.notified = done
                self.on_step(done)
            return out
        return step

    def _wrap_set_timesteps(self, original, owner):
        @functools.wraps(original)
        def set_timesteps(*args, **kwargs):
            out = original(*args, **kwargs)
            if owner is self.scheduler:
                self.start_call(scheduled=True)
            return out
        return set_timesteps

    def _wrap_cache_context(self, original):
        @functools.wraps(original)
        @contextmanager
        def cache_context(name, *args, **kwargs):
            previous, self._context = self._context, context_label(name)
            try:
                with original(name, *args, **kwargs):
                    yield
            finally:
                self._context = previous
        return cache_context

    # ---- per denoiser call -------------------------------------------------------------------------------
    def _before_call(self, module, args, kwargs):
        held = getattr(self.pipe, "scheduler", None)
        if held is not None and held is not self.scheduler:
            self._start_after_swap()
        elif not self.call.started:
            self.start_call()
        self._tap.clear()
        call = self.call
        call.current = self._locate(args, kwargs)
        if call.current is None:
            return None
        if self.spec is None:
            call.computing = True
            self._observation = Observation(self.denoiser).__enter__()
            return None
        call.computing = self.strategy.decide(call.plan, call)
        self.strategy.prepare(call, self._tap)
        self._set_layout(Layout.COMPUTE if call.computing else Layout.SKIP)
        return None

    def _start_after_swap(self) -> None:
        """The pipeline holds another scheduler than the one followed, so this pipeline call's `set_timesteps`
        went unseen: the first denoiser of the loop starts the call of every denoiser of the pipeline, on the new
        scheduler with its schedule as set. A gated model called first is called before the loop (LTX-2's
        text connectors): it only follows the new scheduler."""
        if self.config.gated:
            self.start_call()
            return
        for h in self.calls.members:
            h.start_call(scheduled=True)

    def _locate(self, args: tuple, kwargs: dict) -> Assignment | None:
        """Where this denoiser call is (step, branches), the call's plan and report at its first call; None
        when the call is not a denoiser call of the loop (a gated model called around it)."""
        call, gated = self.call, self.config.gated
        if gated and not call.in_loop:
            return None  # called before the denoising loop (a text connector): not as a denoiser
        x = next((v for v in (*args, *kwargs.values()) if torch.is_tensor(v) and v.is_floating_point()), None)
        call.batch, call.sig = (x.shape[0], tuple(x.shape)) if x is not None else (1, ())
        step, new = call.clock.locate(self.pipe, kwargs, (self._context,) if self._context else ())
        if gated and call.steps and step >= call.steps:
            return None  # called after the last step (a vocoder): not as a denoiser
        call.step = step
        if new:
            self.calls.restart((step, call.clock.position))
        a = self.strategy.assign(self.pipe, self._context, call.batch, self.calls.n)
        if call.plan is None:
            call.plan = self.strategy.plan(call.steps, begin=step)
            if call.plan.warning:
                warn(call.plan.warning, self.warnings)
        if call.report is None:
            call.report = CallReport(call.steps or 0)
            self.reports.append(call.report)
            self.strategy.opened(call.report)
        if call.plan.uncovered(step) and step not in call.report.uncovered:
            call.report.uncovered.append(step)  # computed: the curves say nothing about this step
        return a

    def _after_call(self, module, args, kwargs, output):
        call = self.call
        try:
            if self.spec is None and self._observation is not None:
                obs, self._observation = self._observation, None
                obs.__exit__(None, None, None)
                if output is not None:  # the call succeeded
                    self.spec = analyse(obs, self.denoiser_name, call.batch)
                    self.strategy.residual(call, observed_residual(obs, self.spec), self.spec)
        finally:
            self._set_layout(Layout.ORIGINAL)
            residual = self._tap.out
            self._tap.clear()
        self.strategy.output(call, output)
        if output is None or call.current is None:
            return None
        if residual is not None:
            self.strategy.residual(call, residual, self.spec)
        call.report.note(tuple(self.prefix + lb for lb in call.current.labels), call.step, call.computing)
        self.calls.n += 1
        return None

    def _set_layout(self, layout: Layout) -> None:
        if self.spec is None or layout is self.call.layout:
            return
        if not self._layouts:
            self._layouts = build_layouts(self.denoiser, self.spec, self._tap, self.strategy.forecasting)
        for path, ml in self._layouts[layout].items():
            set_submodule(self.denoiser, path, ml)
        self.call.layout = layout
