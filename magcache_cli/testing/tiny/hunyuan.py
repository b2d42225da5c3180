"""Tencent Hunyuan, image and video: hunyuandit, hunyuanimage, hunyuanvideo (and hunyuanvideo-truecfg, the
same model with true CFG), hunyuanvideo15."""

from __future__ import annotations

from .encoders import _CHAT, _byt5, _qwen25vl_text
from .family import TinyFamily, _DOUBLE_SINGLE, _NEG
from .parts import (
    _clip_text,
    _clip_tokenizer,
    _denoiser,
    _flow_scheduler,
    _kl_vae,
    _llama_tokenizer,
    _t5_text,
    _t5_tokenizer,
)


def _build_hunyuandit(seed: int):
    import torch
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel, BertTokenizer

    chars = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(i) for i in range(33, 127)]
    tok = BertTokenizer(vocab={c: i for i, c in enumerate(chars)}, do_lower_case=False, model_max_length=77)
    torch.manual_seed(seed)
    te = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, max_position_embeddings=128,
                              pad_token_id=tok.pad_token_id)).eval()
    tok2 = _t5_tokenizer(model_max_length=256)
    te2 = _t5_text(tok2, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = HunyuanDiT2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2, sample_size=8,
        hidden_size=16, num_layers=4, mlp_ratio=2.0, learn_sigma=True, cross_attention_dim=16,
        cross_attention_dim_t5=32, pooled_projection_dim=16, text_len=77, text_len_t5=256,
    )
    # The pipeline hard-codes a VAE scale factor of 8 for its rotary grid: the VAE needs 4 levels.
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8, 8, 8, 8))
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.03, beta_schedule="scaled_linear",
                              clip_sample=False, prediction_type="v_prediction", steps_offset=1,
                              timestep_spacing="leading")
    return HunyuanDiTPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, text_encoder_2=te2,
        tokenizer_2=tok2,
    )


def _build_hunyuanimage(seed: int):
    import torch
    from diffusers import (
        AdaptiveProjectedMixGuidance,
        AutoencoderKLHunyuanImage,
        HunyuanImagePipeline,
        HunyuanImageTransformer2DModel,
    )

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


_HUNYUAN_TEMPLATE = {"template": "{}", "crop_start": 0}


def _llama_text(tok, seed: int):
    """HunyuanVideo's Llama text encoder, 3 layers: the pipeline reads hidden_states[-3]."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    return LlamaModel(LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )).eval()


def _hunyuanvideo_vae(seed: int):
    """A 4-level causal 3D VAE: 8x spatial and 4x temporal compression."""
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(seed)
    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        act_fn="silu", norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8,
        temporal_compression_ratio=4, mid_block_add_attention=True,
    ).eval()


def _build_hunyuanvideo(seed: int):
    import torch
    from diffusers import HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

    tok = _llama_tokenizer()
    tok2 = _clip_tokenizer()
    te = _llama_text(tok, seed)
    te2 = _clip_text(tok2, seed, hidden=8)
    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(4, 6, 6),
    )
    return HunyuanVideoPipeline(text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed),
                                vae=_hunyuanvideo_vae(seed), scheduler=_flow_scheduler(shift=7.0), text_encoder_2=te2,
                                tokenizer_2=tok2)


def _build_hunyuanvideo15(seed: int):
    import torch
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        ClassifierFreeGuidance,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )

    tok, te = _qwen25vl_text(seed, layers=3, model="text")  # the pipeline reads hidden_states[-3]
    tok.chat_template = _CHAT
    tok2, te2 = _byt5(seed)
    torch.manual_seed(seed)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=16, text_embed_2_dim=16, image_embed_dim=16,
        rope_axes_dim=(4, 6, 6), target_size=32, task_type="t2v",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo15(
        latent_channels=4, block_out_channels=(32, 32, 32), layers_per_block=1, spatial_compression_ratio=4,
        temporal_compression_ratio=2,
    ).eval()
    return HunyuanVideo15Pipeline(text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed), vae=vae,
                                  scheduler=_flow_scheduler(shift=3.0), text_encoder_2=te2, tokenizer_2=tok2,
                                  guider=ClassifierFreeGuidance(guidance_scale=6.0))


FAMILIES = [
    TinyFamily(
        name="hunyuandit", pipeline_class_name="HunyuanDiTPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, guidance_scale=5.0, negative_prompt=_NEG,
                         use_resolution_binning=False),
        notes="HunyuanDiT: CFG batched as cat([negative, positive]), no cache_context. One 'blocks' list whose "
              "second half takes long skip connections from the first (U-ViT style); text = 77 BERT + 256 T5 tokens "
              "by cross-attention. No safety checker. The pipeline assumes a VAE scale factor of 8 (4-level VAE).",
        text_tokens=77, image_tokens=16, output_shape=(1, 64, 64, 3), blocks=("blocks",), builder=_build_hunyuandit,
    ),
    TinyFamily(
        name="hunyuanimage", pipeline_class_name="HunyuanImagePipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, negative_prompt=_NEG),
        notes="HunyuanImage 2.1: guidance by a diffusers guider (`pipe.guider`, AdaptiveProjectedMixGuidance, "
              "guidance_scale 3.5): one call per pass, in cache_context('pred_cond') then "
              "cache_context('pred_uncond'). Text is padded to 1000 Qwen tokens (plus 128 ByT5 glyph tokens).",
        text_tokens=1000, image_tokens=64, output_shape=(1, 32, 32, 3),
        blocks=("transformer_blocks", "single_transformer_blocks"), builder=_build_hunyuanimage,
    ),
    TinyFamily(
        name="hunyuanvideo", pipeline_class_name="HunyuanVideoPipeline", guidance="none",
        call_kwargs=dict(height=32, width=32, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                         prompt_template=_HUNYUAN_TEMPLATE),
        notes="Guidance-distilled: guidance_scale is embedded (guidance_embeds=True), one call per step in "
              "cache_context('cond'). True CFG needs true_cfg_scale>1 AND a negative prompt (see "
              "'hunyuanvideo-truecfg'). Blocks: transformer_blocks then single_transformer_blocks; the "
              "context_embedder.token_refiner has its own refiner_blocks. prompt_template is a bare '{}' because the "
              "default Llama chat template is ~500 characters (= tokens here) and would truncate the prompt away.",
        text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 32, 32, 3), blocks=_DOUBLE_SINGLE,
        builder=_build_hunyuanvideo,
    ),
    TinyFamily(
        name="hunyuanvideo-truecfg", pipeline_class_name="HunyuanVideoPipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                         prompt_template=_HUNYUAN_TEMPLATE, negative_prompt=_NEG, true_cfg_scale=4.0),
        notes="Same model as 'hunyuanvideo' with true CFG: cond call in cache_context('cond') then uncond call in "
              "cache_context('uncond').",
        text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 32, 32, 3), blocks=_DOUBLE_SINGLE,
        builder=_build_hunyuanvideo,
    ),
    TinyFamily(
        name="hunyuanvideo15", pipeline_class_name="HunyuanVideo15Pipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, num_frames=5, negative_prompt=_NEG),
        notes="HunyuanVideo 1.5 text-to-video: guidance by a diffusers guider (`pipe.guider`, "
              "ClassifierFreeGuidance, guidance_scale 6): cache_context('pred_cond') then "
              "cache_context('pred_uncond'). Text is padded to 1000 Qwen tokens, plus 256 ByT5 tokens and 729 (zero) "
              "image-embedding tokens, so this family is slow for its size.",
        text_tokens=1000, image_tokens=3 * 8 * 8, output_shape=(1, 5, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_hunyuanvideo15,
    ),
]
