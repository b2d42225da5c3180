"""Issue 13, generality: the DiT text-to-X families of diffusers 0.42.1 added in testing/tiny/more_*.py, each
checked against references that never use magcache's own code.

* stack: written down by hand from each transformer's `forward` (which block lists carry the latent's tokens
  from the patch embedding to the final norm);
* guidance: the layout read in each pipeline's denoising loop, and the labels the contract asks for
  (`cond` / `uncond`; `main` without guidance);
* ratios: residuals taken with plain torch forward hooks on the first and last block of that stack, during a
  plain pipeline call (which also shows the pipeline itself runs);
* threshold 0: byte-identical to that plain call;
* skipping: the steps skipped equal DESIGN.md's rule re-implemented here, run on the profile's curves.

One pipeline, one plain call, one calibration and two cached runs per family, built once per module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from magcache_cli.core.recording import guidance_order
from magcache_cli.core.rule import SkipSettings
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.runner.run import run
from magcache_cli.testing.helpers import load_tiny, media
from magcache_cli.testing.tiny import FAMILIES

pytestmark = pytest.mark.slow  # every family of issue 13: a plain call, a calibration and two cached runs each

STEPS = 8
SKIP = SkipSettings(0.3, 2, 0.25)  # retention keeps 2 of 8 steps; at most 2 skips in a row
DUAL = ["transformer_blocks", "single_transformer_blocks"]


@dataclass(frozen=True)
class Ref:
    stack: list[str]  # block lists of the stack, in call order
    mode: str  # "sequential" | "batched" | "none"
    out: int | None = None  # index of the image stream in the last block's output tuple (None: a bare tensor)
    image: str = "all"  # where the entry's tokens sit in the last block's output: "all", "head", "tail"
    cond_first: bool = False  # batched guidance as cat([positive, negative])
    loops: int = 1  # full denoising loops per pipeline call (Helios: one per autoregressive chunk)


# Read in diffusers 0.42.1: models/transformers/transformer_*.py (`forward`) and pipelines/*/pipeline_*.py.
REFS = {
    # double blocks return (encoder_hidden_states, hidden_states); single blocks run on cat([text, image])
    "flux2": Ref(DUAL, "none", None, "tail"),
    "flux2-klein": Ref(DUAL, "sequential", None, "tail"),
    # noise_refiner: image tokens (timestep-modulated); context_refiner: caption only; layers: cat([image, caption])
    "zimage": Ref(["noise_refiner", "layers"], "batched", None, "head", cond_first=True),
    # Flux-like, but single blocks keep text and image apart and return (encoder_hidden_states, hidden_states)
    "bria": Ref(DUAL, "batched", 1),
    "pixart-alpha": Ref(["transformer_blocks"], "batched"),
    "hunyuandit": Ref(["blocks"], "batched"),  # long skips stay inside the one list
    "cogview3plus": Ref(["transformer_blocks"], "batched", 0),  # blocks return (hidden_states, encoder_hidden_states)
    "lumina-next": Ref(["layers"], "batched", cond_first=True),
    "ovis-image": Ref(DUAL, "sequential", 1),
    "prx": Ref(["blocks"], "batched"),
    "krea2": Ref(["transformer_blocks"], "sequential"),  # text_fusion blocks only see text; main blocks the joint
    "sana-video": Ref(["transformer_blocks"], "batched"),
    "skyreels-v2": Ref(["blocks"], "sequential"),
    "anyflow": Ref(["blocks"], "batched"),
    "easyanimate": Ref(["transformer_blocks"], "batched", 0),
    "bria-fibo": Ref(DUAL, "batched", None, "tail"),  # single blocks run on cat([text, image])
    # 21 frames in chunks of 3 latent frames: 3 denoising loops per call (counted: 2 x 3 x STEPS calls)
    "helios": Ref(["blocks"], "sequential", loops=3),
    # blocks return (hidden_states, encoder_hidden_states); one call per guider pass, cond first
    "motif-video": Ref(DUAL, "sequential", 0),
    # blocks return (video hidden_states, audio_hidden_states); one call on cat([negative, positive]) per step
    "ltx2": Ref(["transformer_blocks"], "batched", 0),
}


def call_kwargs(family):
    return {**FAMILIES[family].call_kwargs, "num_inference_steps": STEPS, "output_type": "np"}


def plain_call_with_hooks(pipe, family, prompt, seed):
    """One plain pipeline call with forward hooks on the stack's first and last block: (pixels, residuals)."""
    ref = REFS[family]
    t = pipe.transformer
    first, last = getattr(t, ref.stack[0])[0], getattr(t, ref.stack[-1])[-1]
    residuals, state = [], {}

    def pre(module, args, kwargs):
        x = kwargs.get("hidden_states", kwargs.get("x"))
        state["x"] = x if x is not None else args[0]

    def post(module, args, kwargs, out):
        y, x = (out if ref.out is None else out[ref.out]), state["x"]
        n = x.shape[1]
        if ref.image == "tail":
            y = y[:, y.shape[1] - n:]
        elif ref.image == "head":
            y = y[:, :n]
        assert y.shape == x.shape, (family, tuple(y.shape), tuple(x.shape))
        residuals.append((y - x).double())

    handles = [first.register_forward_pre_hook(pre, with_kwargs=True),
               last.register_forward_hook(post, with_kwargs=True)]
    try:
        out = pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **call_kwargs(family))
    finally:
        for h in handles:
            h.remove()
    return media(out), residuals


def curves_by_position(residuals, mode, loops=1):
    """Ratio curves keyed by where a branch sits: call order within a step, or batch half. A pipeline call
    that runs several denoising loops is several trajectories: one curve each, averaged (as over runs)."""
    if loops > 1:
        n = len(residuals) // loops
        parts = [curves_by_position(residuals[i * n:(i + 1) * n], mode) for i in range(loops)]
        return {key: [float(np.mean([p[key][i] for p in parts])) for i in range(len(parts[0][key]))]
                for key in parts[0]}
    rows: dict[str, list[torch.Tensor]] = {}
    for i, r in enumerate(residuals):
        if mode == "batched":
            half = r.shape[0] // 2
            rows.setdefault("first", []).append(r[:half])
            rows.setdefault("second", []).append(r[half:])
        elif mode == "sequential":
            rows.setdefault(("first", "second")[i % 2], []).append(r)
        else:
            rows.setdefault("first", []).append(r)
    curves = {}
    for key, rs in rows.items():
        vals = [1.0]
        for prev, cur in zip(rs, rs[1:]):
            n_prev = prev.reshape(prev.shape[0], -1, prev.shape[-1]).norm(dim=-1)
            n_cur = cur.reshape(cur.shape[0], -1, cur.shape[-1]).norm(dim=-1)
            vals.append(float((n_cur / n_prev).mean()))
        curves[key] = vals
    return curves


def contract_labels(ref):
    """Position -> label as the contract says: sequential calls go cond then uncond (diffusers' order)."""
    if ref.mode == "none":
        return {"first": "main"}
    if ref.mode == "batched" and not ref.cond_first:
        return {"first": "uncond", "second": "cond"}
    return {"first": "cond", "second": "uncond"}


def reference_schedule(curves, steps, thr, k, retention, policy):
    """DESIGN.md's rule, written out independently. True = computed."""
    keep = int(retention * steps + 0.5)
    acc = {lb: [1.0, 0.0, 0] for lb in curves}  # ratio, error, steps since computed
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
            may[lb] = thr > 0 and a[1] <= thr and a[2] <= k and lb in cached
        skip = {lb: (all(may.values()) if policy == "joint" else may[lb]) for lb in curves}
        for lb in curves:
            out[lb].append(not skip[lb])
            if not skip[lb]:
                acc[lb] = [1.0, 0.0, 0]
                cached.add(lb)
    return out


@pytest.fixture(scope="module")
def family_state(tiny_pipeline_dir):
    """`get(family)`: pipeline, plain pixels + reference curves ("a cat", seed 0), profile, cached runs."""
    cache: dict[str, dict] = {}

    def get(family):
        if family not in cache:
            ref = REFS[family]
            pipe = load_tiny(tiny_pipeline_dir(family))
            pixels, residuals = plain_call_with_hooks(pipe, family, "a cat", 0)
            result = calibrate(pipe, ["a cat"], [0], call_kwargs(family), model_id=family)
            policy = "independent" if ref.mode == "sequential" else "joint"
            skipping = run(pipe, ["a cat"], [0], call_kwargs(family), profile=result.profile, settings=SKIP,
                           policy=policy)
            cache[family] = dict(pipe=pipe, pixels=pixels, curves=curves_by_position(residuals, ref.mode, ref.loops),
                                 result=result, skipping=skipping, policy=policy)
        return cache[family]

    return get


@pytest.mark.parametrize("family", list(REFS))
def test_plain_call_stack_and_guidance(family_state, family):
    fam, ref = FAMILIES[family], REFS[family]
    s = family_state(family)
    assert type(s["pipe"]).__name__ == fam.pipeline_class_name
    assert s["pixels"].shape == fam.output_shape
    assert np.isfinite(s["pixels"]).all() and s["pixels"].std() > 0
    prof = s["result"].profile
    assert prof.model.stack == ref.stack
    assert prof.calibration.guidance_mode == ref.mode
    assert len(s["curves"]["first"]) == STEPS


@pytest.mark.parametrize("family", list(REFS))
def test_ratios_match_plain_hooks(family_state, family):
    """Every branch's curve equals the plain-hook curve of the calls / batch rows the engine gave that label
    (a profile lists its branches in call order, or batch order)."""
    s = family_state(family)
    branches = s["result"].profile.branches
    assert len(branches) == len(s["curves"])
    for pos, label in zip(("first", "second"), branches):
        assert branches[label].ratios == pytest.approx(s["curves"][pos], abs=1e-5), (family, label)
    if len(branches) == 2:  # the two branches are different passes, not one curve twice
        a, b = (b.ratios for b in branches.values())
        assert max(abs(x - y) for x, y in zip(a, b)) > 1e-4


@pytest.mark.parametrize("family", list(REFS))
def test_labels_follow_the_contract(family_state, family):
    """`cond` is the pass that sees the prompt, whatever the layout (cond-first batches included)."""
    ref, s = REFS[family], family_state(family)
    branches = s["result"].profile.branches
    assert sorted(branches) == sorted(contract_labels(ref).values())
    for pos, label in contract_labels(ref).items():
        assert branches[label].ratios == pytest.approx(s["curves"][pos], abs=1e-5), (family, label)


@pytest.mark.parametrize("family", list(REFS))
def test_threshold_zero_is_byte_identical_to_the_plain_call(family_state, threshold_zero_check, family):
    s = family_state(family)
    exact, _ = threshold_zero_check(s["pipe"], s["result"].profile, call_kwargs(family), plain=s["pixels"],
                                    max_skip_steps=3, retention_ratio=0.25)
    assert exact.transformer_calls == exact.total_calls


@pytest.mark.parametrize("family", list(REFS))
def test_skipped_steps_follow_the_rule(family_state, family):
    s = family_state(family)
    prof, res = s["result"].profile, s["skipping"]
    curves = {lb: b.ratios for lb, b in prof.branches.items()}
    policy = s["policy"] if prof.calibration.guidance_mode == "sequential" else "joint"
    expected = reference_schedule(curves, STEPS, SKIP.threshold, SKIP.max_skip_steps, SKIP.retention_ratio, policy)
    for lb, computed in expected.items():
        assert res.schedule[lb]["computed"] == [i for i, c in enumerate(computed) if c], lb
        assert res.schedule[lb]["skipped"] == [i for i, c in enumerate(computed) if not c], lb
    assert any(res.schedule[lb]["skipped"] for lb in expected), "the settings should make it skip"
    per_call = 1 if prof.calibration.guidance_mode != "sequential" else len(expected)
    calls = sum(sum(c) for c in expected.values()) // (len(expected) if per_call == 1 else 1)
    assert res.transformer_calls == calls * REFS[family].loops  # every loop follows the same schedule
    assert np.isfinite(media(res.outputs[0])).all()


@pytest.mark.parametrize("family", ["flux2", "hunyuandit"])  # an added whole-message token; a BERT vocabulary
def test_builds_are_deterministic(tmp_path, family):
    from magcache_cli.testing.tiny import build_tiny_pipeline

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a = files(build_tiny_pipeline(family, tmp_path / "a", seed=0))
    b = files(build_tiny_pipeline(family, tmp_path / "b", seed=0))
    assert "transformer/diffusion_pytorch_model.safetensors" in a
    assert a == b


def test_guidance_order_from_the_guided_prediction():
    """u = (0, 1), c = (1, 1), scale 4: u + 4 (c - u) = (4, 1) lies past c seen from u."""
    u, c = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    guided = u + 4 * (c - u)
    assert guidance_order(u, c, guided) == "uncond_first"  # cat([negative, positive])
    assert guidance_order(c, u, guided) == "cond_first"  # [positive, negative] (Z-Image, Lumina-Next)
    assert guidance_order(c, u, -guided) == "cond_first"  # the pipeline negates the prediction (Z-Image)
    assert guidance_order(u, c, torch.tensor([[0.5, 0.0]])) is None  # between the two: says nothing
    assert guidance_order(u, c, torch.zeros(3)) is None  # shapes that do not fit
    # learned variance: 2 channels out, guidance on the first; the scheduler gets that channel only
    u2, c2 = torch.tensor([[[0.0], [7.0]]]), torch.tensor([[[1.0], [9.0]]])
    assert guidance_order(c2, u2, (u2 + 4 * (c2 - u2))[:, :1]) == "cond_first"
