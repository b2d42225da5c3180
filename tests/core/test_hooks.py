"""Core behaviour on real diffusers pipelines (tiny, offline), checked against independent references.

The references here never call magcache's own math or hooks: the expected stack of each family is written
down by hand from the diffusers source, residuals are taken with plain torch forward hooks, and the skip
rule is re-implemented in a dozen lines from DESIGN.md.
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

STEPS = 6

# family -> (entry block list, main-input name, exit block list, output index or None, guidance layout)
# layout: "seq" = two calls per step, cond first; "batch" = one call, rows [uncond | cond]; "none" = one call.
REFERENCE = {
    "flux": ("transformer_blocks", "hidden_states", "single_transformer_blocks", 1, "seq"),
    "sd3": ("transformer_blocks", "hidden_states", "transformer_blocks", 1, "batch"),
    "wan": ("blocks", "hidden_states", "blocks", None, "seq"),
    "qwenimage": ("transformer_blocks", "hidden_states", "transformer_blocks", 1, "seq"),
    "cogvideox": ("transformer_blocks", "hidden_states", "transformer_blocks", 0, "batch"),
    "hunyuanvideo": ("transformer_blocks", "hidden_states", "single_transformer_blocks", 0, "none"),
    "chroma": ("transformer_blocks", "hidden_states", "single_transformer_blocks", None, "seq"),
    "lumina2": ("noise_refiner", "hidden_states", "layers", None, "seq"),  # caption first, image last
}
LABELS = {"seq": ("cond", "uncond"), "batch": ("uncond", "cond"), "none": ("main",)}


def call_kwargs(family, steps=STEPS, **extra):
    return {**FAMILIES[family].call_kwargs, "num_inference_steps": steps, "output_type": "np", **extra}


def images(result_outputs):
    return media(result_outputs[0])


def reference_ratios(pipe, family, prompt="a cat", seed=0):
    """Plain forward hooks around the expected stack; ratio = mean_tokens ||r_t|| / ||r_t-1|| per branch."""
    entry_list, entry_name, exit_list, out_idx, layout = REFERENCE[family]
    t = pipe.transformer
    first, last = getattr(t, entry_list)[0], getattr(t, exit_list)[-1]
    residuals, state = [], {}

    def pre(module, args, kwargs):
        state["x"] = kwargs[entry_name] if entry_name in kwargs else args[0]

    def post(module, args, kwargs, out):
        y = out if out_idx is None else out[out_idx]
        x = state["x"]
        y = y[:, y.shape[1] - x.shape[1]:]  # joint streams end with the image tokens
        residuals.append((y - x).double())

    h1 = first.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = last.register_forward_hook(post, with_kwargs=True)
    try:
        pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **call_kwargs(family))
    finally:
        h1.remove()
        h2.remove()
    per_branch: dict[str, list[torch.Tensor]] = {}
    for i, r in enumerate(residuals):
        if layout == "batch":
            half = r.shape[0] // 2
            per_branch.setdefault("uncond", []).append(r[:half])
            per_branch.setdefault("cond", []).append(r[half:])
        else:
            labels = LABELS[layout]
            per_branch.setdefault(labels[i % len(labels)], []).append(r)
    curves = {}
    for label, rs in per_branch.items():
        vals = [1.0]
        for prev, cur in zip(rs, rs[1:]):
            n_prev = prev.reshape(prev.shape[0], -1, prev.shape[-1]).norm(dim=-1)
            n_cur = cur.reshape(cur.shape[0], -1, cur.shape[-1]).norm(dim=-1)
            vals.append(float((n_cur / n_prev).mean()))
        curves[label] = vals
    return curves


@pytest.mark.parametrize("family", list(REFERENCE))
def test_recorded_ratios_match_plain_hooks(load, family):
    pipe = load(family)
    expected = reference_ratios(pipe, family)
    kw = call_kwargs(family)
    result = calibrate(pipe, ["a cat"], [0], kw, model_id=family)
    prof = result.profile
    assert list(prof.branches) == list(LABELS[REFERENCE[family][4]])
    assert prof.calibration.guidance_mode == {"seq": "sequential", "batch": "batched", "none": "none"}[REFERENCE[family][4]]
    for label, curve in expected.items():
        got = prof.branches[label].ratios
        assert len(got) == STEPS
        assert got == pytest.approx(curve, abs=1e-5), label
    entry_list, _, exit_list, _, _ = REFERENCE[family]
    assert prof.model.stack[0] == entry_list and prof.model.stack[-1] == exit_list


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma", "wan"])
def test_cond_and_uncond_curves_are_separate(load, family):
    pipe = load(family)
    prof = calibrate(pipe, ["a cat"], [0], call_kwargs(family), model_id=family).profile
    cond, uncond = prof.branches["cond"].ratios, prof.branches["uncond"].ratios
    assert max(abs(a - b) for a, b in zip(cond, uncond)) > 1e-4


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma", "cogvideox"])
def test_calibration_does_not_change_outputs(load, family):
    pipe = load(family)
    plain = pipe(prompt="a cat", generator=torch.Generator().manual_seed(3), **call_kwargs(family))
    res = calibrate(pipe, ["a cat"], [3], call_kwargs(family), model_id=family, keep_outputs=True)
    assert np.array_equal(images(res.outputs), images([plain]))


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma", "hunyuanvideo", "lumina2"])
def test_threshold_zero_is_byte_identical_to_no_cache(load, threshold_zero_check, family):
    pipe = load(family)
    prof = calibrate(pipe, ["a cat"], [0], call_kwargs(family), model_id=family).profile
    kw = call_kwargs(family)
    cached, plain = threshold_zero_check(pipe, prof, kw, prompt="a dog", seed=5, max_skip_steps=3, retention_ratio=0.0)
    assert cached.transformer_calls == cached.total_calls == plain.total_calls


def reference_schedule(curves, steps, thr, k, retention, policy):
    """DESIGN.md's rule, written out independently. True = computed."""
    keep = int(retention * steps + 0.5)
    labels = list(curves)
    acc = {lb: [1.0, 0.0, 0] for lb in labels}  # ratio, err, steps
    cached, out = set(), {lb: [] for lb in labels}
    for i in range(steps):
        may = {}
        for lb in labels:
            if i < keep:
                may[lb] = False
                continue
            a = acc[lb]
            a[0] *= curves[lb][i]
            a[2] += 1
            a[1] += abs(1 - a[0])
            may[lb] = thr > 0 and a[1] <= thr and a[2] <= k and lb in cached
        skip = {lb: (all(may.values()) if policy == "joint" else may[lb]) for lb in labels}
        for lb in labels:
            out[lb].append(not skip[lb])
            if not skip[lb]:
                acc[lb] = [1.0, 0.0, 0]
                cached.add(lb)
    return out


@pytest.mark.parametrize("family,policy", [("flux", "joint"), ("flux", "independent"), ("sd3", "joint"),
                                           ("chroma", "independent"), ("wan", "joint")])
def test_skipped_steps_follow_the_rule(load, family, policy):
    pipe = load(family)
    prof = calibrate(pipe, ["a cat"], [0], call_kwargs(family, steps=12), model_id=family).profile
    curves = {lb: b.ratios for lb, b in prof.branches.items()}
    thr, k, ret = 0.25, 2, 0.2
    res = run(pipe, ["a cat"], [1], call_kwargs(family, steps=12), profile=prof, settings=SkipSettings(thr, k, ret),
              policy=policy)
    expected = reference_schedule(curves, 12, thr, k, ret, policy if prof.calibration.guidance_mode != "batched" else "joint")
    for lb, computed in expected.items():
        assert res.schedule[lb]["computed"] == [i for i, c in enumerate(computed) if c], lb
        assert res.schedule[lb]["skipped"] == [i for i, c in enumerate(computed) if not c], lb
    assert any(res.schedule[lb]["skipped"] for lb in expected), "the test should exercise skipping"
    per_call = 1 if prof.calibration.guidance_mode == "batched" else len(expected)
    computed_calls = sum(sum(c) for c in expected.values()) // (len(expected) if per_call == 1 else 1)
    assert res.transformer_calls == computed_calls


@pytest.mark.parametrize("family,embed", [("flux", "x_embedder"), ("sd3", "pos_embed")])
def test_skipped_step_outputs_input_plus_cached_residual(load, family, embed):
    """On a skipped step the stack's output (norm_out's input) is the stack's input (the patch embedding's
    output) plus the residual of the branch's last computed step; checked with hooks outside the stack."""
    pipe = load(family)
    prof = calibrate(pipe, ["a cat"], [0], call_kwargs(family, steps=10), model_id=family).profile
    t = pipe.transformer
    ins, outs = [], []
    h1 = getattr(t, embed).register_forward_hook(lambda m, a, o: ins.append(o.clone()))
    h2 = t.norm_out.register_forward_pre_hook(lambda m, a: outs.append(a[0].clone()))
    try:
        res = run(pipe, ["a cat"], [0], call_kwargs(family, steps=10), profile=prof,
                  settings=SkipSettings(0.5, 3, 0.2))
    finally:
        h1.remove()
        h2.remove()
    label = next(iter(res.schedule))
    calls_per_step = 1 if prof.calibration.guidance_mode == "batched" else 2
    skipped = res.schedule[label]["skipped"]
    assert skipped
    for step in skipped:
        last = max(c for c in res.schedule[label]["computed"] if c < step)
        i, j = step * calls_per_step, last * calls_per_step  # the branch's call (cond first)
        torch.testing.assert_close(outs[i], ins[i] + (outs[j] - ins[j]), rtol=0, atol=1e-6)


def test_hooks_are_removed_even_on_error(load):
    pipe = load("flux")
    t = pipe.transformer
    originals = (t.transformer_blocks, t.single_transformer_blocks)
    prof = calibrate(pipe, ["a cat"], [0], call_kwargs("flux"), model_id="flux").profile

    def boom(pipe_, step, timestep, kwargs):
        if step == 2:
            raise RuntimeError("boom")
        return kwargs

    with pytest.raises(RuntimeError, match="boom"):
        run(pipe, ["a cat"], [0], call_kwargs("flux", callback_on_step_end=boom), profile=prof,
            settings=SkipSettings(1.0, 3, 0.0))
    assert (t.transformer_blocks, t.single_transformer_blocks) == originals
    assert not t._forward_pre_hooks and not t._forward_hooks
    assert "step" not in vars(pipe.scheduler) and "cache_context" not in vars(t)
    again = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **call_kwargs("flux"))
    fresh = load("flux")
    ref = fresh(prompt="a cat", generator=torch.Generator().manual_seed(0), **call_kwargs("flux"))
    assert np.array_equal(images([again]), images([ref]))


def test_unet_pipeline_gets_a_one_line_error(load):
    from magcache_cli.errors import StackNotFoundError

    pipe = load("sdxl")
    with pytest.raises(StackNotFoundError) as e:
        calibrate(pipe, ["a cat"], [0], call_kwargs("sdxl", steps=2), model_id="sdxl")
    msg = str(e.value)
    assert "UNet" in msg and "transformer" in msg and "\n" not in msg
