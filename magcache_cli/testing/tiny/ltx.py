"""LTX-Video and LTX-2 (video + audio): ltx, ltx2."""

from __future__ import annotations

from .family import TinyFamily, _NEG
from .parts import _denoiser, _flow_scheduler, _gemma_tokenizer, _t5_text, _t5_tokenizer


def _build_ltx(seed: int):
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()
    return LTXPipeline(
        scheduler=_flow_scheduler(), vae=vae, text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _gemma3_text(seed: int):
    """A Gemma tokenizer (left padding: the pipeline's connectors take the side from it) and a tiny Gemma 3 (text
    model plus a 1-layer SigLIP tower, built from a config) whose every hidden state feeds the connectors."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    tok = _gemma_tokenizer()
    tok.padding_side = "left"
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
    return tok, Gemma3ForConditionalGeneration(config).eval()


def _ltx2_connectors(seed: int, width: int, text_layers: int):
    """The text connectors: 4 heads x 8 = the text width (32), one layer per stream."""
    import torch
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    torch.manual_seed(seed)
    return LTX2TextConnectors(
        caption_channels=width, text_proj_in_factor=text_layers + 1,
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split",
    ).eval()


def _ltx2_video_vae(seed: int):
    import torch
    from diffusers import AutoencoderKLLTX2Video

    torch.manual_seed(seed)
    return AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), decoder_block_out_channels=(8,),
        layers_per_block=(1,), decoder_layers_per_block=(1, 1), spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,), decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False,
    ).eval()


def _ltx2_audio(seed: int):
    """The audio VAE and the vocoder that turns its mel spectrogram into a waveform."""
    import torch
    from diffusers import AutoencoderKLLTX2Audio
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

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
    return audio_vae, vocoder


def _build_ltx2(seed: int):
    """LTX-2 (video + audio): a Gemma 3 text encoder whose every hidden state feeds the text connectors, one
    transformer with a video and an audio stream per block, an audio VAE and a vocoder. Sizes follow diffusers'
    own LTX2 fast-test components."""
    import torch
    from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

    tok, te = _gemma3_text(seed)
    width = te.config.text_config.hidden_size
    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=width, rope_double_precision=False, rope_type="split",
    )
    connectors = _ltx2_connectors(seed, width, te.config.text_config.num_hidden_layers)
    vae = _ltx2_video_vae(seed)
    audio_vae, vocoder = _ltx2_audio(seed)
    return LTX2Pipeline(
        scheduler=_flow_scheduler(), vae=vae, audio_vae=audio_vae, text_encoder=te, tokenizer=tok,
        connectors=connectors, transformer=_denoiser(transformer, seed), vocoder=vocoder,
    )


FAMILIES = [
    TinyFamily(
        name="ltx", pipeline_class_name="LTXPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, num_frames=9, max_sequence_length=16, guidance_scale=3.0,
                         negative_prompt=_NEG),
        notes="LTX-Video. CFG batched as torch.cat([negative, positive]) in one call wrapped in "
              "cache_context('cond_uncond').",
        text_tokens=16, image_tokens=3 * 8 * 8, output_shape=(1, 9, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_ltx,
    ),
    TinyFamily(
        name="ltx2", pipeline_class_name="LTX2Pipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, num_frames=5, frame_rate=25.0, max_sequence_length=16,
                         guidance_scale=4.0, negative_prompt=_NEG, stg_scale=0.0, audio_stg_scale=0.0,
                         modality_scale=1.0, audio_modality_scale=1.0, guidance_rescale=0.0,
                         audio_guidance_rescale=0.0),
        notes="LTX-2 (video + audio): CFG batched as cat([negative, positive]) in one call inside "
              "cache_context('cond_uncond'); each block carries a video and an audio stream and returns (video, "
              "audio); the pipeline deep-copies its scheduler for the audio latents. Guidance is mixed in x0 space "
              "and turned back into a velocity. Spatio-temporal (STG) and modality-isolation guidance (extra calls "
              "in 'uncond_stg' / 'uncond_modality', on by default) and guidance rescale are switched off: the "
              "LTX-2.0 layout. Gemma 3 text encoder (a tiny text model plus a 1-layer SigLIP tower, built from a "
              "config); the output also holds audio. Only the video stream's residual is cached: on a skipped pass "
              "the audio tokens pass through the stack unchanged (docs/families.md, note 6).",
        text_tokens=16, image_tokens=768, output_shape=(1, 5, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_ltx2,
    ),
]
