"""Shared pieces of the tiny pipelines: character-level tokenizers of the real classes, tiny text
encoders, a tiny VAE and scheduler, and the re-randomisation of all-zero denoiser weights."""

from __future__ import annotations

import zlib

# --------------------------------------------------------------------------------------------
# Tokenizers: real classes, in-memory character-level vocabularies
# --------------------------------------------------------------------------------------------

_PRINTABLE = [chr(i) for i in range(33, 127)]  # visible ASCII, no space


def _byte_level_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _clip_tokenizer(model_max_length: int = 77):
    from transformers import CLIPTokenizer

    alphabet = _byte_level_alphabet()
    tokens = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [c + "</w>" for c in alphabet]
    vocab = {t: i for i, t in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _t5_tokenizer(model_max_length: int = 512):
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in _PRINTABLE]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def _qwen2_tokenizer(extra_special: list[str], model_max_length: int = 4096):
    from transformers import Qwen2TokenizerFast

    vocab = {t: i for i, t in enumerate(_byte_level_alphabet())}
    tok = Qwen2TokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)
    tok.add_special_tokens({"additional_special_tokens": extra_special})
    return tok


def _byte_level_fast_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str,
                               model_max_length: int = 4096):
    """A generic `PreTrainedTokenizerFast` (tiktoken-style byte-level BPE, as used by GLM-4 and Llama-3)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    alphabet = _byte_level_alphabet()
    vocab = {t: i for i, t in enumerate(alphabet + specials)}
    backend = Tokenizer(BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    if bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    kw = dict(eos_token=eos, pad_token=pad, model_max_length=model_max_length)
    if bos is not None:
        kw["bos_token"] = bos
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kw)
    tok.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in (bos, eos, pad)]})
    return tok


def _byte_fallback_vocab(specials: list[str]) -> dict[str, int]:
    tokens = specials + [f"<0x{i:02X}>" for i in range(256)] + ["\u2581"] + _PRINTABLE
    return {t: i for i, t in enumerate(tokens)}


def _gemma_tokenizer(model_max_length: int = 4096):
    from transformers import GemmaTokenizerFast

    vocab = _byte_fallback_vocab(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    return GemmaTokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)


def _llama_tokenizer(model_max_length: int = 4096):
    from transformers import LlamaTokenizerFast

    vocab = _byte_fallback_vocab(["<unk>", "<s>", "</s>"])
    tok = LlamaTokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)
    tok.pad_token = "<unk>"
    return tok


# --------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------


def _clip_text(tokenizer, seed: int, hidden: int = 32, projection_dim: int | None = None):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection_dim or hidden,
        hidden_act="gelu",
    )
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection_dim is not None else CLIPTextModel
    return cls(cfg).eval()


def _t5_config(tokenizer, d_model: int):
    return dict(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def _t5_text(tokenizer, seed: int, d_model: int = 32):
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(**_t5_config(tokenizer, d_model))).eval()


def _umt5_text(tokenizer, seed: int, d_model: int = 32):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    return UMT5EncoderModel(UMT5Config(**_t5_config(tokenizer, d_model))).eval()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _unzero(module, seed: int, std: float = 0.1) -> int:
    """Re-draw every all-zero parameter tensor of `module` deterministically. Returns how many."""
    import torch

    count = 0
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.numel() == 0 or torch.count_nonzero(param).item() != 0:
                continue
            gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32).to(param.dtype) * std)
            count += 1
    return count


def _denoiser(module, seed: int):
    _unzero(module, seed)
    return module.eval()


def _kl_vae(seed: int, latent_channels: int = 4, block_out_channels=(8, 16), **kw):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        **kw,
    ).eval()


def _flow_scheduler(**kw):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**kw)


def _wan_vae(seed: int):
    """Wan's causal 3D VAE, 4 latent channels (8x spatial, 4x temporal): wan and the models built on it."""
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    ).eval()
