"""Stable Diffusion 3 (MMDiT), the MMDiTs built like it (AuraFlow, HiDream) and SDXL (a UNet: the
'no transformer block stack' case): sd3, sdxl, auraflow, hidream."""

from __future__ import annotations

from .family import TinyFamily, _NEG
from .parts import (
    _byte_level_fast_tokenizer,
    _clip_text,
    _clip_tokenizer,
    _denoiser,
    _flow_scheduler,
    _kl_vae,
    _t5_text,
    _t5_tokenizer,
    _umt5_text,
)


def _build_sd3(seed: int):
    import torch
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    tok3 = _t5_tokenizer()
    te = _clip_text(tok, seed, hidden=16, projection_dim=16)
    te2 = _clip_text(tok2, seed + 1, hidden=16, projection_dim=16)
    te3 = _t5_text(tok3, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # == clip 16 + 16 == t5 d_model
        caption_projection_dim=32,
        pooled_projection_dim=32,  # clip proj 16 + 16
        out_channels=4,
        pos_embed_max_size=16,
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return StableDiffusion3Pipeline(
        transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        text_encoder_3=te3,
        tokenizer_3=tok3,
    )


def _build_sdxl(seed: int):
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    te = _clip_text(tok, seed, hidden=32)
    te2 = _clip_text(tok2, seed + 1, hidden=32, projection_dim=32)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading",
        steps_offset=1,
    )
    vae = _kl_vae(seed, latent_channels=4)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te,
        text_encoder_2=te2,
        tokenizer=tok,
        tokenizer_2=tok2,
        unet=_denoiser(unet, seed),
        scheduler=scheduler,
    )


def _build_auraflow(seed: int):
    import torch
    from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = AuraFlowTransformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=32,
        out_channels=4,
        pos_embed_max_size=64,
    )
    vae = _kl_vae(seed, latent_channels=4)
    return AuraFlowPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(),
    )


def _llama3_text(seed: int):
    """HiDream's fourth text encoder: a Llama-3 style byte-level tokenizer and a 2-layer LlamaForCausalLM."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _byte_level_fast_tokenizer(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], bos="<|begin_of_text|>",
                                     eos="<|eot_id|>", pad="<|eot_id|>")
    torch.manual_seed(seed)
    return tok, LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        attn_implementation="eager",  # the pipeline asks for output_attentions=True
    )).eval()


def _build_hidream(seed: int):
    import torch
    from diffusers import HiDreamImagePipeline, HiDreamImageTransformer2DModel

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    tok3 = _t5_tokenizer()
    te = _clip_text(tok, seed, hidden=16, projection_dim=16)
    te2 = _clip_text(tok2, seed + 1, hidden=16, projection_dim=16)
    te3 = _t5_text(tok3, seed, d_model=32)
    tok4, te4 = _llama3_text(seed)
    torch.manual_seed(seed)
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=1,  # every call sees 4096 image tokens (see FAMILIES["hidream"].notes)
        caption_channels=[32, 16],  # [t5 d_model, llama hidden]
        text_emb_dim=32,  # clip-l proj 16 + clip-g proj 16
        num_routed_experts=2,
        num_activated_experts=1,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(64, 64),
        llama_layers=[0, 1],
    )
    # No mid-block attention: the latent is 128x128 (16k tokens) here.
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8,), use_quant_conv=False,
                  use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035,
                  mid_block_add_attention=False)
    return HiDreamImagePipeline(
        scheduler=_flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        text_encoder_3=te3,
        tokenizer_3=tok3,
        text_encoder_4=te4,
        tokenizer_4=tok4,
        transformer=_denoiser(transformer, seed),
    )


FAMILIES = [
    TinyFamily(
        name="sd3", pipeline_class_name="StableDiffusion3Pipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0,
                         negative_prompt=_NEG),
        notes="CFG batched as torch.cat([negative, positive]) in one call with no cache_context "
              "(skip_guidance_layers would add a third, unbatched call). Text = 77 CLIP tokens + max_sequence_length "
              "T5 tokens.",
        text_tokens=77 + 12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_sd3,
    ),
    TinyFamily(
        name="sdxl", pipeline_class_name="StableDiffusionXLPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
        notes="UNet denoiser (no transformer): used to test the 'no transformer block stack' error. CFG batched as "
              "torch.cat([negative, positive]).",
        text_tokens=77, image_tokens=0, output_shape=(1, 32, 32, 3), blocks=(), builder=_build_sdxl,
    ),
    TinyFamily(
        name="auraflow", pipeline_class_name="AuraFlowPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5, negative_prompt=_NEG),
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. Blocks: joint_transformer_blocks "
              "then single_transformer_blocks.",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3),
        blocks=("joint_transformer_blocks", "single_transformer_blocks"), builder=_build_auraflow,
    ),
    TinyFamily(
        name="hidream", pipeline_class_name="HiDreamImagePipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0, negative_prompt=_NEG),
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. The pipeline rescales height/width "
              "to an area of (128 * vae_scale_factor)^2, so every call sees 4096 image tokens (here a 128x128 px "
              "image with a 1-level VAE) whatever height/width say; the tiny transformer has a single attention head "
              "to stay fast. The transformer takes encoder_hidden_states_t5 / encoder_hidden_states_llama3 (no "
              "encoder_hidden_states): blocks see 12 T5 + 12 Llama(last layer) + 12 Llama(layer i) = 36 text tokens; "
              "MoE feed-forward. Slowest family: ~0.75 s for 4 steps on one idle core.",
        text_tokens=36, image_tokens=4096, output_shape=(1, 128, 128, 3),
        blocks=("double_stream_blocks", "single_stream_blocks"), builder=_build_hidream,
    ),
]
