"""The hooks' call lifecycle on a fake pipeline, no diffusers model: where a pipeline call starts, which
positions its denoiser calls get, its window and uncovered positions, what survives between calls, the
forecast's history, and two denoisers sharing one call order.

The fake denoiser adds 1 to its input and runs two blocks that each double it, so with stack input
e = x + 1 its output is 4e and the stack's residual is 4e - e = 3e. The fake scheduler halves the sample at
every step whatever the prediction, so a run from x = 2 sees x = 2, 1, 0.5, 0.25, 0.125, 0.0625 and
e = 3, 2, 1.5, 1.25, 1.125, 1.0625: every expected number below is worked out from these by hand.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from magcache_cli.core.calls import StepCalls
from magcache_cli.core.recording import RecordingHooks
from magcache_cli.core.rule import RunPlan, SkipSettings
from magcache_cli.core.skipping import SkippingHooks

E = [3.0, 2.0, 1.5, 1.25, 1.125, 1.0625]  # stack input x + 1 at each step of a 6-step run from x = 2


class Double(nn.Module):
    def forward(self, hidden_states):
        return hidden_states * 2


class FakeDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Double(), Double()])

    def forward(self, hidden_states, timestep=None):
        x = hidden_states + 1
        for block in self.blocks:
            x = block(x)
        return x


class FakeScheduler:
    """The parts of a diffusers scheduler the hooks read: set_timesteps, step, step_index, begin_index."""

    order = 1

    def __init__(self):
        self.timesteps = torch.tensor([])
        self.num_inference_steps = None
        self.begin_index = None
        self._step_index = None

    @property
    def step_index(self):
        return self._step_index

    def set_timesteps(self, n):
        self.num_inference_steps = n
        self.timesteps = torch.linspace(1000, 0, n + 1)[:-1]
        self._step_index, self.begin_index = None, None

    def set_begin_index(self, begin):
        self.begin_index = begin

    def step(self, model_output, timestep, sample):
        if self._step_index is None:
            self._step_index = self.begin_index or 0
        self._step_index += 1
        return sample / 2


class FakePipe:
    """A denoising loop: set_timesteps (unless told not to), then per step one call per denoiser and step()."""

    def __init__(self, second: bool = False):
        self.transformer = FakeDenoiser()
        self.transformer_2 = FakeDenoiser() if second else None
        self.scheduler = FakeScheduler()

    def __call__(self, steps=6, begin=0, set_timesteps=True, around=False, copy_scheduler=False):
        x = torch.full((1, 2, 2), 2.0)
        if around:  # a model called before the loop (a text connector)
            self.transformer_2(hidden_states=x)
        if set_timesteps:
            self.scheduler.set_timesteps(steps)
        if begin:
            self.scheduler.set_begin_index(begin)
        twin = copy.deepcopy(self.scheduler) if copy_scheduler else None  # LTX-2 steps a copy for its audio
        if twin is not None:
            twin.set_timesteps(steps)
        outputs = []
        for t in self.scheduler.timesteps[begin:steps] if set_timesteps else range(steps):
            out = self.transformer(hidden_states=x, timestep=t)
            if self.transformer_2 is not None:
                self.transformer_2(hidden_states=x, timestep=t)
            outputs.append(float(out.flatten()[0]))
            if twin is not None:
                twin.step(out, t, x)
            x = self.scheduler.step(out, t, x)
        if around:  # and after it (a vocoder)
            self.transformer_2(hidden_states=x)
        return outputs


def plan(steps=6, threshold=1.0, k=2, retention=0.0, forecast=0.0, active=None):
    """Flat curves (ratio 1, so no error ever accumulates): after the first computed step, the rule skips
    K steps in a row, then computes: C S S C S S over 6 steps with K = 2 and no retention."""
    return RunPlan({"main": [1.0] * steps}, "none", SkipSettings(threshold, k, retention, forecast),
                   steps=steps, active=active)


def test_set_timesteps_starts_each_call_with_its_step_count():
    pipe = FakePipe()
    with RecordingHooks(pipe) as h:
        pipe(steps=4)
        pipe(steps=3)
    assert [r.steps for r in h.reports] == [4, 3]
    assert h.reports[0].computed == {"call0": [0, 1, 2, 3]} and h.reports[1].computed == {"call0": [0, 1, 2]}
    # ratio = ||r_t|| / ||r_t-1|| with r = 3e: e = 3, 2, 1.5, 1.25 -> 1 (first), 2/3, 0.75, 1.25/1.5
    ratios = [v[0] for v in h.strategy.records[0]["call0"].values()]
    assert ratios == pytest.approx([1.0, 2 / 3, 0.75, 1.25 / 1.5])
    assert list(h.strategy.records[1]["call0"]) == [0, 1, 2]  # the second call starts over at 0


def test_the_runner_starts_a_call_the_scheduler_does_not_announce():
    pipe = FakePipe()
    with RecordingHooks(pipe) as h:
        h.start_call(5)  # the runner knows the step count; this loop never calls set_timesteps
        pipe(steps=5, set_timesteps=False)
    assert len(h.reports) == 1 and h.reports[0].steps == 5
    assert h.reports[0].computed == {"call0": [0, 1, 2, 3, 4]}  # positions from the scheduler's step_index


def test_the_first_denoiser_call_starts_a_call_when_nothing_else_does():
    pipe = FakePipe()
    with RecordingHooks(pipe) as h:
        assert not h.call.started
        pipe(steps=3, set_timesteps=False)
    assert h.call.started and len(h.reports) == 1
    assert h.reports[0].steps == 0  # nobody said how many steps
    assert h.reports[0].computed == {"call0": [0, 1, 2]}


def test_a_call_started_twice_before_its_first_denoiser_call_has_one_report():
    pipe = FakePipe()
    with RecordingHooks(pipe) as h:
        h.start_call(6)  # the runner, then the pipeline's set_timesteps: one pipeline call
        pipe(steps=6)
    assert len(h.reports) == 1 and len(h.strategy.records) == 1 and h.reports[0].calls == 6


def test_a_scheduler_replaced_after_install_is_followed():
    pipe = FakePipe()
    old = pipe.scheduler
    hooks = SkippingHooks(pipe, "transformer", plan())
    with hooks:
        pipe.scheduler = FakeScheduler()  # `pipe.scheduler = X.from_config(pipe.scheduler.config)`
        assert "step" in vars(old) and "step" not in vars(pipe.scheduler)
        first = pipe()
        assert "step" in vars(pipe.scheduler)  # patched at the first denoiser call, its schedule read
        second = pipe()  # now its own set_timesteps starts the call
        old.step(torch.zeros(1), 0, torch.zeros(1))  # the old scheduler no longer moves the hooks' positions
    for r in hooks.reports:
        assert (r.steps, r.computed, r.skipped) == (6, {"main": [0, 3]}, {"main": [1, 2, 4, 5]})
    # computed: 4e; skipped: e + the residual 3e cached at the last computed step (step 0: 9, step 3: 3.75)
    expected = [12.0, 2 + 9, 1.5 + 9, 5.0, 1.125 + 3.75, 1.0625 + 3.75]
    assert first == pytest.approx(expected) and second == pytest.approx(expected)
    assert all(name not in vars(s) for s in (old, pipe.scheduler) for name in ("step", "set_timesteps"))


def test_a_deep_copied_scheduler_neither_starts_a_call_nor_counts_steps_again():
    pipe = FakePipe()
    done = []
    hooks = RecordingHooks(pipe)
    hooks.on_step = done.append
    with hooks:
        pipe(steps=4, copy_scheduler=True)
    assert done == [1, 2, 3, 4]
    assert len(hooks.reports) == 1  # the copy's set_timesteps started nothing
    assert hooks.reports[0].computed == {"call0": [0, 1, 2, 3]}


def test_window_and_uncovered_positions_of_a_run_that_begins_mid_schedule():
    """Curves that cover positions [0, 4) of 6; the run begins at 2 (img2img strength 2/3): the rule runs on
    [2, 4) as a run of its own (compute 2, skip 3); 4 and 5 are computed and reported as uncovered."""
    pipe = FakePipe()
    hooks = SkippingHooks(pipe, "transformer", plan(active=[0, 4]))
    with hooks:
        out = pipe(begin=2)
    r = hooks.reports[0]
    assert r.window == (2, 6) and r.uncovered == [4, 5]
    assert r.computed == {"main": [2, 4, 5]} and r.skipped == {"main": [3]}
    assert hooks.call.plan.begin == 2
    # the run's own sample starts at x = 2 (e = 3, 2, 1.5, 1.25 at positions 2-5): step 3 replays step 2's
    # residual 3 * 3 = 9 on its input 2
    assert out == pytest.approx([4 * 3, 2 + 9, 4 * 1.5, 4 * 1.25])


def test_nothing_of_a_call_survives_the_next_start():
    pipe = FakePipe()
    hooks = SkippingHooks(pipe, "transformer", plan())
    with hooks:
        pipe()
        assert hooks.held_bytes() == {"main": 16}  # the residual of step 3: 4 float32 values
        hooks.start_call(6)
        assert hooks.held_bytes() == {} and hooks.call.plan is None and hooks.call.report is None
        assert hooks.call.step == 0 and hooks.call.steps == 6
        out = pipe()
    assert out == pytest.approx([12.0, 11.0, 10.5, 5.0, 4.875, 4.8125])  # as the first call's
    assert len(hooks.reports) == 2


def test_the_forecast_extrapolates_from_the_last_two_computed_residuals_of_the_call():
    """A = 1, schedule C S S C S S. Steps 1, 2 have one computed residual (r_0 = 9): reuse. At step 3
    r_3 = 3.75 is computed, so delta = 3.75 - 9 = -5.25 and step t replays r_3 + (t - 3) / (3 - 0) * delta:
    step 4: 3.75 - 1.75 = 2, output 1.125 + 2; step 5: 3.75 - 3.5 = 0.25, output 1.0625 + 0.25."""
    pipe = FakePipe()
    hooks = SkippingHooks(pipe, "transformer", plan(forecast=1.0))
    with hooks:
        first, second = pipe(), pipe()
    expected = [12.0, 11.0, 10.5, 5.0, 3.125, 1.3125]
    assert first == pytest.approx(expected)
    assert second == pytest.approx(expected)  # the history starts over: step 1 reuses r_0 again


def test_two_denoisers_share_the_call_order_and_a_gated_one_counts_only_inside_the_loop():
    pipe = FakePipe(second=True)
    calls = StepCalls()
    first = RecordingHooks(pipe, "transformer", calls=calls)
    second = RecordingHooks(pipe, "transformer_2", calls=calls, gated=True)
    with first, second:
        pipe(steps=3, around=True)  # transformer_2 also runs once before and once after the loop
    # per step: transformer makes the step's first call, transformer_2 its second
    assert first.reports[0].computed == {"call0": [0, 1, 2]}
    assert second.reports[0].computed == {"call1": [0, 1, 2]}
    assert second.reports[0].calls == 3  # not the calls around the loop
    assert list(second.strategy.records[0]) == ["call1"]


def test_after_a_scheduler_swap_the_first_denoiser_of_the_loop_starts_the_call_of_both():
    """The gated model is called before the loop first (a connector): it must not take the swap for the loop's
    start; the first model's first loop call starts the call of both, so both count positions 0-2."""
    pipe = FakePipe(second=True)
    calls = StepCalls()
    first = RecordingHooks(pipe, "transformer", calls=calls)
    second = RecordingHooks(pipe, "transformer_2", calls=calls, gated=True)
    with first, second:
        pipe.scheduler = FakeScheduler()
        pipe(steps=3, around=True)
    assert first.reports[0].computed == {"call0": [0, 1, 2]} and first.reports[0].steps == 3
    assert second.reports[0].computed == {"call1": [0, 1, 2]} and second.reports[0].calls == 3
