"""Tiny text-to-image pipelines (each builder returns a pipeline instance)."""

from __future__ import annotations

from .parts import (
    _clip_text,
    _clip_tokenizer,
    _denoiser,
    _flow_scheduler,
    _gemma_tokenizer,
    _kl_vae,
    _qwen2_tokenizer,
    _t5_text,
    _t5_tokenizer,
)


def _build_flux(seed: int):
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel

    tok = _clip_tokenizer()
    tok2 = _t5_tokenizer()
    te = _clip_text(tok, seed, hidden=32)
    te2 = _t5_text(tok2, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=False,
        axes_dims_rope=(4, 4, 8),
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return FluxPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        transformer=_denoiser(transformer, seed),
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


def _build_chroma(seed: int):
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 8),
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return ChromaPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _build_qwenimage(seed: int):
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = _qwen2_tokenizer(specials)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "max_position_embeddings": 2048,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        vocab_size=len(tok),
        hidden_size=16,
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    te = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,  # 4 latent channels packed 2x2
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    return QwenImagePipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                  base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
                                  time_shift_type="exponential"),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _build_lumina2(seed: int):
    import torch
    from diffusers import Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = Gemma2Model(Gemma2Config(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,  # the pipeline reads hidden_states[-2]
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        sliding_window=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )).eval()
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


def _build_pixart(seed: int):
    import torch
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    tok = _t5_tokenizer(model_max_length=300)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,  # learned sigma, like the real model
        num_layers=2,
        cross_attention_dim=32,
        sample_size=16,
        patch_size=2,
        caption_channels=32,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        num_embeds_ada_norm=1000,
        attention_type="default",
        interpolation_scale=None,
    )
    vae = _kl_vae(seed, latent_channels=4)
    return PixArtSigmaPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=DPMSolverMultistepScheduler(),
    )


