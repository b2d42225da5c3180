"""Registry entries of the tiny pipelines in more_image.py / more_video.py (issue 13: every DiT text-to-X
family of diffusers 0.42.1 that builds offline). Plain data: the package `__init__`, which owns FAMILIES and
SKIPPED_FAMILIES, turns `MORE_FAMILIES` into `TinyFamily` entries and adds `MORE_SKIPPED`.

Guidance layouts here (read in the diffusers 0.42.1 sources, checked by tests/core/test_more_families.py):

* one call per branch, cond first, in ``cache_context("cond")`` / ``("uncond")``: flux2-klein, ovis-image,
  skyreels-v2, helios; without cache_context: krea2.
* one call on ``cat([negative, positive])``: bria, bria-fibo, pixart-alpha, hunyuandit, cogview3plus, prx, sana-video,
  anyflow, easyanimate; inside ``cache_context("cond_uncond")``: ltx2. On ``[positive, negative]`` (the
  conditional half FIRST, profiles list ``cond`` first): zimage, lumina-next.
* one call per step (guidance-distilled, the scale is embedded): flux2.
* a diffusers guider (`pipe.guider`), one call per guider pass, in cache_context(<pass name>): motif-video.
* several denoising loops per call (autoregressive chunks): helios.
"""

from __future__ import annotations

from .more_image import (
    _build_bria,
    _build_bria_fibo,
    _build_cogview3plus,
    _build_flux2,
    _build_flux2_klein,
    _build_hunyuandit,
    _build_krea2,
    _build_lumina_next,
    _build_ovis_image,
    _build_pixart_alpha,
    _build_prx,
    _build_zimage,
)
from .more_video import (
    _build_anyflow,
    _build_easyanimate,
    _build_helios,
    _build_ltx2,
    _build_motif_video,
    _build_sana_video,
    _build_skyreels_v2,
)

_NEG = "blurry, low quality"
_DUAL = ("transformer_blocks", "single_transformer_blocks")
_IMG32 = (1, 32, 32, 3)


MORE_FAMILIES: list[dict] = []  # TinyFamily keyword arguments, in registry order


def _add(name, cls, guidance, notes, builder, call_kwargs, output_shape=_IMG32, blocks=("transformer_blocks",),
         text_tokens=0, image_tokens=0):
    MORE_FAMILIES.append(dict(name=name, pipeline_class_name=cls, call_kwargs=call_kwargs, guidance=guidance,
                              notes=notes, text_tokens=text_tokens, image_tokens=image_tokens,
                              output_shape=output_shape, blocks=blocks, builder=builder))


_add("flux2", "Flux2Pipeline", "none",
     "FLUX.2 [dev]: guidance-distilled (guidance_scale is embedded), one call per step, no cache_context. "
     "Its real `tokenizer` component is a PixtralProcessor, which needs torchvision: a plain tokenizer with the "
     "same chat template stands in (for text-only prompts the processor hands apply_chat_template to its "
     "tokenizer). The ~1,000-character system message is one token so the prompt survives max_sequence_length. "
     "text_encoder_out_layers=(1, 2): the tiny Mistral3 has 2 layers.",
     _build_flux2, dict(height=32, width=32, max_sequence_length=16, guidance_scale=4.0,
                        text_encoder_out_layers=(1, 2)),
     blocks=_DUAL, text_tokens=16, image_tokens=64)
_add("flux2-klein", "Flux2KleinPipeline", "sequential-named",
     "FLUX.2 [klein] (not distilled): CFG as a cond call in cache_context('cond') then an uncond call (empty "
     "prompt) in cache_context('uncond'). Qwen3 text encoder behind a ChatML template.",
     _build_flux2_klein, dict(height=32, width=32, max_sequence_length=16, guidance_scale=4.0,
                              text_encoder_out_layers=(1,)),
     blocks=_DUAL, text_tokens=16, image_tokens=64)
_add("zimage", "ZImagePipeline", "batched",
     "Z-Image: CFG batched as [positive, negative] - the conditional half FIRST - in one call, no cache_context; "
     "latents and captions go in as lists. noise_refiner (image tokens, timestep-modulated) and context_refiner "
     "(caption) run first; 'layers' see cat([image, caption]) (the image tokens lead).",
     _build_zimage, dict(height=32, width=32, max_sequence_length=16, guidance_scale=4.0, negative_prompt=_NEG),
     blocks=("noise_refiner", "layers"), text_tokens=32, image_tokens=64)
_add("bria", "BriaPipeline", "batched",
     "Bria 3.2: CFG batched as cat([negative, positive]), no cache_context; Flux-style double and single blocks "
     "on separate text / image streams.",
     _build_bria, dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0, negative_prompt=_NEG),
     blocks=_DUAL, text_tokens=12, image_tokens=64)
_add("pixart-alpha", "PixArtAlphaPipeline", "batched",
     "PixArt-alpha: CFG batched as cat([negative, positive]), no cache_context; cross-attention to the text. "
     "use_resolution_binning=False: the tiny sample_size has no aspect-ratio bin table.",
     _build_pixart_alpha, dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5,
                               negative_prompt=_NEG, use_resolution_binning=False, clean_caption=False),
     text_tokens=12, image_tokens=64)
_add("hunyuandit", "HunyuanDiTPipeline", "batched",
     "HunyuanDiT: CFG batched as cat([negative, positive]), no cache_context. One 'blocks' list whose second "
     "half takes long skip connections from the first (U-ViT style); text = 77 BERT + 256 T5 tokens by "
     "cross-attention. No safety checker. The pipeline assumes a VAE scale factor of 8 (4-level VAE).",
     _build_hunyuandit, dict(height=64, width=64, guidance_scale=5.0, negative_prompt=_NEG,
                             use_resolution_binning=False),
     output_shape=(1, 64, 64, 3), blocks=("blocks",), text_tokens=77, image_tokens=16)
_add("cogview3plus", "CogView3PlusPipeline", "batched",
     "CogView3-Plus: CFG batched as cat([negative, positive]), no cache_context; text padded to 224 T5 tokens.",
     _build_cogview3plus, dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
     text_tokens=224, image_tokens=64)
_add("lumina-next", "LuminaPipeline", "batched",
     "Lumina-Next: CFG batched as cat([positive, negative]) - the conditional half FIRST - in one call, no "
     "cache_context. The pipeline assumes a VAE scale factor of 8 (4-level VAE).",
     _build_lumina_next, dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG,
                              max_sequence_length=32),
     output_shape=(1, 64, 64, 3), blocks=("layers",), text_tokens=8, image_tokens=16)
_add("ovis-image", "OvisImagePipeline", "sequential-named",
     "Ovis-Image: CFG as cond / uncond calls in cache_context('cond') / ('uncond'). The pipeline prefixes a "
     "~150-character system prompt: max_sequence_length 256 keeps the user prompt.",
     _build_ovis_image, dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG, max_sequence_length=256),
     blocks=_DUAL, text_tokens=256, image_tokens=64)
_add("prx", "PRXPipeline", "batched",
     "PRX (Photoroom): CFG batched as cat([negative, positive]), no cache_context; T5Gemma encoder; prompts padded "
     "to the tokenizer's model_max_length (16).",
     _build_prx, dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG, use_resolution_binning=False),
     blocks=("blocks",), text_tokens=16, image_tokens=64)
_add("krea2", "Krea2Pipeline", "sequential-unnamed",
     "Krea 2: CFG as two sequential calls (cond, then uncond), no cache_context. text_fusion's layerwise / "
     "refiner blocks only see text; 'transformer_blocks' see cat([text, image]). The first 34 template tokens "
     "are dropped: max_sequence_length 160 keeps the prompt.",
     _build_krea2, dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG, max_sequence_length=160),
     output_shape=(1, 64, 64, 3), text_tokens=168, image_tokens=64)
_add("sana-video", "SanaVideoPipeline", "batched",
     "Sana-Video: CFG batched as cat([negative, positive]), no cache_context; Wan VAE.",
     _build_sana_video, dict(height=64, width=64, frames=5, max_sequence_length=12, guidance_scale=6.0,
                             negative_prompt=_NEG, use_resolution_binning=False),
     output_shape=(1, 5, 64, 64, 3), text_tokens=12, image_tokens=32)
_add("skyreels-v2", "SkyReelsV2Pipeline", "sequential-named",
     "SkyReels-V2 (Wan architecture): cond / uncond calls in cache_context('cond') / ('uncond'). Its prompt "
     "cleaning calls ftfy unconditionally (a test dependency).",
     _build_skyreels_v2, dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                              negative_prompt=_NEG),
     output_shape=(1, 5, 64, 64, 3), blocks=("blocks",), text_tokens=16, image_tokens=32)
_add("anyflow", "AnyFlowPipeline", "batched",
     "AnyFlow (Wan architecture, flow-map scheduler): CFG batched as cat([negative, positive]), no cache_context.",
     _build_anyflow, dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=5.0,
                          negative_prompt=_NEG),
     output_shape=(1, 5, 64, 64, 3), blocks=("blocks",), text_tokens=16, image_tokens=32)
_add("easyanimate", "EasyAnimatePipeline", "batched",
     "EasyAnimate V5.1: CFG batched as cat([negative, positive]), no cache_context; Qwen2-VL text encoder, "
     "Magvit VAE; text padded to 256 tokens.",
     _build_easyanimate, dict(height=32, width=32, num_frames=5, guidance_scale=5.0, negative_prompt=_NEG),
     output_shape=(1, 5, 32, 32, 3), text_tokens=256, image_tokens=48)

_add("bria-fibo", "BriaFiboPipeline", "batched",
     "Bria FIBO: CFG batched as cat([negative, positive]), no cache_context; SmolLM3 text encoder whose every "
     "hidden layer conditions one block; Wan 2.2-style patchified VAE (the pipeline hard-codes a scale factor of "
     "16). A non-empty negative prompt: an empty one is encoded as token id 128000.",
     _build_bria_fibo, dict(height=64, width=64, guidance_scale=5.0, negative_prompt=_NEG),
     output_shape=(1, 64, 64, 3), blocks=_DUAL, text_tokens=20, image_tokens=16)
_add("helios", "HeliosPipeline", "sequential-named",
     "Helios: autoregressive chunks, each a full denoising loop of num_inference_steps (here 3 loops per call: "
     "21 frames, 3 latent frames per chunk); cond / uncond calls in cache_context('cond') / ('uncond'). "
     "stages=1 (no pyramid). The blocks see the chunk's tokens plus compressed history tokens (25 on the "
     "first call).",
     _build_helios, dict(height=32, width=32, num_frames=21, num_latent_frames_per_chunk=3,
                         max_sequence_length=16, guidance_scale=5.0, negative_prompt=_NEG),
     output_shape=(1, 25, 32, 32, 3), blocks=("blocks",), text_tokens=16, image_tokens=25)

_add("motif-video", "MotifVideoPipeline", "sequential-named",
     "Motif-Video: guidance by a diffusers guider (`pipe.guider`, ClassifierFreeGuidance saved with the "
     "pipeline): one call per guider pass, each in cache_context(<the guider's name for it>); T5Gemma2 encoder. "
     "Its transformer takes the latents plus image-conditioning channels (2 x 4 + 1).",
     _build_motif_video, dict(height=64, width=64, num_frames=5, max_sequence_length=16, negative_prompt=_NEG),
     output_shape=(1, 5, 64, 64, 3), blocks=_DUAL, text_tokens=16, image_tokens=32)

_add("ltx2", "LTX2Pipeline", "batched",
     "LTX-2 (video + audio): CFG batched as cat([negative, positive]) in one call inside "
     "cache_context('cond_uncond'); each block carries a video and an audio stream and returns (video, audio); "
     "the pipeline deep-copies its scheduler for the audio latents. Guidance is mixed in x0 space and turned back "
     "into a velocity. Spatio-temporal (STG) and modality-isolation guidance (extra calls in 'uncond_stg' / "
     "'uncond_modality', on by default) and guidance rescale are switched off: the LTX-2.0 layout. Gemma 3 text "
     "encoder (a tiny text model plus a 1-layer SigLIP tower, built from a config); the output also holds audio. "
     "Only the video stream's residual is cached: on a skipped pass the audio tokens pass through the stack "
     "unchanged (docs/families.md, note 6).",
     _build_ltx2, dict(height=32, width=32, num_frames=5, frame_rate=25.0, max_sequence_length=16,
                       guidance_scale=4.0, negative_prompt=_NEG, stg_scale=0.0, audio_stg_scale=0.0,
                       modality_scale=1.0, audio_modality_scale=1.0, guidance_rescale=0.0,
                       audio_guidance_rescale=0.0),
     output_shape=(1, 5, 32, 32, 3), text_tokens=16, image_tokens=768)

_TORCHVISION = "needs torchvision (the PyPI wheel for torch 2.13 does not load against the CPU build)"
MORE_SKIPPED = {
    "qwenimage21": f"QwenImage21Pipeline's processor is a Qwen3VLProcessor; its video processor {_TORCHVISION}.",
    "longcat-image": f"LongCatImagePipeline's text_processor is a Qwen2VLProcessor; its video processor "
                     f"{_TORCHVISION}.",
    "nucleusmoe-image": f"NucleusMoEImagePipeline's processor is a Qwen3VLProcessor; its video processor "
                        f"{_TORCHVISION}.",
    "kandinsky6": f"Kandinsky6TI2VAPipeline's tokenizer is a Qwen2_5_VLProcessor; its video processor {_TORCHVISION}.",
    "bria-fibo2": f"BriaFibo2Pipeline's processor is a Qwen3VLProcessor; its video processor {_TORCHVISION}.",
    "omnigen": "OmniGenPipeline's multimodal processor builds torchvision transforms in __init__ (not installed).",
    "cosmos": "Cosmos pipelines loaded without a safety checker build CosmosSafetyChecker(), which needs the "
              "cosmos_guardrail package, whose guardrail models come from the hub.",
}
