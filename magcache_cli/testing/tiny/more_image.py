"""More tiny text-to-image DiT pipelines (diffusers 0.42.1): FLUX.2, FLUX.2 Klein, Z-Image, Bria,
HunyuanDiT, PixArt-alpha, ... Each builder returns a pipeline instance (see the package docstring)."""

from __future__ import annotations

from .parts import (
    _byte_level_fast_tokenizer,
    _denoiser,
    _flow_scheduler,
    _gemma_tokenizer,
    _kl_vae,
    _qwen2_tokenizer,
    _t5_text,
    _t5_tokenizer,
)

# A ChatML template (Qwen style), enough for `apply_chat_template(..., add_generation_prompt=True)`.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _qwen_chat_tokenizer():
    tok = _qwen2_tokenizer(_QWEN_SPECIALS)
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = _CHATML
    return tok


def _qwen3(tok, seed: int, hidden: int = 16, layers: int = 2):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    return Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )).eval()


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


def _build_flux2_klein(seed: int):
    from diffusers import Flux2KleinPipeline

    tok = _qwen_chat_tokenizer()
    te = _qwen3(tok, seed)
    return Flux2KleinPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=_flux2_vae(seed), text_encoder=te, tokenizer=tok,
        transformer=_flux2_transformer(seed, joint_dim=16, guidance_embeds=False),
    )


def _build_zimage(seed: int):
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel

    tok = _qwen_chat_tokenizer()
    te = _qwen3(tok, seed)
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, cap_feat_dim=16, axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.1159, scaling_factor=0.3611)
    return ZImagePipeline(
        scheduler=_flow_scheduler(shift=3.0), vae=vae, text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed),
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


def _build_pixart_alpha(seed: int):
    import torch
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtTransformer2DModel,
    )

    tok = _t5_tokenizer(model_max_length=120)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=32, sample_size=16, patch_size=2, caption_channels=32, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, num_embeds_ada_norm=1000, attention_type="default",
        use_additional_conditions=False,
    )
    return PixArtAlphaPipeline(
        tokenizer=tok, text_encoder=te, vae=_kl_vae(seed, latent_channels=4),
        transformer=_denoiser(transformer, seed), scheduler=DPMSolverMultistepScheduler(),
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


def _build_cogview3plus(seed: int):
    import torch
    from diffusers import (
        CogVideoXDDIMScheduler,
        CogView3PlusPipeline,
        CogView3PlusTransformer2DModel,
    )

    tok = _t5_tokenizer(model_max_length=224)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = CogView3PlusTransformer2DModel(
        patch_size=2, in_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2, out_channels=4,
        text_embed_dim=32, time_embed_dim=8, condition_dim=4, pos_embed_max_size=32, sample_size=16,
    )
    scheduler = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                       rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False,
                                       set_alpha_to_one=True)
    return CogView3PlusPipeline(tokenizer=tok, text_encoder=te, vae=_kl_vae(seed, latent_channels=4),
                                transformer=_denoiser(transformer, seed), scheduler=scheduler)


def _build_lumina_next(seed: int):
    import torch
    from diffusers import LuminaNextDiT2DModel, LuminaPipeline
    from transformers import GemmaConfig, GemmaModel

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = GemmaModel(GemmaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = LuminaNextDiT2DModel(
        sample_size=16, patch_size=2, in_channels=4, hidden_size=32, num_layers=2, num_attention_heads=2,
        num_kv_heads=1, multiple_of=16, learn_sigma=True, qk_norm=True, cross_attention_dim=16,
    )
    # LuminaPipeline hard-codes vae_scale_factor = 8: the VAE needs 4 levels.
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8, 8, 8, 8))
    return LuminaPipeline(transformer=_denoiser(transformer, seed), scheduler=_flow_scheduler(), vae=vae,
                          text_encoder=te, tokenizer=tok)


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


def _build_krea2(seed: int):
    import torch
    from diffusers import AutoencoderKLQwenImage, Krea2Pipeline, Krea2Transformer2DModel
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
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4).eval()
    return Krea2Pipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                  max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential"),
        vae=vae, text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed),
        text_encoder_select_layers=(1, 2),
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
