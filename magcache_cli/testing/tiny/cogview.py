"""CogView and CogVideoX (Zhipu): cogview3plus, cogview4, cogvideox."""

from __future__ import annotations

from .family import TinyFamily, _IMG32, _NEG
from .parts import _byte_level_fast_tokenizer, _denoiser, _flow_scheduler, _kl_vae, _t5_text, _t5_tokenizer


def _build_cogview3plus(seed: int):
    import torch
    from diffusers import (
        CogVideoXDDIMScheduler,
        CogView3PlusPipeline,
        CogView3PlusTransformer2DModel,
    )

    tok = _t5_tokenizer(model_max_length=224)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = CogView3PlusTransformer2DModel(
        patch_size=2, in_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2, out_channels=4,
        text_embed_dim=32, time_embed_dim=8, condition_dim=4, pos_embed_max_size=32, sample_size=16,
    )
    scheduler = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                       rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False,
                                       set_alpha_to_one=True)
    return CogView3PlusPipeline(tokenizer=tok, text_encoder=te, vae=_kl_vae(seed, latent_channels=4),
                                transformer=_denoiser(transformer, seed), scheduler=scheduler)


def _build_cogview4(seed: int):
    import torch
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel
    from transformers import GlmConfig, GlmModel

    tok = _byte_level_fast_tokenizer(["<|endoftext|>", "[gMASK]", "<sop>"], bos=None, eos="<|endoftext|>",
                                     pad="<|endoftext|>")
    tok.padding_side = "left"
    torch.manual_seed(seed)
    te = GlmModel(GlmConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,  # the pipeline reads hidden_states[-2]
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        text_embed_dim=16,
        time_embed_dim=8,
        condition_dim=4,
        pos_embed_max_size=32,
        sample_size=16,
        rope_axes_dim=(64, 64),
    )
    vae = _kl_vae(seed, latent_channels=4)
    scheduler = _flow_scheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256,
                                use_dynamic_shifting=True, time_shift_type="linear")
    return CogView4Pipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
                            scheduler=scheduler)


def _build_cogvideox(seed: int):
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    tok = _t5_tokenizer(model_max_length=226)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=32,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    ).eval()
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        timestep_spacing="trailing", snr_shift_scale=3.0,
    )
    return CogVideoXPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed), scheduler=scheduler
    )


FAMILIES = [
    TinyFamily(
        name="cogview3plus", pipeline_class_name="CogView3PlusPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
        notes="CogView3-Plus: CFG batched as cat([negative, positive]), no cache_context; text padded to 224 T5 "
              "tokens.",
        text_tokens=224, image_tokens=64, output_shape=_IMG32, blocks=("transformer_blocks",),
        builder=_build_cogview3plus,
    ),
    TinyFamily(
        name="cogview4", pipeline_class_name="CogView4Pipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
        notes="CFG as a cond call in cache_context('cond') then an uncond call in cache_context('uncond'). Text is "
              "padded (on the left) to a multiple of 16 only, so cond ('a cat': 16) and uncond (32) text lengths "
              "differ.",
        text_tokens=16, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_cogview4,
    ),
    TinyFamily(
        name="cogvideox", pipeline_class_name="CogVideoXPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, num_frames=9, max_sequence_length=16, guidance_scale=6.0,
                         negative_prompt=_NEG),
        notes="CFG batched as torch.cat([negative, positive]) in ONE call, wrapped in cache_context('cond_uncond'). "
              "max_sequence_length must equal the transformer's max_text_seq_length (16).",
        text_tokens=16, image_tokens=3 * 4 * 4, output_shape=(1, 9, 64, 64, 3), blocks=("transformer_blocks",),
        builder=_build_cogvideox,
    ),
]
