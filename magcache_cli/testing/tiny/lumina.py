"""Lumina and Z-Image (refiner blocks before one joint stack): lumina2, lumina-next, zimage."""

from __future__ import annotations

from .encoders import _gemma2_text, _qwen3, _qwen_chat_tokenizer
from .family import TinyFamily, _IMG32, _NEG
from .parts import _denoiser, _flow_scheduler, _gemma_tokenizer, _kl_vae


def _build_lumina2(seed: int):
    import torch
    from diffusers import Lumina2Pipeline, Lumina2Transformer2DModel

    tok = _gemma_tokenizer()
    te = _gemma2_text(tok, seed, layers=2, max_positions=1024, sliding_window=512)  # the pipeline reads [-2]
    torch.manual_seed(seed)
    transformer = Lumina2Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=(8, 4, 4),
        axes_lens=(300, 64, 64),
        cap_feat_dim=16,
    )
    # Lumina2Pipeline hard-codes vae_scale_factor = 8: the VAE needs 4 levels (3 downsamples).
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8, 8, 8, 8), use_quant_conv=False,
                  use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return Lumina2Pipeline(
        transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
    )


def _build_lumina_next(seed: int):
    import torch
    from diffusers import LuminaNextDiT2DModel, LuminaPipeline
    from transformers import GemmaConfig, GemmaModel

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = GemmaModel(GemmaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = LuminaNextDiT2DModel(
        sample_size=16, patch_size=2, in_channels=4, hidden_size=32, num_layers=2, num_attention_heads=2,
        num_kv_heads=1, multiple_of=16, learn_sigma=True, qk_norm=True, cross_attention_dim=16,
    )
    with torch.no_grad():  # torch.empty (other bytes in every process): zeroed, so _denoiser re-draws it
        transformer.pad_token.zero_()
    # LuminaPipeline hard-codes vae_scale_factor = 8: the VAE needs 4 levels.
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8, 8, 8, 8))
    return LuminaPipeline(transformer=_denoiser(transformer, seed), scheduler=_flow_scheduler(), vae=vae,
                          text_encoder=te, tokenizer=tok)


def _build_zimage(seed: int):
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel

    tok = _qwen_chat_tokenizer()
    te = _qwen3(tok, seed)
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, cap_feat_dim=16, axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.1159, scaling_factor=0.3611)
    return ZImagePipeline(
        scheduler=_flow_scheduler(shift=3.0), vae=vae, text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


FAMILIES = [
    TinyFamily(
        name="lumina2", pipeline_class_name="Lumina2Pipeline", guidance="sequential-unnamed",
        call_kwargs=dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG, max_sequence_length=256),
        notes="CFG as two sequential calls (cond, then uncond) with NO cache_context. With cfg_trunc_ratio<1 the "
              "uncond call is dropped on late steps (calls per step vary). The pipeline prepends a ~170-character "
              "system prompt, so max_sequence_length stays at 256 to keep the user prompt. noise_refiner / "
              "context_refiner run before the main 'layers' on image-only / text-only tokens; 'layers' see the joint "
              "sequence.",
        text_tokens=256, image_tokens=16, output_shape=(1, 64, 64, 3), blocks=("layers",), builder=_build_lumina2,
    ),
    TinyFamily(
        name="lumina-next", pipeline_class_name="LuminaPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG,
                         max_sequence_length=32),
        notes="Lumina-Next: CFG batched as cat([positive, negative]) - the conditional half FIRST - in one call, no "
              "cache_context. The pipeline assumes a VAE scale factor of 8 (4-level VAE).",
        text_tokens=8, image_tokens=16, output_shape=(1, 64, 64, 3), blocks=("layers",), builder=_build_lumina_next,
    ),
    TinyFamily(
        name="zimage", pipeline_class_name="ZImagePipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=16, guidance_scale=4.0, negative_prompt=_NEG),
        notes="Z-Image: CFG batched as [positive, negative] - the conditional half FIRST - in one call, no "
              "cache_context; latents and captions go in as lists. noise_refiner (image tokens, timestep-modulated) "
              "and context_refiner (caption) run first; 'layers' see cat([image, caption]) (the image tokens lead).",
        text_tokens=32, image_tokens=64, output_shape=_IMG32, blocks=("noise_refiner", "layers"), builder=_build_zimage,
    ),
]
