"""Guider labels, the stream's batch axis read off observed shapes, per-branch rows, and skips that cannot
happen being reported instead of silently computed."""

from __future__ import annotations

import pytest
import torch

from magcache_cli.core.branches import context_label
from magcache_cli.core.proxies import branch_rows
from magcache_cli.core.rule import SkipSettings
from magcache_cli.core.stacks import batch_axis
from magcache_cli.runner.cache import MagCache
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.testing.helpers import load_tiny
from magcache_cli.testing.tiny import FAMILIES


@pytest.mark.parametrize("name,label", [("pred_cond", "cond"), ("pred_uncond", "uncond"),
                                        ("pred_cond_skip", "cond_skip"), ("pred_cond_seg", "cond_seg"),
                                        ("cond", "cond"), ("cond_uncond", "cond_uncond"), ("pred_", "pred_"),
                                        (None, None)])
def test_guider_pass_names_map_to_the_label_contract(name, label):
    assert context_label(name) == label


@pytest.mark.parametrize("shape,batch,axis", [
    ((2, 64, 32), 2, 0),       # [B, S, H]
    ((72, 2, 32), 2, 1),       # ERNIE-Image: [S, B, H], S = 64 image + 8 text tokens
    ((72, 1, 32), 1, 1),       # the same without guidance
    ((32, 4, 16), 2, 0),       # Latte temporal blocks: (B*N, F, C), batch-major
    ((8, 16, 16), 2, 0),       # per-frame (B*F, N, C)
    ((1, 4, 1, 128, 128), 1, 0),
])
def test_batch_axis(shape, batch, axis):
    assert batch_axis(shape, batch) == axis


def test_branch_rows_keep_each_samples_rows_together():
    x = torch.arange(2 * 3 * 4).reshape(2 * 3, 4)  # (B*N, C) with B=2, N=3: rows 0-2 sample 0, 3-5 sample 1
    assert branch_rows(x, slice(1, 2), 0, 2).tolist() == x[3:6].tolist()
    seq_first = torch.arange(5 * 2 * 3).reshape(5, 2, 3)  # [S, B, H]
    assert branch_rows(seq_first, slice(0, 1), 1, 2).tolist() == seq_first[:, :1].tolist()
    assert branch_rows(x, None, 0, 2) is x


def test_a_skip_without_a_fitting_residual_is_computed_and_reported(tiny_pipeline_dir):
    """flux-nocfg makes one call per step. Its recorded calls are replayed through the hooks with the batch
    doubled from step 2 on: the residual cached at batch 1 does not fit the first doubled call, which is
    computed although the schedule skips it, and the hooks say so instead of silently computing."""
    pipe = load_tiny(tiny_pipeline_dir("flux-nocfg"))
    steps = 6
    kw = {**FAMILIES["flux-nocfg"].call_kwargs, "num_inference_steps": steps, "output_type": "latent"}
    prof = calibrate(pipe, ["a cat"], [0], kw, model_id="flux-nocfg").profile
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, k: calls.append(dict(k)), with_kwargs=True)
    try:
        pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **kw)
    finally:
        handle.remove()
    assert len(calls) == steps

    def doubled(k):
        return {n: (v.repeat(2, *[1] * (v.dim() - 1)) if torch.is_tensor(v) and v.dim() >= 1 and n not in
                    ("img_ids", "txt_ids") else v) for n, v in k.items()}

    cache = MagCache(pipe, prof, SkipSettings(10.0, 2, 0.0), "joint", False)
    sched = pipe.scheduler
    with cache, torch.no_grad():  # the pipeline's loop, by hand: set_timesteps, then per step a call and step()
        sched.set_timesteps(steps, mu=1.0)
        h = cache.hooks
        for i, (k, t) in enumerate(zip(calls, sched.timesteps)):
            k = k if i < 2 else doubled(k)
            out = pipe.transformer(**k)[0]
            sched.step(out, t, k["hidden_states"])
        schedule = h.call.plan.schedule["main"]  # fixed at the run's first call
    # threshold 10, at most 2 skips in a row, no retention: compute, skip, skip, compute, skip, skip
    assert schedule == [True, False, False, True, False, False]
    # step 2 is the first call at batch 2: the residual cached at step 0 (batch 1) does not fit, so it computes
    # (and caches a batch-2 residual); steps 4 and 5 replay step 3's
    assert cache.report.skipped["main"] == [1, 4, 5]
    assert cache.report.computed["main"] == [0, 2, 3]
    assert h.skip_warnings() == ["transformer: 1 pass(es) scheduled to skip were computed: "
                                 "the call's input shape differs from the call that cached the residual"]


def test_a_branch_on_fewer_steps_joins_the_joint_decision_only_where_it_runs():
    """Flat curves (no error), at most 2 skips in a row, no retention, 6 steps; `b` runs on steps 2-4 only.
    step 0: nothing cached -> compute; 1: only `a` runs, cached -> skip; 2: `b` arrives with nothing cached ->
    both compute; 3, 4: skip; 5: `a` past 2 skips -> compute (`b` is gone)."""
    from magcache_cli.core.rule import SkipSettings, simulate

    flags = simulate({"a": [1.0] * 6, "b": [1.0] * 6}, 6, SkipSettings(0.1, 2, 0.0), "joint", {"b": (2, 5)})
    assert flags["a"] == [True, False, True, False, False, True]
    assert flags["b"] == [True, True, True, False, False, True]  # outside its steps: marked computed, never called
    assert simulate({"a": [1.0] * 6}, 6, SkipSettings(0.1, 2, 0.0)) == {"a": [True, False, False, True, False, False]}
