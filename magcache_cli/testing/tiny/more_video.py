"""More tiny text-to-video DiT pipelines (diffusers 0.42.1): Sana Video, SkyReels-V2, ...
Each builder returns a pipeline instance (see the package docstring)."""

from __future__ import annotations

from .parts import (
    _denoiser,
    _flow_scheduler,
    _gemma_tokenizer,
    _qwen2_tokenizer,
    _t5_tokenizer,
    _umt5_text,
)


def _wan_vae(seed: int):
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    ).eval()


def _build_sana_video(seed: int):
    import torch
    from diffusers import SanaVideoPipeline, SanaVideoTransformer3DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = Gemma2Model(Gemma2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=4096, sliding_window=4096,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = SanaVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=16,
        mlp_ratio=2.0, sample_size=8, patch_size=(1, 2, 2), rope_max_seq_len=64,
    )
    return SanaVideoPipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=8.0),
    )


def _build_skyreels_v2(seed: int):
    import torch
    from diffusers import (
        SkyReelsV2Pipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=32,
    )
    return SkyReelsV2Pipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0),
    )


def _build_anyflow(seed: int):
    import torch
    from diffusers import (
        AnyFlowPipeline,
        AnyFlowTransformer3DModel,
        FlowMapEulerDiscreteScheduler,
    )

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = AnyFlowTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=32,
    )
    return AnyFlowPipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=FlowMapEulerDiscreteScheduler(),
    )


def _build_easyanimate(seed: int):
    import torch
    from diffusers import (
        AutoencoderKLMagvit,
        EasyAnimatePipeline,
        EasyAnimateTransformer3DModel,
    )
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from .more_image import _CHATML

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = _qwen2_tokenizer(specials)
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = _CHATML
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 1024,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2, "mlp_ratio": 2},
        vocab_size=len(tok), vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    te = Qwen2VLForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLMagvit(
        in_channels=3, latent_channels=4, out_channels=3, block_out_channels=[8, 8, 8],
        down_block_types=["SpatialDownBlock3D", "SpatialTemporalDownBlock3D", "SpatialTemporalDownBlock3D"],
        up_block_types=["SpatialUpBlock3D", "SpatialTemporalUpBlock3D", "SpatialTemporalUpBlock3D"],
        layers_per_block=1, norm_num_groups=4,
    ).eval()
    torch.manual_seed(seed)
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, patch_size=2, sample_width=8,
        sample_height=8, num_layers=2, mmdit_layers=2, time_embed_dim=8, text_embed_dim=16,
    )
    return EasyAnimatePipeline(vae=vae, text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed),
                               scheduler=_flow_scheduler())


def _build_helios(seed: int):
    import torch
    from diffusers import HeliosPipeline, HeliosScheduler, HeliosTransformer3DModel

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = HeliosTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_dim=(4, 6, 6),
    )
    return HeliosPipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=HeliosScheduler(shift=1.0, stages=1, stage_range=[0, 1]),
    )


def _build_motif_video(seed: int):
    import torch
    from diffusers import MotifVideoPipeline
    from diffusers.guiders import ClassifierFreeGuidance
    from diffusers.models.transformers.transformer_motif_video import MotifVideoTransformer3DModel
    from transformers import T5Gemma2Encoder, T5Gemma2EncoderConfig, T5Gemma2TextConfig

    tok = _t5_tokenizer()
    text_config = T5Gemma2TextConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=len(tok), max_position_embeddings=128, head_dim=16,
                                     num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    text_config.dropout_rate, text_config.layer_norm_epsilon, text_config.dense_act_fn = 0.0, 1e-6, "gelu"
    torch.manual_seed(seed)
    te = T5Gemma2Encoder(T5Gemma2EncoderConfig(text_config=text_config)).eval()
    torch.manual_seed(seed)
    transformer = MotifVideoTransformer3DModel(
        in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=1,
        num_single_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1, text_embed_dim=32, rope_axes_dim=(4, 4, 4),
    )
    return MotifVideoPipeline(
        scheduler=_flow_scheduler(shift=7.0), vae=_wan_vae(seed), text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed), guider=ClassifierFreeGuidance(guidance_scale=5.0),
    )
