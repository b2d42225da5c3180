"""Tiny builders for more image DiT families of diffusers 0.42.1: Sana Sprint, Kandinsky 5 T2I, ERNIE-Image,
HunyuanImage 2.1, Ideogram 4."""

from __future__ import annotations

from .image_extra import _build_sana
from .parts import _denoiser


def _build_sana_sprint(seed: int):
    import torch
    from diffusers import SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler

    base = _build_sana(seed)  # same tokenizer, Gemma2 text encoder and DC-AE as the `sana` family
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=16,
        mlp_ratio=2.0,
        sample_size=16,
        guidance_embeds=True,
        qk_norm="rms_norm_across_heads",
    )
    return SanaSprintPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                              transformer=_denoiser(transformer, seed), scheduler=SCMScheduler())


_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]


def _qwen25vl_text(seed: int, hidden: int = 16, layers: int = 2, model: str = "conditional"):
    """A character-level Qwen2 tokenizer and a tiny Qwen2.5-VL (the `qwenimage` family's recipe)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLTextModel,
    )

    from .parts import _qwen2_tokenizer

    tok = _qwen2_tokenizer(_QWEN_SPECIALS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    text = {
        "vocab_size": len(tok), "hidden_size": hidden, "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 2,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0, "max_position_embeddings": 2048, "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": hidden},
        vocab_size=len(tok), hidden_size=hidden,
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    if model == "text":
        return tok, Qwen2_5_VLTextModel(config.text_config).eval()
    return tok, Qwen2_5_VLForConditionalGeneration(config).eval()


def _build_kandinsky5_t2i(seed: int):
    import torch
    from diffusers import Kandinsky5T2IPipeline, Kandinsky5Transformer3DModel

    from .parts import _clip_text, _clip_tokenizer, _flow_scheduler, _kl_vae

    # The pipeline's tokenizer is a Qwen2VLProcessor, whose video processor needs torchvision; the
    # pipeline only calls it on text (images=None, videos=None), which the processor hands to its
    # Qwen2 tokenizer, so the tokenizer itself stands in for it.
    tok, te = _qwen25vl_text(seed)
    tok2 = _clip_tokenizer()
    te2 = _clip_text(tok2, seed, hidden=16)
    torch.manual_seed(seed)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4, in_text_dim=16, in_text_dim2=16, time_dim=16, out_visual_dim=4, patch_size=(1, 2, 2),
        model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 4, 8),
    )
    # the pipeline hard-codes an 8x VAE and only generates at its own resolutions (1024x1024 at least)
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(4, 4, 4, 4))
    return Kandinsky5T2IPipeline(transformer=_denoiser(transformer, seed), vae=vae, text_encoder=te, tokenizer=tok,
                                 text_encoder_2=te2, tokenizer_2=tok2, scheduler=_flow_scheduler(shift=3.0))


def _flux2_vae(seed: int, latent_channels: int = 4):
    import torch
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    return AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4,
        sample_size=32,
    ).eval()


def _mistral3_text(seed: int, tok, hidden: int = 16):
    import torch
    from transformers import Mistral3Config, Mistral3Model

    config = Mistral3Config(
        text_config=dict(model_type="mistral", vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        vision_config=dict(model_type="pixtral", hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                           num_attention_heads=2, head_dim=8, image_size=32, patch_size=8),
    )
    torch.manual_seed(seed)
    return Mistral3Model(config).eval()


def _build_ernie_image(seed: int):
    import torch
    from diffusers import ErnieImagePipeline, ErnieImageTransformer2DModel

    from .parts import _flow_scheduler, _llama_tokenizer

    tok = _llama_tokenizer()
    te = _mistral3_text(seed, tok)
    torch.manual_seed(seed)
    transformer = ErnieImageTransformer2DModel(
        hidden_size=32, num_attention_heads=2, num_layers=2, ffn_hidden_size=64, in_channels=16, out_channels=16,
        text_in_dim=16, rope_axes_dim=(4, 6, 6),
    )
    return ErnieImagePipeline(transformer=_denoiser(transformer, seed), vae=_flux2_vae(seed), text_encoder=te,
                              tokenizer=tok, scheduler=_flow_scheduler(shift=3.0))


_CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
         "{% else %}{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _build_ideogram4(seed: int):
    import torch
    from diffusers import Ideogram4Pipeline, Ideogram4Transformer2DModel
    from diffusers.pipelines.ideogram4.pipeline_ideogram4 import (
        QWEN3_VL_ACTIVATION_LAYERS,
    )
    from transformers import Qwen3VLConfig, Qwen3VLModel

    from .parts import _flow_scheduler, _qwen2_tokenizer

    tok = _qwen2_tokenizer(_QWEN_SPECIALS)
    tok.chat_template = _CHAT
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    hidden = 8
    layers = max(QWEN3_VL_ACTIVATION_LAYERS) + 1  # the pipeline taps 13 fixed layers of Qwen3-VL (36 deep)
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=16, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=4, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                          "mrope_section": [1, 0, 1], "mrope_interleaved": True},
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=hidden,
                           deepstack_visual_indexes=[]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    te = Qwen3VLModel(config).eval()

    def transformer(k: int):
        torch.manual_seed(seed + k)
        model = Ideogram4Transformer2DModel(
            in_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2, intermediate_size=64,
            adaln_dim=16, llm_features_dim=hidden * len(QWEN3_VL_ACTIVATION_LAYERS), mrope_section=(4, 2, 2),
        )
        return _denoiser(model, seed + k)

    return Ideogram4Pipeline(scheduler=_flow_scheduler(), vae=_flux2_vae(seed), text_encoder=te, tokenizer=tok,
                             transformer=transformer(0), unconditional_transformer=transformer(1))


def _byt5(seed: int, d_model: int = 16):
    """ByT5's byte tokenizer (no vocabulary file) and a tiny T5 encoder over its 384 ids."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    from .parts import _t5_config

    tok = ByT5Tokenizer()
    torch.manual_seed(seed)
    return tok, T5EncoderModel(T5Config(**_t5_config(tok, d_model))).eval()


def _build_hunyuanimage(seed: int):
    import torch
    from diffusers import (
        AdaptiveProjectedMixGuidance,
        AutoencoderKLHunyuanImage,
        HunyuanImagePipeline,
        HunyuanImageTransformer2DModel,
    )

    from .parts import _flow_scheduler

    tok, te = _qwen25vl_text(seed, layers=3)  # the pipeline reads hidden_states[-3]
    tok2, te2 = _byt5(seed)
    torch.manual_seed(seed)
    transformer = HunyuanImageTransformer2DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0, patch_size=(1, 1), text_embed_dim=16,
        text_embed_2_dim=16, rope_axes_dim=(8, 8),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanImage(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 32), layers_per_block=1,
        spatial_compression_ratio=4, sample_size=32, scaling_factor=0.75,
    ).eval()
    return HunyuanImagePipeline(scheduler=_flow_scheduler(shift=3.0), vae=vae, text_encoder=te, tokenizer=tok,
                                text_encoder_2=te2, tokenizer_2=tok2, transformer=_denoiser(transformer, seed),
                                guider=AdaptiveProjectedMixGuidance(guidance_scale=3.5))


def register(add, family_cls) -> None:
    """Add this module's families to the registry (called once by the package)."""
    neg = "blurry, low quality"
    add(family_cls(
        name="kandinsky5-t2i", pipeline_class_name="Kandinsky5T2IPipeline",
        call_kwargs=dict(height=1024, width=1024, max_sequence_length=256, guidance_scale=3.5, negative_prompt=neg),
        guidance="sequential-unnamed",
        notes="CFG as two sequential calls (cond first) with no cache_context. The pipeline snaps height/width to "
              "its own resolutions (1024x1024 at least) and hard-codes an 8x VAE, so every call sees 64x64 image "
              "tokens. Its tokenizer is a Qwen2VLProcessor, which needs torchvision; the pipeline only calls it on "
              "text, so the Qwen2 tokenizer stands in for it. The output field is `.image` (not `.images`). The "
              "system prompt takes ~200 characters, hence max_sequence_length=256.",
        text_tokens=0, image_tokens=64 * 64, output_shape=(1, 1024, 1024, 3),
        blocks=("visual_transformer_blocks",), builder=_build_kandinsky5_t2i))
    add(family_cls(
        name="hunyuanimage", pipeline_class_name="HunyuanImagePipeline",
        call_kwargs=dict(height=32, width=32, negative_prompt=neg),
        guidance="sequential-named",
        notes="HunyuanImage 2.1: guidance by a diffusers guider (`pipe.guider`, AdaptiveProjectedMixGuidance, "
              "guidance_scale 3.5): one call per pass, in cache_context('pred_cond') then "
              "cache_context('pred_uncond'). Text is padded to 1000 Qwen tokens (plus 128 ByT5 glyph tokens).",
        text_tokens=1000, image_tokens=64, output_shape=(1, 32, 32, 3),
        blocks=("transformer_blocks", "single_transformer_blocks"), builder=_build_hunyuanimage))
    add(family_cls(
        name="ernie-image", pipeline_class_name="ErnieImagePipeline",
        call_kwargs=dict(height=32, width=32, guidance_scale=4.0, negative_prompt=neg, use_pe=False),
        guidance="batched",
        notes="CFG batched as torch.cat([latents, latents]) with [negative, positive] text, no cache_context. "
              "The blocks take sequence-first tensors [S, B, H] (S = image then text tokens). use_pe=False: no "
              "prompt-enhancer model is built.",
        text_tokens=0, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("layers",),
        builder=_build_ernie_image))
    add(family_cls(
        name="sana-sprint", pipeline_class_name="SanaSprintPipeline",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, intermediate_timesteps=None,
                         use_resolution_binning=False),
        guidance="none",
        notes="Guidance-distilled (guidance embedded), one call per step. intermediate_timesteps must be None "
              "for more than 2 steps (CLI: --set intermediate_timesteps=null). SCMScheduler's timesteps have "
              "one entry more than the steps (the loop drops the last).",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_sana_sprint))
    add(family_cls(
        name="ideogram4", pipeline_class_name="Ideogram4Pipeline",
        call_kwargs=dict(height=32, width=32, guidance_scale=4.0, guidance_schedule=None, max_sequence_length=64),
        guidance="sequential-unnamed",
        notes="Guidance on a second model: pipe.transformer runs the conditional pass on [text | image] tokens, "
              "then pipe.unconditional_transformer the unconditional pass on the image tokens alone, once per "
              "step each, no cache_context. guidance_schedule=None because the pipeline refuses both a "
              "guidance_scale and its default schedule. The text encoder is a tiny Qwen3-VL with the 36 layers "
              "the pipeline taps.",
        text_tokens=64, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("layers",), builder=_build_ideogram4))
