"""What both kinds of hooks share: installing on one denoiser of a pipeline, following the pipeline's steps and
calls, labelling each call with its guidance branches, and swapping the stack's block lists for one call.

Where things happen, chosen so that nothing runs inside the blocks (which users compile):

* a forward pre-hook on the denoiser (eager, outside any compiled block) labels the call with its branches,
  asks the subclass whether to compute, and swaps the stack's block lists for that call (`proxies.py`); a
  forward hook swaps them back, also when the call raises, and hands the residual to the subclass;
* ``set_timesteps`` on the scheduler marks the start of a pipeline call; each call's step is its position in
  the scheduler's full schedule (`positions.py`), so partial schedules (img2img strength), repeated ``step()``
  calls and copies of the scheduler all count each step once;
* under a whole-model ``torch.compile`` the hooks are `torch.compiler.disable`d and the one discovery call runs
  eagerly (see `compile.py`), so the forward pass is one graph per layout, computed or skipped.

`RecordingHooks` (recording.py) measures; `SkippingHooks` (skipping.py) skips. Removing either restores the
original modules and methods exactly.
"""

from __future__ import annotations

import copy
import functools
from contextlib import contextmanager

import torch
from torch import nn

from magcache_cli.core.branches import Assignment, context_label
from magcache_cli.core.positions import StepClock
from magcache_cli.core.proxies import Probe, Replay, Tap, residual_of
from magcache_cli.core.report import CallReport
from magcache_cli.core.stacks import (
    Observation,
    StackSpec,
    analyse,
    batch_axis,
    set_submodule,
    unwrap_compiled,
)

_MISSING = object()


class _Patched:
    """A wrapped method set on one instance. A deep copy of that instance gets the method it had before the
    hooks, never the wrapper: LTX-2 copies its scheduler for the audio stream with `copy.deepcopy` after the
    hooks are installed, and a copied wrapper would step (and count) the original scheduler a second time."""

    def __init__(self, owner, name: str, previous, wrapped):
        # name and docstring only: merging `wrapped.__dict__` (which `functools.wraps` filled from an earlier
        # hook's `_Patched`) would overwrite `_wrapped` and skip this wrapper when two hook sets share a scheduler
        functools.update_wrapper(self, wrapped, updated=())
        self._owner_id, self._name, self._previous, self._wrapped = id(owner), name, previous, wrapped

    def __call__(self, *args, **kwargs):
        return self._wrapped(*args, **kwargs)

    def __deepcopy__(self, memo):
        if self._previous is not _MISSING:
            return copy.deepcopy(self._previous, memo)
        twin = memo.get(self._owner_id)
        if twin is None:  # copied without its owner: nothing to rebind to
            return self
        return getattr(type(twin), self._name).__get__(twin)


class StepCalls:
    """The denoiser calls made so far at the current schedule position, shared by the hooks of every model of
    one pipeline: a second model that runs another pass of the same step (Ideogram 4's unconditional
    transformer) continues the first model's call order, so call order labels its branch as with one model."""

    def __init__(self) -> None:
        self.n = 0
        self.position: object = None

    def restart(self, position: object) -> None:
        """Call order restarts at a new position; a second model arriving at the same position continues it."""
        if position != self.position:
            self.position, self.n = position, 0


class StepState:
    """Where a pipeline call is: the step, the denoiser calls so far in it, their labels, the current call."""

    def __init__(self, calls: StepCalls | None = None) -> None:
        self.calls = calls or StepCalls()
        self.reset()

    @property
    def call_in_step(self) -> int:
        return self.calls.n

    @call_in_step.setter
    def call_in_step(self, n: int) -> None:
        self.calls.n = n

    def reset(self) -> None:
        self.step = 0
        self.calls.restart(None)
        self.call_in_step = 0
        self.current: Assignment | None = None
        self.computing = True

    def new_step(self, step: int, position: object = None) -> None:
        self.step = step
        self.calls.restart((step, position))


class StackHooks:
    """Hooks on one denoiser of a pipeline. Subclasses say how calls are labelled (`_assign`), whether a call
    computes (`_decide`), and what happens to a computed call's residual (`_on_residual`).

    Install with `install()` (idempotent) and undo with `remove()`, or use it as a context manager.
    """

    forecasting = False  # skipped calls replay a forecast (`Tap.delta`, `Tap.weight`), not only the residual

    def __init__(self, pipe, denoiser_name: str = "transformer", prefix: str = "",
                 calls: StepCalls | None = None, gated: bool = False):
        self.pipe = pipe
        self.denoiser_name = denoiser_name
        self.prefix = prefix  # added to branch labels in reports and records ("transformer_2.")
        # a model found among the pipeline's components (not its `transformer`) is a denoiser only for the calls
        # it gets inside the denoising loop (after set_timesteps, before the last step): not a vocoder or a
        # text connector called around it
        self.gated = gated
        self._in_loop = False
        self._batch, self._sig = 1, ()  # the current call's batch size and main input shape
        self.denoiser: nn.Module = unwrap_compiled(getattr(pipe, denoiser_name))
        self.scheduler = pipe.scheduler
        self.spec: StackSpec | None = None
        self.reports: list[CallReport] = []
        self.warnings: list[str] = []
        self.on_step = None  # optional callback(steps done) once per denoising step
        self.last_mode = "sequential"
        self.state = StepState(calls)
        self.clock = StepClock(self.scheduler)
        self._notified = 0
        self._tap = Tap()
        self._handles: list = []
        self._patched: list = []
        self._installed = False
        self._context: str | None = None
        self._layouts: dict[str, dict[str, nn.Module]] = {}
        self._observation: Observation | None = None
        self._steps: int | None = None
        self._report: CallReport | None = None
        self.reset()

    # ---- what subclasses decide --------------------------------------------------------------------------
    def _assign(self, batch: int) -> Assignment:
        raise NotImplementedError

    def _decide(self, a: Assignment, batch: int) -> bool:
        return True

    def _prepare(self, a: Assignment, computing: bool) -> None:
        """Called once the decision is made, before the block lists are swapped."""

    def _on_residual(self, residual: torch.Tensor) -> None:
        raise NotImplementedError

    def _reset_branches(self) -> None:
        """Forget per-branch state (caches, previous residuals)."""

    def _start_call(self) -> None:
        """A pipeline call starts (after `reset`)."""

    def _drop_call(self) -> None:
        """The last pipeline call never reached the denoiser: forget what was prepared for it."""

    def _default_steps(self) -> int | None:
        return None

    def _located(self, step: int) -> None:
        """The coming denoiser call is at schedule position `step` (before the decision)."""

    # ---- lifecycle -------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.state.step

    def reset(self, steps: int | None = None) -> None:
        """Forget per-call state (step, accumulators, residual caches); keeps the found stack."""
        self.state.reset()
        self._in_loop = False
        self._steps = steps or self._default_steps()
        self.clock.start(self._steps)
        self._notified = 0
        self._report = None
        self._reset_branches()

    def install(self) -> "StackHooks":
        if self._installed:
            return self
        from magcache_cli.core.compile import compiled_entry, gate_eager

        d = self.denoiser
        # Disabled for dynamo: under a whole-model compile the hooks run as plain Python, never as a graph
        # that would guard on (and recompile for) the step, the branch or the caches.
        self._handles = [
            d.register_forward_pre_hook(torch.compiler.disable(self._before_call), with_kwargs=True),
            d.register_forward_hook(torch.compiler.disable(self._after_call), with_kwargs=True, always_call=True),
        ]
        entry = compiled_entry(getattr(self.pipe, self.denoiser_name))
        if entry is not None:  # a whole-model compile: the discovery call runs eagerly
            owner, name, eager = entry
            self._patch(owner, name, lambda compiled: gate_eager(compiled, eager, lambda: self.spec is None))
        self._patch(self.scheduler, "step", self._wrap_step)
        self._patch(self.scheduler, "set_timesteps", self._wrap_set_timesteps)
        if hasattr(d, "cache_context"):
            self._patch(d, "cache_context", self._wrap_cache_context)
        self._installed = True
        return self

    def remove(self) -> None:
        if not self._installed:
            return
        for h in self._handles:
            h.remove()
        self._handles = []
        for obj, name, previous in reversed(self._patched):
            if previous is _MISSING:
                vars(obj).pop(name, None)
            else:
                setattr(obj, name, previous)
        self._patched = []
        self._restore_layout()
        self._installed = False
        self._reset_branches()
        self._tap.clear()

    def __enter__(self) -> "StackHooks":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _patch(self, obj, name: str, wrapper) -> None:
        """Wrap a bound method by an instance attribute; `remove` puts back exactly what was there."""
        previous = vars(obj).get(name, _MISSING)
        self._patched.append((obj, name, previous))
        setattr(obj, name, _Patched(obj, name, previous, wrapper(getattr(obj, name))))

    def _wrap_step(self, original):
        @functools.wraps(original)
        def step(*args, **kwargs):
            out = original(*args, **kwargs)
            self.clock.stepped()
            done = self.state.step + 1  # a second step() in the same denoising step reports nothing new
            if self.on_step is not None and self._report is not None and self._report.calls and done > self._notified:
                self._notified = done
                self.on_step(done)
            return out
        return step

    def _wrap_set_timesteps(self, original):
        @functools.wraps(original)
        def set_timesteps(*args, **kwargs):
            out = original(*args, **kwargs)
            self.clock.timesteps_set()
            self.begin_call(self.clock.steps)
            self.clock.timesteps_set()  # begin_call restarted the clock: keep the schedule just set
            self._in_loop = True
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

    def begin_call(self, steps: int | None = None) -> None:
        """Start a new pipeline call (the scheduler's `set_timesteps` calls this too)."""
        if self._report is not None and self._report.calls == 0:
            self.reports.pop()
            self._drop_call()
        self.reset(steps)
        self._start_call()
        self._report = CallReport(self._steps or 0)
        self.reports.append(self._report)

    # ---- per call ----------------------------------------------------------------------------------------
    def _before_call(self, module, args, kwargs):
        if self._report is None:
            self.begin_call()
        self._tap.clear()
        st = self.state
        if self.gated and not self._in_loop:
            st.current = None  # called before the denoising loop (a text connector): not as a denoiser
            return None
        x = next((v for v in (*args, *kwargs.values()) if torch.is_tensor(v) and v.is_floating_point()), None)
        batch = x.shape[0] if x is not None else 1
        self._batch, self._sig = batch, (tuple(x.shape) if x is not None else ())
        step, new = self.clock.locate(self.pipe, kwargs, (self._context,) if self._context else ())
        if self.gated and self._steps and step >= self._steps:
            st.current = None  # called after the last step (a vocoder): not as a denoiser
            return None
        if new:
            st.new_step(step, self.clock.position)
        a = self._assign(batch)
        self._located(step)
        st.current = a
        self.last_mode = a.mode
        if self.spec is None:
            st.computing = True
            self._observation = Observation(self.denoiser).__enter__()
            return None
        st.computing = self._decide(a, batch)
        self._prepare(a, st.computing)
        self._apply_layout("compute" if st.computing else "skip")
        return None

    def _after_call(self, module, args, kwargs, output):
        try:
            if self.spec is None and self._observation is not None:
                obs, self._observation = self._observation, None
                obs.__exit__(None, None, None)
                if output is not None:  # the call succeeded
                    self.spec = analyse(obs, self.denoiser_name)
                    self._residual_from_observation(obs)
        finally:
            self._restore_layout()
            residual = self._tap.out
            self._tap.clear()
        if residual is not None and output is not None:
            self._on_residual(residual)
        st = self.state
        if output is not None and st.current is not None:
            self._report.note(tuple(self.prefix + lb for lb in st.current.labels), st.step, st.computing)
            st.call_in_step += 1
        return None

    def _residual_from_observation(self, obs: Observation) -> None:
        spec = self.spec
        first, last = spec.segments[0], spec.segments[-1]
        head = next(c for c in obs.calls if c.path == first.path)
        tail = [c for c in obs.calls if c.path == last.path][-1]
        main = tail.outputs[0 if last.main_output is None else last.main_output]
        entry = head.inputs[first.main_input]
        spec.batch_axis = batch_axis(tuple(entry.shape), self._batch)
        self._on_residual(residual_of(main, entry, (spec.image_start, spec.image_tail), spec.token_axis))

    # ---- layouts -----------------------------------------------------------------------------------------
    def _build_layouts(self) -> None:
        spec, d = self.spec, self.denoiser
        originals = {s.path: d.get_submodule(s.path) for s in spec.segments}
        compute = {}
        for i, s in enumerate(spec.segments):
            blocks = list(originals[s.path])
            first, last = i == 0, i == len(spec.segments) - 1
            if first and last and len(blocks) == 1:
                blocks[0] = Probe(blocks[0], self._tap, spec, True, True)
            else:
                if first:
                    blocks[0] = Probe(blocks[0], self._tap, spec, True, False)
                if last:
                    blocks[-1] = Probe(blocks[-1], self._tap, spec, False, True)
            compute[s.path] = nn.ModuleList(blocks)
        skip = {s.path: nn.ModuleList() for s in spec.segments[:-1]}
        skip[spec.segments[-1].path] = nn.ModuleList([Replay(self._tap, spec, self.forecasting)])
        self._layouts = {"original": originals, "compute": compute, "skip": skip}

    def _apply_layout(self, name: str) -> None:
        if not self._layouts:
            self._build_layouts()
        for path, ml in self._layouts[name].items():
            set_submodule(self.denoiser, path, ml)

    def _restore_layout(self) -> None:
        if self._layouts:
            self._apply_layout("original")
