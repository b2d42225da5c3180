"""Tiny random-weight diffusers pipelines, built offline, for tests and demos.

`build_tiny_pipeline(family, out_dir, seed)` creates every component of a pipeline from small
configs (tokenizers, text encoders, VAE, denoiser, scheduler), saves it with
`save_pretrained(out_dir, safe_serialization=True)` and returns `out_dir`. The result loads back
with `DiffusionPipeline.from_pretrained(out_dir)` with `HF_HUB_OFFLINE=1` and runs on CPU in well
under two seconds per call (4 steps, one thread).

Design notes
------------
* Tokenizers are the real transformers classes (CLIPTokenizer, T5TokenizerFast, Qwen2TokenizerFast,
  GemmaTokenizerFast, LlamaTokenizerFast) built from an in-memory *character-level* vocabulary
  (no merges), so ids are identical across processes and machines. Nothing is downloaded and
  `train_new_from_iterator` is never used.
* Text encoders are tiny configs of the real model classes (CLIPTextModel[WithProjection],
  T5EncoderModel, UMT5EncoderModel, Qwen2_5_VLForConditionalGeneration, Gemma2Model, LlamaModel,
  LlamaForCausalLM, GlmModel). CogView4 / HiDream's Llama-3 tokenizers are plain
  PreTrainedTokenizerFast objects over the same kind of character-level byte-level BPE.
* DiTs that zero-initialise modulation / gate / output layers would make a random tiny model's
  blocks identity maps (residual ratio 0 or NaN). After building the denoiser, every parameter
  tensor that is entirely zero is re-drawn from N(0, 0.1^2) with a `torch.Generator` seeded from
  `seed` and `zlib.crc32(parameter_name)`, so the weights (and the saved bytes) are deterministic.
  (With diffusers 0.42 constructors this only hits a few norm biases - wan, cogvideox, hunyuanvideo,
  the sdxl UNet - and mochi's pos_frequencies; the guard stays for models that do zero-init.) All
  other initialisation is seeded with `torch.manual_seed(seed)` before each component.
* The number of text tokens the denoiser sees differs from the number of image tokens in every
  family (`TinyFamily.text_tokens` / `TinyFamily.image_tokens`, per transformer call, batch 1,
  prompt "a cat"; some pipelines do not pad text, see each family's notes).

Guidance modes (read in the diffusers 0.42.1 pipeline sources, checked by tests/test_tiny.py)
-------------------------------------------------------------------------------------------
* ``sequential-named``: one denoiser call per branch, cond first, wrapped in
  ``transformer.cache_context("cond")`` / ``cache_context("uncond")``: flux (true CFG), wan,
  qwenimage (true CFG), hunyuanvideo-truecfg, cogview4.
* ``sequential-unnamed``: one call per branch, cond first, no cache_context: chroma, lumina2.
* ``batched``: one call on ``torch.cat([negative, positive])``: sd3, sdxl (UNet), pixart, sana,
  auraflow, hidream (no cache_context); cogvideox, ltx, mochi (inside ``cache_context("cond_uncond")``).
* ``none``: one call per step: flux-nocfg, hunyuanvideo (guidance-distilled; both inside
  ``cache_context("cond")``).

Stretch families: pixart (PixArt-Sigma), sana, auraflow, ltx, mochi, cogview4 and hidream build and
run. Issue 13's families (image2.py, video2.py, each registering its own): kandinsky5-t2i, hunyuanimage,
ernie-image, sana-sprint, ideogram4, latte, allegro (loads with `vae_tiling=True`, see `TinyFamily.load`) and
hunyuanvideo15. Not built (see `SKIPPED_FAMILIES`): kandinsky5 text-to-video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .image import (
    _build_chroma,
    _build_flux,
    _build_lumina2,
    _build_pixart,
    _build_qwenimage,
    _build_sd3,
    _build_sdxl,
)
from .image_extra import _build_auraflow, _build_cogview4, _build_hidream, _build_sana
from .video import (
    _build_cogvideox,
    _build_hunyuanvideo,
    _build_ltx,
    _build_mochi,
    _build_wan,
)

__all__ = ["FAMILIES", "SKIPPED_FAMILIES", "TinyFamily", "build_tiny_pipeline"]


@dataclass(frozen=True)
class TinyFamily:
    """One tiny pipeline recipe.

    `call_kwargs` are passed as ``pipe(prompt=..., num_inference_steps=..., generator=...,
    **call_kwargs)``; they never contain prompt, num_inference_steps, generator or output_type.
    `guidance` is one of ``sequential-named``, ``sequential-unnamed``, ``batched``, ``none``.
    `text_tokens` / `image_tokens` are the sequence lengths one denoiser call sees for the prompt
    "a cat" with these call_kwargs, per sample (for the UNet family: cross-attention tokens and 0).
    """

    name: str
    pipeline_class_name: str
    call_kwargs: dict
    guidance: str
    notes: str
    text_tokens: int = 0
    image_tokens: int = 0
    output_shape: tuple = ()  # shape of `pipe(..., output_type="np")`.images (or .frames for video)
    blocks: tuple = ()  # the denoiser's main block lists (ModuleList attribute paths), in call order
    load: dict = field(default_factory=dict)  # LoadOptions fields the pipeline needs (e.g. vae_tiling=True)
    builder: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_NEG = "blurry, low quality"

FAMILIES: dict[str, TinyFamily] = {}

#: Stretch families that are not built, with the reason.
SKIPPED_FAMILIES: dict[str, str] = {
    "kandinsky5": "Kandinsky5T2VPipeline is not built: its tokenizer is a Qwen2VLProcessor, which needs "
                  "Qwen2VLVideoProcessor, which needs torchvision (not installed here). Kandinsky5T2IPipeline "
                  "is built ('kandinsky5-t2i'), with the processor's own Qwen2 tokenizer standing in for it.",
}


def _register(fam: TinyFamily) -> None:
    FAMILIES[fam.name] = fam


_DOUBLE_SINGLE = ("transformer_blocks", "single_transformer_blocks")

_register(TinyFamily(
    name="flux",
    pipeline_class_name="FluxPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5,
                     negative_prompt=_NEG, true_cfg_scale=4.0),
    guidance="sequential-named",
    notes="True CFG (true_cfg_scale>1 and a negative prompt): two transformer calls per step, "
          "cache_context('cond') then cache_context('uncond').",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_flux,
))
_register(TinyFamily(
    name="flux-nocfg",
    pipeline_class_name="FluxPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5),
    guidance="none",
    notes="Same model as 'flux' without a negative prompt: one call per step, still inside "
          "cache_context('cond').",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_flux,
))
_register(TinyFamily(
    name="sd3",
    pipeline_class_name="StableDiffusion3Pipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]) in one call with no cache_context "
          "(skip_guidance_layers would add a third, unbatched call). Text = 77 CLIP tokens + "
          "max_sequence_length T5 tokens.",
    text_tokens=77 + 12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_sd3,
))
_register(TinyFamily(
    name="wan",
    pipeline_class_name="WanPipeline",
    call_kwargs=dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=5.0,
                     negative_prompt=_NEG),
    guidance="sequential-named",
    notes="Text-to-video. guidance_scale>1: cond call in cache_context('cond', step_index=, sigma=, "
          "num_inference_steps=) then uncond call in cache_context('uncond', ...). Text is padded to "
          "max_sequence_length.",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 64, 64, 3), blocks=("blocks",),
    builder=_build_wan,
))
_register(TinyFamily(
    name="qwenimage",
    pipeline_class_name="QwenImagePipeline",
    call_kwargs=dict(height=64, width=64, true_cfg_scale=4.0, negative_prompt=_NEG),
    guidance="sequential-named",
    notes="True CFG (true_cfg_scale>1 and a negative prompt): cond call in cache_context('cond') then "
          "uncond call in cache_context('uncond'). Text is NOT padded: the chat template minus its "
          "first 34 tokens, so cond and uncond calls see different text lengths (133 for 'a cat').",
    text_tokens=133, image_tokens=64, output_shape=(1, 64, 64, 3), blocks=("transformer_blocks",),
    builder=_build_qwenimage,
))
_register(TinyFamily(
    name="cogvideox",
    pipeline_class_name="CogVideoXPipeline",
    call_kwargs=dict(height=64, width=64, num_frames=9, max_sequence_length=16, guidance_scale=6.0,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]) in ONE call, wrapped in "
          "cache_context('cond_uncond'). max_sequence_length must equal the transformer's "
          "max_text_seq_length (16).",
    text_tokens=16, image_tokens=3 * 4 * 4, output_shape=(1, 9, 64, 64, 3), blocks=("transformer_blocks",),
    builder=_build_cogvideox,
))
_HUNYUAN_TEMPLATE = {"template": "{}", "crop_start": 0}
_register(TinyFamily(
    name="hunyuanvideo",
    pipeline_class_name="HunyuanVideoPipeline",
    call_kwargs=dict(height=32, width=32, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                     prompt_template=_HUNYUAN_TEMPLATE),
    guidance="none",
    notes="Guidance-distilled: guidance_scale is embedded (guidance_embeds=True), one call per step "
          "in cache_context('cond'). True CFG needs true_cfg_scale>1 AND a negative prompt (see "
          "'hunyuanvideo-truecfg'). Blocks: transformer_blocks then single_transformer_blocks; the "
          "context_embedder.token_refiner has its own refiner_blocks. prompt_template is a bare '{}' "
          "because the default Llama chat template is ~500 characters (= tokens here) and would "
          "truncate the prompt away.",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_hunyuanvideo,
))
_register(TinyFamily(
    name="hunyuanvideo-truecfg",
    pipeline_class_name="HunyuanVideoPipeline",
    call_kwargs=dict(height=32, width=32, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                     prompt_template=_HUNYUAN_TEMPLATE, negative_prompt=_NEG, true_cfg_scale=4.0),
    guidance="sequential-named",
    notes="Same model as 'hunyuanvideo' with true CFG: cond call in cache_context('cond') then uncond "
          "call in cache_context('uncond').",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_hunyuanvideo,
))
_register(TinyFamily(
    name="chroma",
    pipeline_class_name="ChromaPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.0,
                     negative_prompt=_NEG),
    guidance="sequential-unnamed",
    notes="CFG as two sequential transformer calls (cond first, then uncond) with no cache_context.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_chroma,
))
_register(TinyFamily(
    name="lumina2",
    pipeline_class_name="Lumina2Pipeline",
    call_kwargs=dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG, max_sequence_length=256),
    guidance="sequential-unnamed",
    notes="CFG as two sequential calls (cond, then uncond) with NO cache_context. With "
          "cfg_trunc_ratio<1 the uncond call is dropped on late steps (calls per step vary). The "
          "pipeline prepends a ~170-character system prompt, so max_sequence_length stays at 256 to "
          "keep the user prompt. noise_refiner / context_refiner run before the main 'layers' on "
          "image-only / text-only tokens; 'layers' see the joint sequence.",
    text_tokens=256, image_tokens=16, output_shape=(1, 64, 64, 3), blocks=("layers",),
    builder=_build_lumina2,
))
_register(TinyFamily(
    name="sdxl",
    pipeline_class_name="StableDiffusionXLPipeline",
    call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
    guidance="batched",
    notes="UNet denoiser (no transformer): used to test the 'no transformer block stack' error. CFG "
          "batched as torch.cat([negative, positive]).",
    text_tokens=77, image_tokens=0, output_shape=(1, 32, 32, 3), blocks=(),
    builder=_build_sdxl,
))

# ---- stretch families ----
_register(TinyFamily(
    name="pixart",
    pipeline_class_name="PixArtSigmaPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5, negative_prompt=_NEG,
                     use_resolution_binning=False, clean_caption=False),
    guidance="batched",
    notes="PixArt-Sigma. CFG batched as torch.cat([negative, positive]), no cache_context. "
          "use_resolution_binning=False because the tiny sample_size has no aspect-ratio bin table.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_pixart,
))
_register(TinyFamily(
    name="sana",
    pipeline_class_name="SanaPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5, negative_prompt=_NEG,
                     use_resolution_binning=False),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]), no cache_context. The default "
          "complex_human_instruction is prepended (~2000 characters through the tiny Gemma2); the "
          "transformer still sees max_sequence_length text tokens.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_sana,
))
_register(TinyFamily(
    name="auraflow",
    pipeline_class_name="AuraFlowPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5, negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]), no cache_context. Blocks: "
          "joint_transformer_blocks then single_transformer_blocks.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3),
    blocks=("joint_transformer_blocks", "single_transformer_blocks"),
    builder=_build_auraflow,
))
_register(TinyFamily(
    name="ltx",
    pipeline_class_name="LTXPipeline",
    call_kwargs=dict(height=32, width=32, num_frames=9, max_sequence_length=16, guidance_scale=3.0,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="LTX-Video. CFG batched as torch.cat([negative, positive]) in one call wrapped in "
          "cache_context('cond_uncond').",
    text_tokens=16, image_tokens=3 * 8 * 8, output_shape=(1, 9, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_ltx,
))
_register(TinyFamily(
    name="mochi",
    pipeline_class_name="MochiPipeline",
    call_kwargs=dict(height=64, width=64, num_frames=7, max_sequence_length=16, guidance_scale=4.5,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]) in one call wrapped in "
          "cache_context('cond_uncond').",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 7, 64, 64, 3), blocks=("transformer_blocks",),
    builder=_build_mochi,
))
_register(TinyFamily(
    name="cogview4",
    pipeline_class_name="CogView4Pipeline",
    call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
    guidance="sequential-named",
    notes="CFG as a cond call in cache_context('cond') then an uncond call in cache_context('uncond'). "
          "Text is padded (on the left) to a multiple of 16 only, so cond ('a cat': 16) and uncond "
          "(32) text lengths differ.",
    text_tokens=16, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_cogview4,
))
_register(TinyFamily(
    name="hidream",
    pipeline_class_name="HiDreamImagePipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0, negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]), no cache_context. The pipeline rescales "
          "height/width to an area of (128 * vae_scale_factor)^2, so every call sees 4096 image tokens "
          "(here a 128x128 px image with a 1-level VAE) whatever height/width say; the tiny "
          "transformer has a single attention head to stay fast. The transformer takes "
          "encoder_hidden_states_t5 / encoder_hidden_states_llama3 (no encoder_hidden_states): blocks "
          "see 12 T5 + 12 Llama(last layer) + 12 Llama(layer i) = 36 text tokens; MoE feed-forward. "
          "Slowest family: ~0.75 s for 4 steps on one idle core.",
    text_tokens=36, image_tokens=4096, output_shape=(1, 128, 128, 3),
    blocks=("double_stream_blocks", "single_stream_blocks"),
    builder=_build_hidream,
))


# ---- issue 13: more DiT families (their own files) ----
from .more_families import MORE_FAMILIES, MORE_SKIPPED  # noqa: E402

for _kw in MORE_FAMILIES:
    _register(TinyFamily(**_kw))
SKIPPED_FAMILIES.update(MORE_SKIPPED)

# issue 13's guider, second-model and odd-layout families (helper `families`): each module lists its own
from . import image2 as _image2  # noqa: E402
from . import video2 as _video2

_image2.register(_register, TinyFamily)
_video2.register(_register, TinyFamily)


def build_tiny_pipeline(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline `family`, save it to `out_dir` (safetensors) and return `out_dir`."""
    if family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise KeyError(f"unknown tiny family {family!r}; known: {known}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builder = FAMILIES[family].builder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builder(seed)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out
