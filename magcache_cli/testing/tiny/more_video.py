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
    from diffusers.models.transformers.transformer_motif_video import (
        MotifVideoTransformer3DModel,
    )
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


def _build_ltx2(seed: int):
    """LTX-2 (video + audio): a Gemma 3 text encoder whose every hidden state feeds the text connectors, one
    transformer with a video and an audio stream per block, an audio VAE and a vocoder. Sizes follow diffusers'
    own LTX2 fast-test components; the Gemma 3 (text + a 1-layer SigLIP tower) is built from a config."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    tok = _gemma_tokenizer()
    tok.padding_side = "left"  # the pipeline's connectors take the padding side from the tokenizer
    config = Gemma3Config(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                         sliding_window=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        mm_tokens_per_image=4,
    )
    torch.manual_seed(seed)
    te = Gemma3ForConditionalGeneration(config).eval()
    width = config.text_config.hidden_size
    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=width, rope_double_precision=False, rope_type="split",
    )
    torch.manual_seed(seed)
    connectors = LTX2TextConnectors(  # 4 heads x 8 = the text width (32)
        caption_channels=width, text_proj_in_factor=config.text_config.num_hidden_layers + 1,
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split",
    ).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), decoder_block_out_channels=(8,),
        layers_per_block=(1,), decoder_layers_per_block=(1, 1), spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,), decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False,
    ).eval()
    torch.manual_seed(seed)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8,
    ).eval()
    torch.manual_seed(seed)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=32,
        out_channels=2, upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2], resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1, output_sampling_rate=16000,
    ).eval()
    return LTX2Pipeline(
        scheduler=_flow_scheduler(), vae=vae, audio_vae=audio_vae, text_encoder=te, tokenizer=tok,
        connectors=connectors, transformer=_denoiser(transformer, seed), vocoder=vocoder,
    )
