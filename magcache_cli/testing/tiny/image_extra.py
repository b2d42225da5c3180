"""Tiny text-to-image pipelines, continued: Sana, AuraFlow, CogView4, HiDream."""

from __future__ import annotations

from .parts import (
    _byte_level_fast_tokenizer,
    _clip_text,
    _clip_tokenizer,
    _denoiser,
    _flow_scheduler,
    _gemma_tokenizer,
    _kl_vae,
    _t5_text,
    _t5_tokenizer,
    _umt5_text,
)


def _build_sana(seed: int):
    import torch
    from diffusers import AutoencoderDC, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = Gemma2Model(Gemma2Config(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=4096,
        sliding_window=4096,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )).eval()
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
    )
    torch.manual_seed(seed)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    ).eval()
    return SanaPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=3.0),
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


def _build_hidream(seed: int):
    import torch
    from diffusers import HiDreamImagePipeline, HiDreamImageTransformer2DModel
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    tok3 = _t5_tokenizer()
    tok4 = _byte_level_fast_tokenizer(
        ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], bos="<|begin_of_text|>", eos="<|eot_id|>",
        pad="<|eot_id|>",
    )
    te = _clip_text(tok, seed, hidden=16, projection_dim=16)
    te2 = _clip_text(tok2, seed + 1, hidden=16, projection_dim=16)
    te3 = _t5_text(tok3, seed, d_model=32)
    torch.manual_seed(seed)
    te4 = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok4),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok4.bos_token_id,
        eos_token_id=tok4.eos_token_id,
        pad_token_id=tok4.pad_token_id,
        attn_implementation="eager",  # the pipeline asks for output_attentions=True
    )).eval()
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
