"""What one pipeline call accumulates, in one place: `CallState` (reset at every call start), the `CallPlan` a
strategy returns at the call's first denoiser call, and `StepCalls`, the call order shared by every denoiser of
one pipeline.

A call starts through `StackHooks.start_call` only (core/hooks.py), from whichever of these the pipeline reveals
first: the runner before `pipe(...)`, the scheduler's `set_timesteps`, a scheduler that replaced the patched one,
or the first denoiser call when nothing else said so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from magcache_cli.core.branches import Assignment
from magcache_cli.core.positions import StepClock
from magcache_cli.core.proxies import Layout
from magcache_cli.core.report import CallReport


class StepCalls:
    """The denoiser calls made so far at the current schedule position, shared by the hooks of every model of
    one pipeline (`members`): a second model that runs another pass of the same step (Ideogram 4's
    unconditional transformer) continues the first model's call order, so call order labels its branch as with
    one model."""

    def __init__(self) -> None:
        self.n = 0
        self.position: object = None
        self.members: list = []  # the hooks sharing it, in the pipeline's denoiser order

    def restart(self, position: object) -> None:
        """Call order restarts at a new position; a second model arriving at the same position continues it."""
        if position != self.position:
            self.position, self.n = position, 0


@dataclass(frozen=True)
class CallPlan:
    """What a pipeline call computes, fixed at its first denoiser call (position `begin`).

    `schedule` holds per-branch computed flags by position (None: every call computes); `covered` the
    [start, stop) positions the profile's curves cover (None: all), the others are computed and reported as
    uncovered; `warning` a line about the plan (curves resampled to another step count)."""

    steps: int | None
    begin: int
    schedule: Mapping[str, Sequence[bool]] | None = None
    covered: tuple[int, int] | None = None
    warning: str | None = None

    def computes(self, step: int, labels: Sequence[str]) -> bool:
        """Whether the schedule computes any of `labels` at `step` (steps past its end compute)."""
        if self.schedule is None:
            return True
        if step >= len(next(iter(self.schedule.values()))):
            return True
        return any(self.schedule[label][step] for label in labels)

    def uncovered(self, step: int) -> bool:
        return self.covered is not None and not self.covered[0] <= step < self.covered[1]


@dataclass
class CallState:
    """Everything one pipeline call accumulates. `reset(...)` starts the next call with the fields given and
    every other field at its default: nothing of the previous call survives."""

    started: bool = False  # a call was started (at least once since the hooks were made)
    steps: int | None = None  # the call's step count (the scheduler's, the runner's, or the profile's)
    clock: StepClock | None = None  # the position of each denoiser call in the scheduler's schedule
    in_loop: bool = False  # the scheduler's schedule was set: denoiser calls now are the denoising loop's
    plan: CallPlan | None = None  # fixed at the first denoiser call
    report: CallReport | None = None  # opened at the first denoiser call that counts
    step: int = 0  # position of the current denoiser call
    batch: int = 1  # the current denoiser call's batch size
    sig: tuple[int, ...] = ()  # the current denoiser call's main input shape
    current: Assignment | None = None  # branches of the current denoiser call; None: not a denoiser call
    computing: bool = True  # the current denoiser call runs the stack
    layout: Layout = Layout.ORIGINAL  # the block lists in place now
    notified: int = 0  # steps reported to `on_step` so far

    def reset(self, **fields) -> None:
        fresh = CallState(**fields)
        self.__dict__.update(fresh.__dict__)
