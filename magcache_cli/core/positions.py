"""Where a pipeline is in its schedule: the step position of each denoiser call.

A step is a position in the scheduler's full timestep schedule for the requested step count, not a count of
calls. Pipelines that run part of their schedule (img2img, inpainting, video-to-video with strength < 1,
`set_begin_index`) start mid-schedule; some call `step()` more than once per step (Cosmos steps twice and
rewinds `_step_index`); some copy the scheduler for another stream (LTX-2). The position is read, in order:

1. the scheduler's own index: `step_index` once it steps, else `begin_index` (set by img2img pipelines);
2. the timestep the pipeline is at (`pipe._current_timestep`, or the denoiser call's `timestep` argument)
   found in the full schedule that `set_timesteps` made, as is or divided by `num_train_timesteps`
   (schedulers without an index, e.g. DDIM; and the first call, before the scheduler has stepped);
3. a count: +1 when the scheduler stepped since the last call (however many times) or a branch label repeats.

Schedulers of order 2 (Heun, KDPM2) take two timestep entries per step; the position is index // order.
"""

from __future__ import annotations

import math
from numbers import Number

import torch


def _as_index(v) -> int | None:
    if torch.is_tensor(v) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, Number):
        return None
    return int(v) if float(v).is_integer() else None


def _as_time(v) -> float | None:
    if torch.is_tensor(v):
        return float(v.detach().flatten()[0].float()) if v.numel() else None
    if isinstance(v, Number) and not isinstance(v, bool):
        return float(v)
    return None


def _nearest(schedule: list[float], value: float, lower: int) -> int | None:
    """Index of `value` in `schedule[lower:]` (the first of equal entries): equal up to bf16 rounding, and
    clearly nearer to that entry than to any other distinct one. Anything else (a timestep the pipeline
    transformed, e.g. `1 - t / 1000`) finds nothing."""
    if lower >= len(schedule):
        return None
    dist = [abs(x - value) for x in schedule[lower:]]
    best = min(range(len(dist)), key=dist.__getitem__)
    others = [d for d, x in zip(dist, schedule[lower:]) if x != schedule[lower + best]]
    if dist[best] <= 4e-3 * abs(value) + 1e-6 and dist[best] < 0.5 * min(others, default=math.inf):
        return lower + best
    return None


class StepClock:
    """The step position of the denoiser calls of one pipeline call of `steps` steps (None: learn it from the
    schedule), read from `scheduler`. One clock per pipeline call."""

    def __init__(self, scheduler, steps: int | None = None):
        self.scheduler = scheduler
        self.steps = steps
        self.step = 0
        self._raw: int | None = None
        self._stepped = False
        self._labels: set[str] = set()
        self._located = False
        self._timesteps: list[float] | None = None
        self._scales: tuple[float, ...] = (1.0,)
        self.order = max(1, int(getattr(scheduler, "order", 1) or 1))

    def read_schedule(self) -> "StepClock":
        """Read the full schedule the scheduler's `set_timesteps` made (and its step count, when it says)."""
        s = self.scheduler
        ts = getattr(s, "timesteps", None)
        self.order = max(1, int(getattr(s, "order", 1) or 1))
        n = getattr(s, "num_inference_steps", None)
        if ts is not None and len(ts):
            self._timesteps = [float(t) for t in torch.as_tensor(ts).detach().flatten().float().cpu()]
            train = getattr(getattr(s, "config", None), "num_train_timesteps", None) or 1000
            self._scales = (1.0, float(train))
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                n = math.ceil(len(self._timesteps) / self.order)
        self.steps = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else self.steps
        return self

    @property
    def position(self) -> int | None:
        """The raw schedule index of the last located call (None when only counted): the sub-steps of an
        order-2 scheduler share a step but not a position."""
        return self._raw

    def stepped(self) -> None:
        """The scheduler's `step()` ran (once or more per step: only the next call's position counts)."""
        self._stepped = True

    def _scheduler_index(self) -> int | None:
        for name in ("step_index", "begin_index"):
            try:
                v = _as_index(getattr(self.scheduler, name, None))
            except Exception:  # a property of an unusual scheduler
                v = None
            if v is not None and v >= 0:
                return v
        return None

    def _matched_index(self, pipe, kwargs: dict) -> int | None:
        if not self._timesteps:
            return None
        lower = self._raw or 0
        for v in (getattr(pipe, "_current_timestep", None), kwargs.get("timestep")):
            t = _as_time(v)
            if t is None:
                continue
            found = {i for scale in self._scales
                     if (i := _nearest([x / scale for x in self._timesteps], t, lower)) is not None}
            if len(found) == 1:
                return found.pop()
            if found:  # both readings match, at different positions (PRX's 1.0 is t[0] / 1000 and t[-1]): no answer
                return None
        return None

    def locate(self, pipe, kwargs: dict, labels: tuple[str, ...]) -> tuple[int, bool]:
        """(position of this call, whether it starts a new step or sub-step: call order restarts)."""
        raw = self._scheduler_index()
        if raw is None:
            raw = self._matched_index(pipe, kwargs)
        new = not self._located
        if raw is not None:
            new = new or raw != self._raw
            self._raw, self.step = raw, raw // self.order
        elif self._located and (self._stepped or self._labels & set(labels)):
            self.step, new = self.step + 1, True
        self._located, self._stepped = True, False
        if new:
            self._labels.clear()
        self._labels.update(labels)
        return self.step, new
