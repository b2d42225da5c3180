"""More DiT families of diffusers 0.42.1 (issue 13), each checked against references that never call
magcache's own math or hooks.

Per family, written down by hand from the diffusers source: the models that denoise (Ideogram 4 runs its
unconditional pass on a second model), the block lists where the cached stack starts and ends, the stream's
layout (ERNIE-Image's blocks are sequence-first [S, B, H]; Latte's temporal blocks see (B*N, F, C) rows), and
how guidance is run. The checks: the profile's labels follow the contract (`cond` / `uncond`, `main`), its
ratios equal those taken with plain forward hooks, threshold 0 is byte-identical to no cache, and the skipped
steps equal the rule simulated independently on the profile's curves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magcache_cli.core.rule import SkipSettings
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.runner.run import run
from magcache_cli.testing.helpers import media
from magcache_cli.testing.tiny import FAMILIES

pytestmark = pytest.mark.slow  # every guider, second-model and odd-layout family, end to end

# family -> (models in call order, entry list, exit list, exit output index, layout, batch axis, steps)
# layout: "seq" = one call per branch and step, cond first (across models for Ideogram 4); "batch" = one call,
# rows [uncond | cond] along the batch axis; "none" = one call per step.
REFERENCE = {
    "kandinsky5-t2i": (("transformer",), "visual_transformer_blocks", "visual_transformer_blocks", None, "seq", 0, 4),
    "hunyuanimage": (("transformer",), "transformer_blocks", "single_transformer_blocks", 0, "seq", 0, 6),
    "hunyuanvideo15": (("transformer",), "transformer_blocks", "transformer_blocks", 0, "seq", 0, 4),
    "ernie-image": (("transformer",), "layers", "layers", None, "batch", 1, 6),
    "latte": (("transformer",), "temporal_transformer_blocks", "temporal_transformer_blocks", None, "batch", 0, 6),
    "sana-sprint": (("transformer",), "transformer_blocks", "transformer_blocks", None, "none", 0, 6),
    "ideogram4": (("transformer", "unconditional_transformer"), "layers", "layers", None, "seq", 0, 6),
    "allegro": (("transformer",), "transformer_blocks", "transformer_blocks", None, "batch", 0, 6),
}
LABELS = {"seq": ("cond", "uncond"), "batch": ("uncond", "cond"), "none": ("main",)}
MODES = {"seq": "sequential", "batch": "batched", "none": "none"}


# Kandinsky 5 decodes at its fixed 1024x1024 through an 8x VAE, which costs more than the tiny transformer:
# its latents are compared (outputs by field type are tested in tests/runner/test_outputs.py)
OUTPUT_TYPE = {"kandinsky5-t2i": "latent"}


def kwargs(family, steps):
    return {**FAMILIES[family].call_kwargs, "num_inference_steps": steps,
            "output_type": OUTPUT_TYPE.get(family, "np")}


def reference_run(pipe, family, prompt, seed):
    """Run the pipeline with plain hooks around the expected stack; returns (output, ratios per branch)."""
    models, entry, exit_, out_idx, layout, axis, steps = REFERENCE[family]
    residuals, handles = [], []
    for name in models:
        model, state = getattr(pipe, name), {}
        # Latte: from the first temporal block's input to the last one's output, both (B*N, F, C); the spatial
        # blocks between them (all but the first) are inside the cached span
        first, last = getattr(model, entry)[0], getattr(model, exit_)[-1]

        def pre(module, args, kw, state=state):
            state["x"] = args[0] if args else next(iter(kw.values()))

        def post(module, args, kw, out, state=state):
            y = out if out_idx is None else out[out_idx]
            residuals.append((y - state["x"]).double())

        handles += [first.register_forward_pre_hook(pre, with_kwargs=True),
                    last.register_forward_hook(post, with_kwargs=True)]
    try:
        out = pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **kwargs(family, steps))
    finally:
        for h in handles:
            h.remove()
    per_branch: dict[str, list[torch.Tensor]] = {}
    for i, r in enumerate(residuals):
        if layout == "batch":
            half = r.shape[axis] // 2
            per_branch.setdefault("uncond", []).append(r.narrow(axis, 0, half))
            per_branch.setdefault("cond", []).append(r.narrow(axis, half, half))
        else:
            per_branch.setdefault(LABELS[layout][i % len(LABELS[layout])], []).append(r)
    curves = {}
    for label, rs in per_branch.items():
        curves[label] = [1.0] + [float((cur.norm(dim=-1) / prev.norm(dim=-1)).mean()) for prev, cur in zip(rs, rs[1:])]
    return out, curves


def reference_schedule(curves, steps, thr, k, retention):
    """DESIGN.md's rule with the joint policy, written out independently. True = computed."""
    keep = int(retention * steps + 0.5)
    acc = {lb: [1.0, 0.0, 0] for lb in curves}
    cached, out = set(), {lb: [] for lb in curves}
    for i in range(steps):
        may = {}
        for lb in curves:
            if i < keep:
                may[lb] = False
                continue
            a = acc[lb]
            a[0] *= curves[lb][i]
            a[2] += 1
            a[1] += abs(1 - a[0])
            may[lb] = a[1] <= thr and a[2] <= k and lb in cached
        skip = all(may.values())
        for lb in curves:
            out[lb].append(not skip)
            if not skip:
                acc[lb] = [1.0, 0.0, 0]
                cached.add(lb)
    return out


@pytest.mark.parametrize("family", list(REFERENCE))
def test_family(load, threshold_zero_check, family):
    models, entry, exit_, _, layout, _, steps = REFERENCE[family]
    pipe = load(family)
    kw = kwargs(family, steps)
    prof = calibrate(pipe, ["a cat"], [0], kw, model_id=family).profile
    assert list(prof.branches) == list(LABELS[layout])
    assert prof.calibration.guidance_mode == MODES[layout]
    assert prof.model.stack[0] == entry and prof.model.stack[-1].rpartition(".")[2] == exit_
    assert len(prof.model.stack) == (2 if family == "hunyuanimage" else len(models))

    plain, expected = reference_run(pipe, family, "a cat", 0)
    for label, curve in expected.items():
        b = prof.branches[label]
        assert b.ratios[:steps] == pytest.approx(curve, abs=1e-5), label
        # SCMScheduler (sana-sprint) keeps one timestep more than it steps: a placeholder past the window
        assert len(b.ratios) == steps or (b.active == [0, steps] and b.ratios[steps:] == [1.0]), label

    exact, _ = threshold_zero_check(pipe, prof, kw, plain=media(plain), max_skip_steps=3, retention_ratio=0.2)
    assert exact.transformer_calls == exact.total_calls == steps * (1 if layout != "seq" else 2)

    thr, k, ret = 0.3, 2, 0.2
    cached = run(pipe, ["a cat"], [1], kw, profile=prof, settings=SkipSettings(thr, k, ret))
    schedule = reference_schedule({lb: b.ratios for lb, b in prof.branches.items()}, steps, thr, k, ret)
    for label, computed in schedule.items():
        assert cached.schedule[label]["skipped"] == [i for i, c in enumerate(computed) if not c], label
    skipped = sum(not c for c in next(iter(schedule.values())))
    assert skipped > 0, "the test should exercise skipping"
    assert cached.transformer_calls == exact.total_calls - skipped * len(LABELS[layout]) // (2 if layout == "batch" else 1)
    assert not [w for w in cached.warnings if "scheduled to skip" in w]
    assert np.isfinite(media(cached.outputs[0])).all()


def test_a_guider_with_a_third_pass_gets_its_own_label_curve_and_window(load, threshold_zero_check):
    """Skip-layer guidance adds a `pred_cond_skip` pass on steps start < i < stop of the schedule: it is the
    branch `cond_skip`, with its own ratios (equal to plain hooks on its passes) and its own window."""
    from diffusers import SkipLayerGuidance
    from diffusers.hooks import LayerSkipConfig

    pipe = load("hunyuanimage")
    pipe.guider = SkipLayerGuidance(guidance_scale=3.5, skip_layer_guidance_scale=2.8, skip_layer_guidance_start=0.2,
                                    skip_layer_guidance_stop=0.8,
                                    skip_layer_config=LayerSkipConfig(indices=[0], fqn="transformer_blocks"))
    steps = 8
    kw = kwargs("hunyuanimage", steps)
    prof = calibrate(pipe, ["a cat"], [0], kw, model_id="hunyuanimage-slg").profile
    assert list(prof.branches) == ["cond", "uncond", "cond_skip"]
    window = [int(0.2 * steps) + 1, int(0.8 * steps)]  # the guider's rule: start < step < stop
    assert prof.branches["cond_skip"].active == window and prof.branches["cond"].active is None

    # reference: plain hooks on the stack's first and last block, each pass labelled by its guider name
    t, names, residuals, state = pipe.transformer, [], [], {}
    original = t.cache_context

    def naming(name, *a, **k):
        names.append(name)
        return original(name, *a, **k)

    t.cache_context = naming
    handles = [t.transformer_blocks[0].register_forward_pre_hook(lambda m, a, k: state.update(x=a[0] if a else k["hidden_states"]), with_kwargs=True),
               t.single_transformer_blocks[-1].register_forward_hook(lambda m, a, k, o: residuals.append((o[0] - state["x"]).double()), with_kwargs=True)]
    try:
        plain = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **kw)
    finally:
        del t.cache_context
        for h in handles:
            h.remove()
    per: dict[str, list[torch.Tensor]] = {}
    for name, r in zip(names, residuals):
        per.setdefault(name.removeprefix("pred_"), []).append(r)
    assert {k: len(v) for k, v in per.items()} == {"cond": steps, "uncond": steps, "cond_skip": window[1] - window[0]}
    for label, rs in per.items():
        curve = [1.0] + [float((b.norm(dim=-1) / a.norm(dim=-1)).mean()) for a, b in zip(rs, rs[1:])]
        got = prof.branches[label].ratios
        got = got[window[0]:window[1]] if label == "cond_skip" else got
        assert got == pytest.approx(curve, abs=1e-5), label

    exact, _ = threshold_zero_check(pipe, prof, kw, plain=media(plain), max_skip_steps=2, retention_ratio=0.2)
    assert exact.total_calls == exact.transformer_calls == 2 * steps + window[1] - window[0]

    # skipping: `cond_skip` takes part in the joint decision on its own steps only, and its first step there
    # computes (nothing cached yet), so no pass scheduled to skip ever lacks a residual
    cached = run(pipe, ["a cat"], [0], kw, profile=prof, settings=SkipSettings(10.0, 2, 0.2))
    sched = cached.schedule
    assert sched["cond"] == sched["uncond"] and sched["cond"]["skipped"]
    assert sorted(sched["cond_skip"]["computed"] + sched["cond_skip"]["skipped"]) == list(range(*window))
    assert window[0] in sched["cond_skip"]["computed"] and window[0] in sched["cond"]["computed"]
    assert set(sched["cond_skip"]["skipped"]) <= set(sched["cond"]["skipped"])
    assert not [w for w in cached.warnings if "scheduled to skip" in w]
