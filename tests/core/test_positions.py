"""Step positions read from real diffusers schedulers, driven as pipelines drive them (no model)."""

from __future__ import annotations

import torch
from diffusers import (
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
)

from magcache_cli.core.positions import StepClock


def drive(scheduler, timesteps, timestep_of=lambda t: t.reshape(1)) -> list[int]:
    """The position each denoiser call is located at, over `timesteps` (a slice of the full schedule)."""
    clock = StepClock(scheduler).read_schedule()
    sample = torch.zeros(1, 4)
    out = []
    for t in timesteps:
        out.append(clock.locate(None, {"timestep": timestep_of(t)}, ())[0])
        sample = scheduler.step(torch.zeros(1, 4), t, sample).prev_sample
        clock.stepped()
    return out


def test_an_order_2_scheduler_takes_two_calls_per_step():
    s = FlowMatchHeunDiscreteScheduler()
    s.set_timesteps(4)
    assert len(s.timesteps) == 7  # t0, then t1..t3 twice (predictor, corrector)
    assert drive(s, s.timesteps) == [0, 0, 1, 1, 2, 2, 3]


def test_a_scheduler_without_an_index_is_located_by_its_timestep_mid_schedule():
    s = DDIMScheduler()
    s.set_timesteps(10)
    assert not hasattr(s, "step_index")
    assert drive(s, s.timesteps[4:]) == [4, 5, 6, 7, 8, 9]  # an img2img run at strength 0.6


def test_a_bf16_timestep_scaled_like_flux_finds_its_position_before_the_first_step():
    s = FlowMatchEulerDiscreteScheduler(shift=3.0)
    s.set_timesteps(28)
    bf16 = lambda t: (t / 1000).to(torch.bfloat16).reshape(1)  # noqa: E731 - Flux passes t / 1000
    assert drive(s, s.timesteps[11:], bf16) == list(range(11, 28))  # no set_begin_index (Wan video-to-video)
