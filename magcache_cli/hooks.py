"""The recording and skipping hooks, with per-branch state.

Where things happen, chosen so that nothing runs inside the blocks (which users compile):

* a forward pre-hook on the denoiser (eager, outside any compiled block) labels the call with its branches,
  decides compute or skip, and swaps the stack's block lists for that call; a forward hook swaps them back,
  also when the call raises;
* on a computed call, the first block of the stack is wrapped by a proxy that keeps a reference to the stack's
  input, and the last by one that subtracts it from the stack's output: one subtraction per call, nothing per
  block;
* on a skipped call, the block lists of the stack are replaced by a single `_Replay` module that returns the
  stack's input plus the branch's cached residual, in the last block's output structure;
* the scheduler's ``step`` marks step boundaries and ``set_timesteps`` the start of a pipeline call.
* under a whole-model ``torch.compile`` the forward pass (with these proxies in it) is one graph per layout,
  computed or skipped: the proxies exchange tensors with the hooks through one `_Tap` and hold only constants,
  the hooks are `torch.compiler.disable`d, and the one discovery call runs eagerly (see `compile.py`).

Removing the hooks restores the original modules and methods exactly.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from . import ratios
from .branches import Assignment, assign_observed, assign_profiled
from .errors import MagCacheError
from .stacks import Observation, StackSpec, analyse, bind_inputs, set_submodule, unwrap_compiled


_MISSING = object()


@dataclass
class RunPlan:
    """What `run` mode needs: the profile's curves and the skip settings."""

    curves: dict[str, list[float]]
    guidance_mode: str
    settings: ratios.SkipSettings
    policy: str = "joint"
    steps: int | None = None  # steps the curves were measured at
    active: list[int] | None = None  # [start, stop) calibration steps this denoiser runs; None: all

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.curves)

    def schedule(self, steps: int) -> tuple[dict[str, list[bool]], tuple[int, int]]:
        """Per-branch computed flags at `steps` steps, and the [start, stop) steps this denoiser runs.

        The skip rule applies inside that window; batched guidance is always joint (one pass serves both
        branches). `run` follows this schedule and `magcache schedule` prints it: one code path."""
        policy = "joint" if self.guidance_mode == "batched" else self.policy
        window = ratios.rescale_window(self.active, self.steps or steps, steps)
        return ratios.simulate_window(self.curves, steps, self.settings, policy, window), window


@dataclass
class CallReport:
    """What happened in one pipeline call: per branch the computed and skipped steps, and denoiser passes."""

    steps: int
    computed: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    calls: int = 0
    computed_calls: int = 0

    def note(self, labels: tuple[str, ...], step: int, computed: bool) -> None:
        self.calls += 1
        self.computed_calls += computed
        for label in labels:
            bucket = self.computed if computed else self.skipped
            bucket.setdefault(label, []).append(step)
            (self.skipped if computed else self.computed).setdefault(label, [])


class _Tap:
    """The only state the stack's proxies touch: the stack input, the residual out, the residual to replay.

    The hooks fill and empty it outside the forward pass; the proxies hold nothing else but constants, so a
    whole-model `torch.compile` traces them without guarding on per-step state (step, branch, caches).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.entry: torch.Tensor | None = None
        self.out: torch.Tensor | None = None  # residual of a computed call, read by the forward hook
        self.residual: torch.Tensor | None = None  # cached residual for a skipped call, set by the pre-hook


def _image_slice(total: int, n: int, image_start: int, image_tail: int) -> slice:
    if image_start == 0:
        return slice(0, n)
    end = total - image_tail
    return slice(end - n, end)


def _residual(main: torch.Tensor, entry: torch.Tensor, image: tuple[int, int]) -> torch.Tensor:
    """Stack output minus stack input, over the image tokens when the output is a joint sequence."""
    if main.shape[1] != entry.shape[1]:
        main = main[:, _image_slice(main.shape[1], entry.shape[1], *image)]
    return main - entry


class _Probe(nn.Module):
    """Wraps the first and/or last block of the stack on computed calls."""

    def __init__(self, block: nn.Module, tap: _Tap, spec: StackSpec, entry: bool, exit: bool):
        super().__init__()
        self.block = block
        self._tap, self._entry, self._exit = tap, entry, exit
        self._names, self._main_input = spec.param_names_first, spec.segments[0].main_input
        self._out_index = None if spec.out_single else spec.segments[-1].main_output
        self._image = (spec.image_start, spec.image_tail)

    def forward(self, *args, **kwargs):
        tap = self._tap
        if self._entry:
            tap.entry = bind_inputs(self._names, args, kwargs)[self._main_input]
        out = self.block(*args, **kwargs)
        if self._exit:
            main = out if self._out_index is None else out[self._out_index]
            tap.out, tap.entry = _residual(main, tap.entry, self._image), None
        return out


class _Replay(nn.Module):
    """Stands in for the whole stack on a skipped call: stack input + cached residual."""

    def __init__(self, tap: _Tap, spec: StackSpec):
        super().__init__()
        self._tap = tap
        self._names, self._main_input = spec.param_names_last, spec.segments[-1].main_input
        self._out_single, self._out_spec = spec.out_single, tuple(spec.out_spec)
        self._image = (spec.image_start, spec.image_tail)

    def forward(self, *args, **kwargs):
        bound = bind_inputs(self._names, args, kwargs)
        x = bound[self._main_input]
        r = self._tap.residual
        if x.shape == r.shape:
            main = x + r
        else:
            main = x.clone()
            main[:, _image_slice(x.shape[1], r.shape[1], *self._image)] += r
        if self._out_single:
            return main
        return tuple(main if k == "@main" else None if k is None else bound.get(k) for k in self._out_spec)


class MagCacheHooks:
    """Per-branch MagCache state for one denoiser of a pipeline: `calibrate` records, `run` skips.

    Install with `install()` (idempotent) and undo with `remove()`, or use it as a context manager.
    """

    def __init__(self, pipe, denoiser_name: str = "transformer", mode: str = "calibrate",
                 plan: RunPlan | None = None, expected_batch: int | None = None, prefix: str = ""):
        if mode not in ("calibrate", "run"):
            raise ValueError(f"mode must be 'calibrate' or 'run', got {mode!r}")
        if mode == "run" and plan is None:
            raise ValueError("run mode needs a RunPlan")
        self.pipe = pipe
        self.denoiser_name = denoiser_name
        self.prefix = prefix  # added to branch labels in reports and records ("transformer_2.")
        self.denoiser: nn.Module = unwrap_compiled(getattr(pipe, denoiser_name))
        self._tap = _Tap()
        self.scheduler = pipe.scheduler
        self.mode, self.plan, self._expected_batch = mode, plan, expected_batch
        self.spec: StackSpec | None = None
        self.reports: list[CallReport] = []
        self.records: list[dict[str, dict[int, tuple[float, float, float]]]] = []
        self.warnings: list[str] = []
        self.on_step = None  # optional callback(step_index) after each scheduler step
        self._handles: list = []
        self._patched: list = []
        self._installed = False
        self._context: str | None = None
        self._layouts: dict[str, dict[str, nn.Module]] = {}
        self.last_mode = "sequential"
        self.reset()

    # ---- lifecycle -------------------------------------------------------------------------------------
    def reset(self, steps: int | None = None) -> None:
        """Forget per-call state (accumulators, residual caches, step counter); keeps the found stack."""
        self.step = 0
        self._call_in_step = 0
        self._labels_in_step: set[str] = set()
        self._cache: dict[str, torch.Tensor] = {}
        self._prev: dict[str, torch.Tensor] = {}
        self._current: Assignment | None = None
        self._computing = True
        self._steps = steps or (self.plan.steps if self.plan else None)
        self._schedule: dict[str, list[bool]] | None = None
        self._report: CallReport | None = None

    def install(self) -> "MagCacheHooks":
        if self._installed:
            return self
        from .compile import compiled_entry, gate_eager

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
        self._cache.clear()
        self._prev.clear()
        self._tap.clear()

    def __enter__(self) -> "MagCacheHooks":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _patch(self, obj, name: str, wrapper) -> None:
        """Wrap a bound method by an instance attribute; `remove` puts back exactly what was there."""
        self._patched.append((obj, name, vars(obj).get(name, _MISSING)))
        setattr(obj, name, wrapper(getattr(obj, name)))

    def _wrap_step(self, original):
        @functools.wraps(original)
        def step(*args, **kwargs):
            out = original(*args, **kwargs)
            self.step += 1
            self._call_in_step = 0
            self._labels_in_step.clear()
            if self.on_step is not None:
                self.on_step(self.step)
            return out
        return step

    def _wrap_set_timesteps(self, original):
        @functools.wraps(original)
        def set_timesteps(*args, **kwargs):
            out = original(*args, **kwargs)
            steps = len(self.scheduler.timesteps) // max(1, int(getattr(self.scheduler, "order", 1) or 1))
            self.begin_call(steps)
            return out
        return set_timesteps

    def _wrap_cache_context(self, original):
        @functools.wraps(original)
        @contextmanager
        def cache_context(name, *args, **kwargs):
            previous, self._context = self._context, name
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
            if self.mode == "calibrate":
                self.records.pop()
        self.reset(steps)
        if self.mode == "run":
            self._plan_schedule()
        self._report = CallReport(self._steps or 0)
        self.reports.append(self._report)
        if self.mode == "calibrate":
            self.records.append({})

    def _plan_schedule(self) -> None:
        plan = self.plan
        steps = self._steps or plan.steps
        if plan.steps and steps != plan.steps:
            msg = f"calibration.steps: profile measured at {plan.steps} steps, running {steps} (curves resampled)"
            if msg not in self.warnings:
                self.warnings.append(msg)
        self._schedule, _ = plan.schedule(steps)

    # ---- per call ----------------------------------------------------------------------------------------
    def _before_call(self, module, args, kwargs):
        if self._report is None:
            self.begin_call()
        self._tap.clear()
        x = next((v for v in (*args, *kwargs.values()) if torch.is_tensor(v) and v.is_floating_point()), None)
        batch = x.shape[0] if x is not None else 1
        a = self._assign(batch)
        if self._labels_in_step & set(a.labels):  # the scheduler did not mark the step: a label repeats
            self.step += 1
            self._call_in_step = 0
            self._labels_in_step.clear()
        self._labels_in_step.update(a.labels)
        self._current = a
        self.last_mode = a.mode
        if self.spec is None:
            self._computing = True
            self._observation = Observation(self.denoiser).__enter__()
            return None
        self._computing = self._decide(a, batch)
        if not self._computing:
            self._tap.residual = self._cache[a.key]
        elif self.mode == "run":  # replaced at the end of this call: never hold two residuals of one branch
            self._cache.pop(a.key, None)
        self._apply_layout("compute" if self._computing else "skip")
        return None

    def _assign(self, batch: int) -> Assignment:
        if self.mode == "run":
            return assign_profiled(self._context, batch, self._call_in_step, self.plan.guidance_mode,
                                   self.plan.labels)
        # batched guidance doubles the batch the caller asked for; without that number, trust the pipeline's flag
        if self._expected_batch:
            batched = batch == 2 * self._expected_batch
        else:
            flagged = bool(getattr(self.pipe, "do_classifier_free_guidance", False)) and not self._context
            batched = batch % 2 == 0 and (flagged or self._context == "cond_uncond")
        return assign_observed(self._context, batch, self._call_in_step, batched)

    def _decide(self, a: Assignment, batch: int) -> bool:
        if self.mode == "calibrate":
            return True
        cached = self._cache.get(a.key)
        if cached is None or cached.shape[0] != batch:
            return True
        sched = self._schedule
        if self.step >= len(next(iter(sched.values()))):
            return True
        return any(sched[label][self.step] for label in a.labels)

    def _after_call(self, module, args, kwargs, output):
        try:
            if self.spec is None and getattr(self, "_observation", None) is not None:
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
        if output is not None and self._current is not None:
            self._report.note(tuple(self.prefix + lb for lb in self._current.labels), self.step, self._computing)
            self._call_in_step += 1
        return None

    def _residual_from_observation(self, obs: Observation) -> None:
        spec = self.spec
        first, last = spec.segments[0], spec.segments[-1]
        head = next(c for c in obs.calls if c.path == first.path)
        tail = [c for c in obs.calls if c.path == last.path][-1]
        main = tail.outputs[0 if last.main_output is None else last.main_output]
        self._on_residual(_residual(main, head.inputs[first.main_input], (spec.image_start, spec.image_tail)))

    def _on_residual(self, residual: torch.Tensor) -> None:
        a = self._current
        if self.mode == "run":
            self._cache[a.key] = residual
            return
        record = self.records[-1]
        for label, rows in zip(a.labels, a.rows):
            r = residual if rows is None else residual[rows]
            prev = self._prev.get(label)
            if prev is None or prev.shape != r.shape:
                stats = (1.0, 0.0, 0.0)
            else:
                stats = ratios.residual_stats(prev, r)
            record.setdefault(self.prefix + label, {})[self.step] = stats
            self._prev[label] = r

    # ---- layouts -----------------------------------------------------------------------------------------
    def _build_layouts(self) -> None:
        spec, d = self.spec, self.denoiser
        originals = {s.path: d.get_submodule(s.path) for s in spec.segments}
        compute = {}
        for i, s in enumerate(spec.segments):
            blocks = list(originals[s.path])
            first, last = i == 0, i == len(spec.segments) - 1
            if first and last and len(blocks) == 1:
                blocks[0] = _Probe(blocks[0], self._tap, spec, True, True)
            else:
                if first:
                    blocks[0] = _Probe(blocks[0], self._tap, spec, True, False)
                if last:
                    blocks[-1] = _Probe(blocks[-1], self._tap, spec, False, True)
            compute[s.path] = nn.ModuleList(blocks)
        skip = {s.path: nn.ModuleList() for s in spec.segments[:-1]}
        skip[spec.segments[-1].path] = nn.ModuleList([_Replay(self._tap, spec)])
        self._layouts = {"original": originals, "compute": compute, "skip": skip}

    def _apply_layout(self, name: str) -> None:
        if not self._layouts:
            self._build_layouts()
        for path, ml in self._layouts[name].items():
            set_submodule(self.denoiser, path, ml)

    def _restore_layout(self) -> None:
        if self._layouts:
            self._apply_layout("original")

    # ---- results -----------------------------------------------------------------------------------------
    def curves(self) -> dict[str, dict]:
        """Calibration result per branch (provisional labels): ratios, ratio_std, cos_dist, run_std, and
        `active` = [start, stop) when the denoiser ran on part of the steps only (two-expert pipelines)."""
        if self.mode != "calibrate":
            raise MagCacheError("curves() is only available after calibration")
        measured = [step for rec in self.records for r in rec.values() for step in r]
        steps = max([r.steps for r in self.reports if r.calls] + [max(measured, default=-1) + 1])
        labels = list(dict.fromkeys(label for rec in self.records for label in rec))
        out: dict[str, dict] = {}
        for label in labels:
            runs = [rec[label] for rec in self.records if label in rec]
            seen = sorted({step for run in runs for step in run})
            start, stop = seen[0], seen[-1] + 1
            cols: dict = {"ratios": [], "ratio_std": [], "cos_dist": [], "run_std": []}
            for step in range(steps):
                vals = [run[step] for run in runs if step in run]
                if not vals and start <= step < stop:
                    raise MagCacheError(f"branch {label} has no measurement at step {step}",
                                        hint="the pipeline skipped this branch on some steps; calibrate with a fixed guidance setup")
                vals = vals or [(1.0, 0.0, 0.0)]  # outside the denoiser's window: placeholders
                r = torch.tensor([v[0] for v in vals], dtype=torch.float64)
                cols["ratios"].append(1.0 if step == start else float(r.mean()))
                cols["run_std"].append(float(r.std(unbiased=False)) if len(vals) > 1 else 0.0)
                cols["ratio_std"].append(sum(v[1] for v in vals) / len(vals))
                cols["cos_dist"].append(sum(v[2] for v in vals) / len(vals))
            if (start, stop) != (0, steps):
                cols["active"] = [start, stop]
            out[label] = cols
        return out
