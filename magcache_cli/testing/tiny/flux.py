"""FLUX and the models built on its double + single stream transformer: flux (and flux-nocfg, the same
model without a negative prompt), chroma, flux2, flux2-klein, ovis-image, bria, bria-fibo."""

from __future__ import annotations

from .encoders import _qwen3, _qwen_chat_tokenizer
from .family import TinyFamily, _DOUBLE_SINGLE, _IMG32, _NEG
from .parts import (
    _byte_level_fast_tokenizer,
    _clip_text,
    _clip_tokenizer,
    _denoiser,
    _flow_scheduler,
    _kl_vae,
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


def _flux2_vae(seed: int):
    import torch
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    return AutoencoderKLFlux2(
        sample_size=32, in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        use_quant_conv=False, use_post_quant_conv=False,
    ).eval()


def _flux2_transformer(seed: int, joint_dim: int, guidance_embeds: bool):
    import torch
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(seed)
    return _denoiser(Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=joint_dim, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=guidance_embeds,
    ), seed)


_MISTRAL_CHAT = (
    "{{ bos_token }}{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ c['text'] }}[/SYSTEM_PROMPT]"
    "{% else %}[INST]{{ c['text'] }}[/INST]{% endif %}{% endif %}{% endfor %}{% endfor %}"
)


def _build_flux2(seed: int):
    import torch
    from diffusers import Flux2Pipeline
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    specials = ["<unk>", "<s>", "</s>", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]",
                "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "<pad>"]
    # The ~1,000-character system message is one token, so max_sequence_length keeps the prompt.
    tok = _byte_level_fast_tokenizer(specials + [SYSTEM_MESSAGE], bos="<s>", eos="</s>", pad="<pad>")
    # The real `tokenizer` component is a PixtralProcessor, which needs torchvision (see the module notes):
    # for text-only messages it hands apply_chat_template to its tokenizer, which stands in for it here.
    tok.chat_template = _MISTRAL_CHAT
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "[IMG]")}
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 32,
                     "max_position_embeddings": 1024, "num_attention_heads": 2, "num_hidden_layers": 2,
                     "num_key_value_heads": 2, "head_dim": 8, "sliding_window": None,
                     "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"]},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 32, "image_size": 16, "patch_size": 4, "num_channels": 3,
                       "head_dim": 8},
        image_token_index=ids["[IMG]"], spatial_merge_size=1, vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    te = Mistral3ForConditionalGeneration(config).eval()
    return Flux2Pipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=_flux2_vae(seed), text_encoder=te, tokenizer=tok,
        transformer=_flux2_transformer(seed, joint_dim=16 * 2, guidance_embeds=True),
    )


def _build_flux2_klein(seed: int):
    from diffusers import Flux2KleinPipeline

    tok = _qwen_chat_tokenizer()
    te = _qwen3(tok, seed)
    return Flux2KleinPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=_flux2_vae(seed), text_encoder=te, tokenizer=tok,
        transformer=_flux2_transformer(seed, joint_dim=16, guidance_embeds=False),
    )


def _build_ovis_image(seed: int):
    import torch
    from diffusers import OvisImagePipeline, OvisImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tok = _qwen_chat_tokenizer()
    torch.manual_seed(seed)
    te = Qwen3Model(Qwen3Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = OvisImageTransformer2DModel(
        patch_size=1, in_channels=16, out_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(4, 4, 8),
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return OvisImagePipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae, text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed),
    )


def _build_bria(seed: int):
    import torch
    from diffusers import BriaPipeline, BriaTransformer2DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = BriaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[0, 8, 8],
    )
    vae = _kl_vae(seed, latent_channels=4, shift_factor=0.0, scaling_factor=1.0)
    return BriaPipeline(
        transformer=_denoiser(transformer, seed), scheduler=_flow_scheduler(), vae=vae, text_encoder=te,
        tokenizer=tok,
    )


def _build_bria_fibo(seed: int):
    import torch
    from diffusers import AutoencoderKLWan, BriaFiboPipeline, BriaFiboTransformer2DModel
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    tok = _byte_level_fast_tokenizer(["<|begin_of_text|>", "<|end_of_text|>"], bos="<|begin_of_text|>",
                                     eos="<|end_of_text|>", pad="<|end_of_text|>")
    torch.manual_seed(seed)
    te = SmolLM3ForCausalLM(SmolLM3Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = BriaFiboTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[0, 8, 8], text_encoder_dim=16,
    )
    torch.manual_seed(seed)
    # A Wan 2.2-style VAE (patchified, 16x): the pipeline hard-codes vae_scale_factor = 16.
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], is_residual=True, patch_size=2,
                           in_channels=12, out_channels=12, latents_mean=[0.0] * 16, latents_std=[1.0] * 16).eval()
    return BriaFiboPipeline(transformer=_denoiser(transformer, seed), scheduler=_flow_scheduler(), vae=vae,
                            text_encoder=te, tokenizer=tok)


FAMILIES = [
    TinyFamily(
        name="flux", pipeline_class_name="FluxPipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5,
                         negative_prompt=_NEG, true_cfg_scale=4.0),
        notes="True CFG (true_cfg_scale>1 and a negative prompt): two transformer calls per step, "
              "cache_context('cond') then cache_context('uncond').",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE, builder=_build_flux,
    ),
    TinyFamily(
        name="flux-nocfg", pipeline_class_name="FluxPipeline", guidance="none",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5),
        notes="Same model as 'flux' without a negative prompt: one call per step, still inside cache_context('cond').",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE, builder=_build_flux,
    ),
    TinyFamily(
        name="chroma", pipeline_class_name="ChromaPipeline", guidance="sequential-unnamed",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.0,
                         negative_prompt=_NEG),
        notes="CFG as two sequential transformer calls (cond first, then uncond) with no cache_context.",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE, builder=_build_chroma,
    ),
    TinyFamily(
        name="flux2", pipeline_class_name="Flux2Pipeline", guidance="none",
        call_kwargs=dict(height=32, width=32, max_sequence_length=16, guidance_scale=4.0,
                         text_encoder_out_layers=(1, 2)),
        notes="FLUX.2 [dev]: guidance-distilled (guidance_scale is embedded), one call per step, no cache_context. "
              "Its real `tokenizer` component is a PixtralProcessor, which needs torchvision: a plain tokenizer with "
              "the same chat template stands in (for text-only prompts the processor hands apply_chat_template to "
              "its tokenizer). The ~1,000-character system message is one token so the prompt survives "
              "max_sequence_length. text_encoder_out_layers=(1, 2): the tiny Mistral3 has 2 layers.",
        text_tokens=16, image_tokens=64, output_shape=_IMG32, blocks=_DOUBLE_SINGLE, builder=_build_flux2,
    ),
    TinyFamily(
        name="flux2-klein", pipeline_class_name="Flux2KleinPipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, max_sequence_length=16, guidance_scale=4.0,
                         text_encoder_out_layers=(1,)),
        notes="FLUX.2 [klein] (not distilled): CFG as a cond call in cache_context('cond') then an uncond call "
              "(empty prompt) in cache_context('uncond'). Qwen3 text encoder behind a ChatML template.",
        text_tokens=16, image_tokens=64, output_shape=_IMG32, blocks=_DOUBLE_SINGLE, builder=_build_flux2_klein,
    ),
    TinyFamily(
        name="ovis-image", pipeline_class_name="OvisImagePipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG, max_sequence_length=256),
        notes="Ovis-Image: CFG as cond / uncond calls in cache_context('cond') / ('uncond'). The pipeline prefixes a "
              "~150-character system prompt: max_sequence_length 256 keeps the user prompt.",
        text_tokens=256, image_tokens=64, output_shape=_IMG32, blocks=_DOUBLE_SINGLE, builder=_build_ovis_image,
    ),
    TinyFamily(
        name="bria", pipeline_class_name="BriaPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0, negative_prompt=_NEG),
        notes="Bria 3.2: CFG batched as cat([negative, positive]), no cache_context; Flux-style double and single "
              "blocks on separate text / image streams.",
        text_tokens=12, image_tokens=64, output_shape=_IMG32, blocks=_DOUBLE_SINGLE, builder=_build_bria,
    ),
    TinyFamily(
        name="bria-fibo", pipeline_class_name="BriaFiboPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, guidance_scale=5.0, negative_prompt=_NEG),
        notes="Bria FIBO: CFG batched as cat([negative, positive]), no cache_context; SmolLM3 text encoder whose "
              "every hidden layer conditions one block; Wan 2.2-style patchified VAE (the pipeline hard-codes a "
              "scale factor of 16). A non-empty negative prompt: an empty one is encoded as token id 128000.",
        text_tokens=20, image_tokens=16, output_shape=(1, 64, 64, 3), blocks=_DOUBLE_SINGLE, builder=_build_bria_fibo,
    ),
]
