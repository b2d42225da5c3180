"""Text-to-image DiTs of their own design: kandinsky5-t2i, ernie-image, ideogram4 (guidance on a second model),
prx."""

from __future__ import annotations

from .encoders import _CHAT, _QWEN_VL_SPECIALS, _mistral3_text, _qwen25vl_text
from .family import TinyFamily, _IMG32, _NEG
from .parts import (
    _clip_text,
    _clip_tokenizer,
    _denoiser,
    _flow_scheduler,
    _gemma_tokenizer,
    _kl_vae,
    _llama_tokenizer,
    _qwen2_tokenizer,
)


def _build_kandinsky5_t2i(seed: int):
    import torch
    from diffusers import Kandinsky5T2IPipeline, Kandinsky5Transformer3DModel

    # The pipeline's tokenizer is a Qwen2VLProcessor, whose video processor needs torchvision; the
    # pipeline only calls it on text (images=None, videos=None), which the processor hands to its
    # Qwen2 tokenizer, so the tokenizer itself stands in for it.
    tok, te = _qwen25vl_text(seed)
    tok2 = _clip_tokenizer()
    te2 = _clip_text(tok2, seed, hidden=16)
    torch.manual_seed(seed)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4, in_text_dim=16, in_text_dim2=16, time_dim=16, out_visual_dim=4, patch_size=(1, 2, 2),
        model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 4, 8),
    )
    # the pipeline hard-codes an 8x VAE and only generates at its own resolutions (1024x1024 at least)
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(4, 4, 4, 4))
    return Kandinsky5T2IPipeline(transformer=_denoiser(transformer, seed), vae=vae, text_encoder=te, tokenizer=tok,
                                 text_encoder_2=te2, tokenizer_2=tok2, scheduler=_flow_scheduler(shift=3.0))


def _flux2_vae(seed: int, latent_channels: int = 4):
    import torch
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    return AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4,
        sample_size=32,
    ).eval()


def _build_ernie_image(seed: int):
    import torch
    from diffusers import ErnieImagePipeline, ErnieImageTransformer2DModel

    tok = _llama_tokenizer()
    te = _mistral3_text(seed, tok)
    torch.manual_seed(seed)
    transformer = ErnieImageTransformer2DModel(
        hidden_size=32, num_attention_heads=2, num_layers=2, ffn_hidden_size=64, in_channels=16, out_channels=16,
        text_in_dim=16, rope_axes_dim=(4, 6, 6),
    )
    return ErnieImagePipeline(transformer=_denoiser(transformer, seed), vae=_flux2_vae(seed), text_encoder=te,
                              tokenizer=tok, scheduler=_flow_scheduler(shift=3.0))


def _build_ideogram4(seed: int):
    import torch
    from diffusers import Ideogram4Pipeline, Ideogram4Transformer2DModel
    from diffusers.pipelines.ideogram4.pipeline_ideogram4 import (
        QWEN3_VL_ACTIVATION_LAYERS,
    )
    from transformers import Qwen3VLConfig, Qwen3VLModel

    tok = _qwen2_tokenizer(_QWEN_VL_SPECIALS)
    tok.chat_template = _CHAT
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_VL_SPECIALS}
    hidden = 8
    layers = max(QWEN3_VL_ACTIVATION_LAYERS) + 1  # the pipeline taps 13 fixed layers of Qwen3-VL (36 deep)
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=16, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=4, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                          "mrope_section": [1, 0, 1], "mrope_interleaved": True},
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=hidden,
                           deepstack_visual_indexes=[]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    te = Qwen3VLModel(config).eval()

    def transformer(k: int):
        torch.manual_seed(seed + k)
        model = Ideogram4Transformer2DModel(
            in_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2, intermediate_size=64,
            adaln_dim=16, llm_features_dim=hidden * len(QWEN3_VL_ACTIVATION_LAYERS), mrope_section=(4, 2, 2),
        )
        return _denoiser(model, seed + k)

    return Ideogram4Pipeline(scheduler=_flow_scheduler(), vae=_flux2_vae(seed), text_encoder=te, tokenizer=tok,
                             transformer=transformer(0), unconditional_transformer=transformer(1))


def _build_prx(seed: int):
    import torch
    from diffusers import PRXPipeline, PRXTransformer2DModel
    from transformers import T5GemmaConfig, T5GemmaEncoderModel

    tok = _gemma_tokenizer(model_max_length=16)  # the pipeline pads every prompt to this
    torch.manual_seed(seed)
    cfg = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, sliding_window=1024)
    te = T5GemmaEncoderModel(T5GemmaConfig(encoder=cfg, decoder=cfg, vocab_size=len(tok),
                                           is_encoder_decoder=False)).eval()
    torch.manual_seed(seed)
    transformer = PRXTransformer2DModel(
        in_channels=4, patch_size=2, context_in_dim=16, hidden_size=32, mlp_ratio=2.0, num_heads=2, depth=2,
        axes_dim=[8, 8],
    )
    return PRXPipeline(transformer=_denoiser(transformer, seed), scheduler=_flow_scheduler(), text_encoder=te,
                       tokenizer=tok, vae=_kl_vae(seed, latent_channels=4, shift_factor=0.0), default_sample_size=32)


FAMILIES = [
    TinyFamily(
        name="kandinsky5-t2i", pipeline_class_name="Kandinsky5T2IPipeline", guidance="sequential-unnamed",
        call_kwargs=dict(height=1024, width=1024, max_sequence_length=256, guidance_scale=3.5, negative_prompt=_NEG),
        notes="CFG as two sequential calls (cond first) with no cache_context. The pipeline snaps height/width to "
              "its own resolutions (1024x1024 at least) and hard-codes an 8x VAE, so every call sees 64x64 image "
              "tokens. Its tokenizer is a Qwen2VLProcessor, which needs torchvision; the pipeline only calls it on "
              "text, so the Qwen2 tokenizer stands in for it. The output field is `.image` (not `.images`). The "
              "system prompt takes ~200 characters, hence max_sequence_length=256.",
        text_tokens=0, image_tokens=64 * 64, output_shape=(1, 1024, 1024, 3), blocks=("visual_transformer_blocks",),
        builder=_build_kandinsky5_t2i,
    ),
    TinyFamily(
        name="ernie-image", pipeline_class_name="ErnieImagePipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, guidance_scale=4.0, negative_prompt=_NEG, use_pe=False),
        notes="CFG batched as torch.cat([latents, latents]) with [negative, positive] text, no cache_context. The "
              "blocks take sequence-first tensors [S, B, H] (S = image then text tokens). use_pe=False: no "
              "prompt-enhancer model is built.",
        text_tokens=0, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("layers",), builder=_build_ernie_image,
    ),
    TinyFamily(
        name="ideogram4", pipeline_class_name="Ideogram4Pipeline", guidance="sequential-unnamed",
        call_kwargs=dict(height=32, width=32, guidance_scale=4.0, guidance_schedule=None, max_sequence_length=64),
        notes="Guidance on a second model: pipe.transformer runs the conditional pass on [text | image] tokens, then "
              "pipe.unconditional_transformer the unconditional pass on the image tokens alone, once per step each, "
              "no cache_context. guidance_schedule=None because the pipeline refuses both a guidance_scale and its "
              "default schedule. The text encoder is a tiny Qwen3-VL with the 36 layers the pipeline taps.",
        text_tokens=64, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("layers",), builder=_build_ideogram4,
    ),
    TinyFamily(
        name="prx", pipeline_class_name="PRXPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG, use_resolution_binning=False),
        notes="PRX (Photoroom): CFG batched as cat([negative, positive]), no cache_context; T5Gemma encoder; prompts "
              "padded to the tokenizer's model_max_length (16).",
        text_tokens=16, image_tokens=64, output_shape=_IMG32, blocks=("blocks",), builder=_build_prx,
    ),
]
