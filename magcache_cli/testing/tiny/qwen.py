"""Qwen-Image and Krea 2 (Qwen-VL text encoders, the Qwen-Image VAE): qwenimage, krea2."""

from __future__ import annotations

from .encoders import _qwen25vl_text, _qwen_chat_tokenizer
from .family import TinyFamily, _NEG
from .parts import _denoiser, _flow_scheduler


def _qwen_image_vae(seed: int):
    """Qwen-Image's causal video VAE (three levels, 4 latent channels), also Krea 2's."""
    import torch
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(seed)
    return AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                  latents_std=[1.0] * 4).eval()


def _qwen_image_scheduler():
    return _flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                           max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")


def _build_qwenimage(seed: int):
    import torch
    from diffusers import QwenImagePipeline, QwenImageTransformer2DModel

    tok, te = _qwen25vl_text(seed)
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
    return QwenImagePipeline(scheduler=_qwen_image_scheduler(), vae=_qwen_image_vae(seed), text_encoder=te,
                             tokenizer=tok, transformer=_denoiser(transformer, seed))


def _build_krea2(seed: int):
    import torch
    from diffusers import Krea2Pipeline, Krea2Transformer2DModel
    from transformers import Qwen3VLConfig, Qwen3VLModel

    tok = _qwen_chat_tokenizer()
    config = Qwen3VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
                     "max_position_embeddings": 1024,
                     "rope_scaling": {"rope_type": "default", "mrope_section": [1, 1, 2], "mrope_interleaved": True},
                     "pad_token_id": tok.pad_token_id},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 16,
                       "num_position_embeddings": 16, "deepstack_visual_indexes": []},
    )
    torch.manual_seed(seed)
    te = Qwen3VLModel(config).eval()
    torch.manual_seed(seed)
    transformer = Krea2Transformer2DModel(
        in_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, timestep_embed_dim=32, text_hidden_dim=16, num_text_layers=2,
        text_num_attention_heads=2, text_num_key_value_heads=2, text_intermediate_size=32,
        num_layerwise_text_blocks=1, num_refiner_text_blocks=1, axes_dims_rope=(8, 4, 4),
    )
    return Krea2Pipeline(
        scheduler=_qwen_image_scheduler(), vae=_qwen_image_vae(seed), text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed),
        text_encoder_select_layers=(1, 2),
    )


FAMILIES = [
    TinyFamily(
        name="qwenimage", pipeline_class_name="QwenImagePipeline", guidance="sequential-named",
        call_kwargs=dict(height=64, width=64, true_cfg_scale=4.0, negative_prompt=_NEG),
        notes="True CFG (true_cfg_scale>1 and a negative prompt): cond call in cache_context('cond') then uncond "
              "call in cache_context('uncond'). Text is NOT padded: the chat template minus its first 34 tokens, so "
              "cond and uncond calls see different text lengths (133 for 'a cat').",
        text_tokens=133, image_tokens=64, output_shape=(1, 64, 64, 3), blocks=("transformer_blocks",),
        builder=_build_qwenimage,
    ),
    TinyFamily(
        name="krea2", pipeline_class_name="Krea2Pipeline", guidance="sequential-unnamed",
        call_kwargs=dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG, max_sequence_length=160),
        notes="Krea 2: CFG as two sequential calls (cond, then uncond), no cache_context. text_fusion's layerwise / "
              "refiner blocks only see text; 'transformer_blocks' see cat([text, image]). The first 34 template "
              "tokens are dropped: max_sequence_length 160 keeps the prompt.",
        text_tokens=168, image_tokens=64, output_shape=(1, 64, 64, 3), blocks=("transformer_blocks",),
        builder=_build_krea2,
    ),
]
