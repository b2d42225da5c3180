"""Tiny text encoders built from LLM / VLM configs that several families share (Qwen2.5-VL, Qwen3, Mistral 3,
ByT5) and the chat templates their tokenizers carry. Each returns eval-mode modules seeded with
`torch.manual_seed(seed)` right before construction."""

from __future__ import annotations

from .parts import _qwen2_tokenizer, _t5_config

_QWEN_VL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                     "<|image_pad|>", "<|video_pad|>"]


def _qwen25vl_text(seed: int, hidden: int = 16, layers: int = 2, model: str = "conditional"):
    """A character-level Qwen2 tokenizer and a tiny Qwen2.5-VL (the `qwenimage` family's recipe)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLTextModel,
    )

    tok = _qwen2_tokenizer(_QWEN_VL_SPECIALS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_VL_SPECIALS}
    text = {
        "vocab_size": len(tok), "hidden_size": hidden, "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 2,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0, "max_position_embeddings": 2048, "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": hidden},
        vocab_size=len(tok), hidden_size=hidden,
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    if model == "text":
        return tok, Qwen2_5_VLTextModel(config.text_config).eval()
    return tok, Qwen2_5_VLForConditionalGeneration(config).eval()


# A Qwen chat template whose message content may be a string or a list of text parts.
_CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
         "{% else %}{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# A ChatML template (Qwen style), enough for `apply_chat_template(..., add_generation_prompt=True)`.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _qwen_chat_tokenizer():
    tok = _qwen2_tokenizer(_CHATML_SPECIALS)
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


def _gemma2_text(tok, seed: int, layers: int, max_positions: int, sliding_window: int):
    """A tiny Gemma 2 (hidden 16, 2 heads, 1 kv head) over a Gemma tokenizer: lumina2, sana, sana-video."""
    import torch
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    return Gemma2Model(Gemma2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=max_positions, sliding_window=sliding_window,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )).eval()


def _mistral3_text(seed: int, tok, hidden: int = 16):
    import torch
    from transformers import Mistral3Config, Mistral3Model

    config = Mistral3Config(
        text_config=dict(model_type="mistral", vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        vision_config=dict(model_type="pixtral", hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                           num_attention_heads=2, head_dim=8, image_size=32, patch_size=8),
    )
    torch.manual_seed(seed)
    return Mistral3Model(config).eval()


def _byt5(seed: int, d_model: int = 16):
    """ByT5's byte tokenizer (no vocabulary file) and a tiny T5 encoder over its 384 ids."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tok = ByT5Tokenizer()
    torch.manual_seed(seed)
    return tok, T5EncoderModel(T5Config(**_t5_config(tok, d_model))).eval()
