#!/usr/bin/env python
"""Train the bundled offline demo model: a tiny Stable-Diffusion-3 pipeline for handwritten digits.

    .venv/bin/python scripts/train_demo_model.py          # ~15 CPU-min on one thread, writes magcache_cli/demo_model
    .venv/bin/python scripts/train_demo_model.py --vae-steps 100 --steps 300 --out /tmp/quick   # smoke run
    .venv/bin/python scripts/train_demo_model.py --eval-only --eval-seeds 10 --eval-guidance 4 1 2 7 \
        --grid docs/img/demo-grid.png                      # re-measure adherence / redraw the docs grid

What it builds (all standard diffusers/transformers classes; ``DiffusionPipeline.from_pretrained(out)`` loads it):

* data: scikit-learn's 1797 8x8 digits, bilinearly upsampled to 32x32, in [-1, 1], grayscale repeated to RGB
  (``magcache_cli.digits.load_digit_images``);
* ``AutoencoderKL`` 32x32x3 -> 8x8x4 latents, trained first (MSE + 1e-3 KL, random +-2 px shifts);
  ``shift_factor``/``scaling_factor`` are set from the latent mean/std;
* two tiny ``CLIPTextModelWithProjection`` (2 layers, width 32) + ``CLIPTokenizer`` with a fixed character-level
  vocabulary (byte-level alphabet, no merges), trained jointly with the transformer;
* a 4.6k-parameter placeholder ``T5EncoderModel`` that outputs exact zeros (see ``build_zero_t5``): identical to
  running the SD3 pipeline with ``text_encoder_3=None``, but the saved folder loads without extra arguments;
* ``SD3Transformer2DModel`` (8x8x4 latents, patch 2 -> 16 image tokens, 5 joint blocks, 4 heads x 16), trained with
  the rectified-flow objective exactly as ``FlowMatchEulerDiscreteScheduler`` (shift 1.0) samples:
  x_t = (1 - s) x0 + s noise, target noise - x0, timestep = 1000 s, s ~ logit-normal; prompts
  "a handwritten digit <word>", 10% empty prompts for classifier-free guidance; EMA weights are saved.

Speed trick (exact): without T5 the SD3 pipeline appends ``max_sequence_length`` (256) all-zero "T5" tokens. They
carry no position embedding, so they stay identical through every block: N identical keys in attention are the
same as one key with ``log N`` added to its logit. Training therefore uses one zero token plus that additive bias
(checked against the plain 256-token model before training), which makes each step ~7x cheaper.

Deterministic for a given seed and thread count (CPU, ``torch.use_deterministic_algorithms``); prints its runtime.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from magcache_cli.testing import digits  # noqa: E402

T5_TOKENS = 256  # the pipeline's default max_sequence_length; the zero "T5" tokens the model sees at inference
CLIP_MAX_LEN = 32  # character-level: "a handwritten digit seven" is 25 characters + BOS/EOS
LATENT_CHANNELS = 4
IMAGE_SIZE = 32


# --------------------------------------------------------------------------------------------- components


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet (the mapping the CLIP tokenizer's ByteLevel pre-tokenizer uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def char_vocab() -> dict[str, int]:
    """Character-level CLIP vocabulary: 256 byte symbols, the same with the end-of-word marker, BOS, EOS."""
    b2u = _bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    vocab.update({b2u[b] + "</w>": 256 + b for b in range(256)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return vocab


def build_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=char_vocab(), merges=[], model_max_length=CLIP_MAX_LEN)


def build_text_encoder(seed: int, hidden: int = 32, proj: int = 32, layers: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=514,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        projection_dim=proj,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LEN,
        hidden_act="gelu",
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(cfg)


def build_vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
        scaling_factor=1.0,
        shift_factor=0.0,
    )


def build_transformer(seed: int, layers: int, heads: int, head_dim: int, patch: int, text_dim: int, pooled_dim: int):
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    latent = IMAGE_SIZE // 4
    return SD3Transformer2DModel(
        sample_size=latent,
        patch_size=patch,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=text_dim,
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=pooled_dim,
        pos_embed_max_size=2 * latent // patch,
        qk_norm="rms_norm",
    )


def build_zero_t5(text_dim: int, seed: int):
    """A 4.6k-parameter T5 encoder whose final RMSNorm weight is 0, so it outputs exact zeros.

    ``StableDiffusion3Pipeline`` without T5 feeds 256 all-zero "T5" tokens to the transformer. diffusers 0.42
    cannot load a saved pipeline whose ``text_encoder_3`` is null unless the caller passes
    ``text_encoder_3=None, tokenizer_3=None``; this placeholder produces the very same zeros, so
    ``DiffusionPipeline.from_pretrained(path)`` works without extra arguments, and passing the two ``None``
    arguments gives bit-identical images.
    """
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    tok = T5Tokenizer(extra_ids=0, model_max_length=T5_TOKENS)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=text_dim,
        d_kv=8,
        d_ff=16,
        num_layers=1,
        num_heads=1,
        relative_attention_num_buckets=8,
        feed_forward_proj="relu",
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    enc = T5EncoderModel(cfg)
    with torch.no_grad():
        enc.encoder.final_layer_norm.weight.zero_()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.eval(), tok


def assemble_pipeline(transformer, vae, te1, tok1, te2, tok2, te3, tok3, shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=te1,
        tokenizer=tok1,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        text_encoder_3=te3,
        tokenizer_3=tok3,
    )


# --------------------------------------------------------------------------------- exact zero-token trick


class SinkJointAttnProcessor:
    """``JointAttnProcessor2_0`` where the last context token stands for ``n_copies`` identical tokens."""

    def __init__(self, n_copies: int):
        self.log_n = math.log(n_copies)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        b = hidden_states.shape[0]
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = k.shape[-1] // attn.heads

        def heads(x):
            return x.view(b, -1, attn.heads, head_dim).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        cq = heads(attn.add_q_proj(encoder_hidden_states))
        ck = heads(attn.add_k_proj(encoder_hidden_states))
        cv = heads(attn.add_v_proj(encoder_hidden_states))
        if attn.norm_added_q is not None:
            cq = attn.norm_added_q(cq)
        if attn.norm_added_k is not None:
            ck = attn.norm_added_k(ck)
        q, k, v = torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2)
        mask = torch.zeros(1, 1, 1, k.shape[2], dtype=q.dtype)
        mask[..., -1] = self.log_n
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * head_dim)
        n_img = hidden_states.shape[1]
        hs, ehs = out[:, :n_img], out[:, n_img:]
        if not attn.context_pre_only:
            ehs = attn.to_add_out(ehs)
        hs = attn.to_out[1](attn.to_out[0](hs))
        return hs, ehs


def check_sink_equivalence(pipe, transformer) -> float:
    """Max abs difference between the 256-zero-token model and the 1-token + log(256) bias model."""
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    g = torch.Generator().manual_seed(1)
    prompts = [digits.prompt_for(3), ""]
    with torch.no_grad():
        full, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False, max_sequence_length=T5_TOKENS)
        short, _, _, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False, max_sequence_length=1)
        x = torch.randn(2, LATENT_CHANNELS, IMAGE_SIZE // 4, IMAGE_SIZE // 4, generator=g)
        t = torch.tensor([700.0, 300.0])
        transformer.set_attn_processor(JointAttnProcessor2_0())
        a = transformer(x, encoder_hidden_states=full, pooled_projections=pooled, timestep=t, return_dict=False)[0]
        transformer.set_attn_processor(SinkJointAttnProcessor(T5_TOKENS))
        b = transformer(x, encoder_hidden_states=short, pooled_projections=pooled, timestep=t, return_dict=False)[0]
        transformer.set_attn_processor(JointAttnProcessor2_0())
    return float((a - b).abs().max())


# ------------------------------------------------------------------------------------------------ data


def digit_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits.load_digit_images(IMAGE_SIZE)
    x = torch.from_numpy(np.array(images))[:, None] * 2.0 - 1.0  # [N,1,32,32] in [-1,1]
    return x.repeat(1, 3, 1, 1).contiguous(), torch.from_numpy(np.array(labels))


def random_shift(x: torch.Tensor, g: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels (background -1 fills in)."""
    if max_shift <= 0:
        return x
    n = x.shape[0]
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


# ------------------------------------------------------------------------------------------------ training


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def train_vae(vae, x: torch.Tensor, steps: int, batch: int, lr: float, kl_weight: float, seed: int, log) -> None:
    g = torch.Generator().manual_seed(seed + 11)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    t0 = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, 50)
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        xb = random_shift(x[idx], g, 2)
        post = vae.encode(xb).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        mse = F.mse_loss(rec, xb)
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = mse + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-12))
            log(f"vae step {step:5d}/{steps} mse {mse.item():.5f} (psnr {psnr:.1f} dB) kl {kl.item():.3f} [{time.perf_counter() - t0:.0f}s]")
    vae.eval()


@torch.no_grad()
def encode_latents(vae, x: torch.Tensor, shifts: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior mean/std of every image, plus ``shifts`` randomly shifted copies of the dataset."""
    g = torch.Generator().manual_seed(seed + 23)
    xs = [x] + [random_shift(x, g, 1) for _ in range(shifts)]
    means, stds = [], []
    for xx in xs:
        for i in range(0, xx.shape[0], 256):
            post = vae.encode(xx[i : i + 256]).latent_dist
            means.append(post.mean)
            stds.append(post.std)
    return torch.cat(means), torch.cat(stds), torch.tensor(len(xs))


@torch.no_grad()
def vae_recon_psnr(vae, x: torch.Tensor) -> float:
    rec = torch.cat([vae.decode(vae.encode(x[i : i + 256]).latent_dist.mean).sample for i in range(0, len(x), 256)])
    mse = F.mse_loss(rec.clamp(-1, 1), x).item()
    return 10 * math.log10(4.0 / mse)


def train_transformer(pipe, ema, lat_mean, lat_std, labels, args, log) -> None:
    transformer, te1, te2 = pipe.transformer, pipe.text_encoder, pipe.text_encoder_2
    g = torch.Generator().manual_seed(args.seed + 37)
    prompts = list(digits.DIGIT_PROMPTS) + [""]  # index 10 = empty prompt (CFG dropout)
    sf, sh = pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor
    params = [
        {"params": list(transformer.parameters()), "lr": args.lr, "weight_decay": 0.01},
        {"params": list(te1.parameters()) + list(te2.parameters()), "lr": args.lr * args.text_lr_mult, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(params, betas=(0.9, 0.99))
    base_lrs = [p["lr"] for p in params]
    transformer.set_attn_processor(SinkJointAttnProcessor(T5_TOKENS))
    transformer.train(), te1.train(), te2.train()
    ema_models = [ema.transformer, ema.text_encoder, ema.text_encoder_2]
    live_models = [transformer, te1, te2]
    ema_pairs = [(pe, p) for em, lm in zip(ema_models, live_models) for pe, p in zip(em.parameters(), lm.parameters())]
    t0 = time.perf_counter()
    running = None
    step = 0
    deadline = t0 + args.minutes * 60 if args.minutes else None
    for step in range(args.steps):
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = lr_at(step, args.steps, base, args.warmup)
        idx = torch.randint(0, lat_mean.shape[0], (args.batch,), generator=g)
        z = lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=g)
        x0 = (z - sh) * sf
        y = labels[idx % labels.shape[0]].clone()
        drop = torch.rand(args.batch, generator=g) < args.cfg_dropout
        y[drop] = 10
        # rectified flow, SD3 style: logit-normal sigma, x_t = (1 - s) x0 + s noise, target v = noise - x0
        sigma = torch.sigmoid(torch.randn(args.batch, generator=g))
        noise = torch.randn(x0.shape, generator=g)
        s = sigma.view(-1, 1, 1, 1)
        xt = (1.0 - s) * x0 + s * noise
        target = noise - x0
        pe, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False, max_sequence_length=1)
        pred = transformer(xt, encoder_hidden_states=pe[y], pooled_projections=pooled[y], timestep=sigma * 1000.0, return_dict=False)[0]
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in params for p in grp["params"]], 1.0)
        opt.step()
        decay = min(args.ema, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for pe_, p in ema_pairs:
                pe_.lerp_(p, 1.0 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps - 1:
            log(f"dit step {step:5d}/{args.steps} loss {running:.4f} lr {opt.param_groups[0]['lr']:.2e} [{time.perf_counter() - t0:.0f}s]")
        if deadline and time.perf_counter() > deadline:
            log(f"time budget of {args.minutes} min reached after {step + 1} steps")
            break
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    transformer.set_attn_processor(JointAttnProcessor2_0())
    for m in live_models + ema_models:
        m.eval()


# ------------------------------------------------------------------------------------------------ evaluation


def generate(pipe, digit_list: list[int], seeds: list[int], steps: int, guidance: float):
    """One batched call: image i shows ``digit_list[i]`` from ``torch.Generator().manual_seed(seeds[i])``."""
    prompts = [digits.prompt_for(d) for d in digit_list]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, height=IMAGE_SIZE, width=IMAGE_SIZE, generator=gens).images


def save_grid(images, rows: int, cols: int, path: Path, scale: int = 4) -> None:
    """Images in row-major order -> one PNG, each image upscaled ``scale``x (nearest) with a 2 px gutter."""
    from PIL import Image

    w, h = images[0].size
    gut = 2
    grid = Image.new("RGB", (cols * (w * scale + gut) + gut, rows * (h * scale + gut) + gut), (90, 90, 90))
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(im.resize((w * scale, h * scale), Image.NEAREST), (gut + c * (w * scale + gut), gut + r * (h * scale + gut)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)


def evaluate(out: Path, seeds: int, steps: int, guidances: list[float], log, grid: Path | None = None) -> dict:
    """Adherence of ``seeds`` x 10 digits (seed s -> generator seed s for every digit) at each guidance scale."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(out))
    pipe.set_progress_bar_config(disable=True)
    results = {}
    digit_list = [d for _ in range(seeds) for d in range(10)]
    seed_list = [s for s in range(seeds) for _ in range(10)]
    for guidance in guidances:
        t0 = time.perf_counter()
        images = []
        for i in range(0, len(digit_list), 20):
            images += generate(pipe, digit_list[i : i + 20], seed_list[i : i + 20], steps, guidance)
        preds, targets = digits.classify(images), np.array(digit_list)
        acc = float((preds == targets).mean())
        per = [round(float((preds[targets == d] == d).mean()), 2) for d in range(10)]
        log(f"eval: {seeds} seeds x 10 digits, {steps} steps, cfg {guidance}: adherence {acc:.3f} per digit {per} [{time.perf_counter() - t0:.0f}s]")
        results[guidance] = acc
        if grid is not None and guidance == guidances[0]:
            save_grid(images[:40], rows=4, cols=10, path=grid)
            log(f"grid (rows: seeds 0-3, columns: digits 0-9, cfg {guidance}) -> {grid}")
    t0 = time.perf_counter()
    generate(pipe, [7], [0], steps, guidances[0])
    t1 = time.perf_counter()
    generate(pipe, list(range(10)), [0] * 10, steps, guidances[0])
    t2 = time.perf_counter()
    log(f"timing ({torch.get_num_threads()} thread): one prompt {t1 - t0:.2f}s, ten prompts in one call {t2 - t1:.2f}s ({steps} steps, cfg {guidances[0]})")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "magcache_cli" / "demo_model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vae-steps", type=int, default=300)
    ap.add_argument("--vae-batch", type=int, default=64)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=1500, help="transformer training steps")
    ap.add_argument("--minutes", type=float, default=None, help="optional wall-clock cap for transformer training")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--text-lr-mult", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--shift", type=float, default=1.0, help="FlowMatchEulerDiscreteScheduler shift")
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--latent-shifts", type=int, default=2, help="shifted copies of the data encoded for the DiT")
    ap.add_argument("--eval-seeds", type=int, default=4, help="seeds per digit for the final adherence check (0: skip)")
    ap.add_argument("--eval-guidance", type=float, nargs="+", default=[4.0], help="guidance scales to evaluate (first: grid)")
    ap.add_argument("--grid", type=Path, default=None, help="write a 4 seeds x 10 digits PNG grid here")
    ap.add_argument("--eval-only", action="store_true", help="skip training; evaluate the pipeline at --out")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    if args.eval_only:
        evaluate(args.out, args.eval_seeds, 28, args.eval_guidance, log, args.grid)
        return 0

    x, labels = digit_tensors()
    log(f"data: {tuple(x.shape)} images, labels {labels.bincount().tolist()}")

    # 1. VAE
    vae = build_vae(args.seed)
    train_vae(vae, x, args.vae_steps, args.vae_batch, args.vae_lr, args.kl_weight, args.seed, log)
    lat_mean, lat_std, copies = encode_latents(vae, x, args.latent_shifts, args.seed)
    shift_factor = float(lat_mean.mean())
    scaling_factor = float(1.0 / (lat_mean - shift_factor).std())
    vae.register_to_config(scaling_factor=round(scaling_factor, 5), shift_factor=round(shift_factor, 5))
    log(
        f"vae: recon psnr {vae_recon_psnr(vae, x):.2f} dB, latents {tuple(lat_mean.shape)} ({int(copies)} copies), "
        f"shift_factor {vae.config.shift_factor} scaling_factor {vae.config.scaling_factor}, "
        f"posterior std {lat_std.mean():.4f}"
    )
    for p in vae.parameters():
        p.requires_grad_(False)

    # 2. text encoders + transformer
    te1, te2 = build_text_encoder(args.seed + 1), build_text_encoder(args.seed + 2)
    text_dim = te1.config.hidden_size + te2.config.hidden_size
    pooled_dim = te1.config.projection_dim + te2.config.projection_dim
    transformer = build_transformer(args.seed + 3, args.layers, args.heads, args.head_dim, args.patch, text_dim, pooled_dim)
    te3, tok3 = build_zero_t5(text_dim, args.seed + 4)
    pipe = assemble_pipeline(transformer, vae, te1, build_tokenizer(), te2, build_tokenizer(), te3, tok3, args.shift)
    diff = check_sink_equivalence(pipe, transformer)
    log(f"zero-token trick: max |256 tokens - 1 token + log bias| = {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("the one-token training shortcut does not match the pipeline's 256 zero tokens")
    n_params = {
        n: sum(p.numel() for p in m.parameters())
        for n, m in [("transformer", transformer), ("vae", vae), ("text_encoder", te1), ("text_encoder_2", te2), ("text_encoder_3", te3)]
    }
    log(f"parameters: {n_params} total {sum(n_params.values())}")

    ema = copy.deepcopy(pipe)
    for m in (ema.transformer, ema.text_encoder, ema.text_encoder_2):
        for p in m.parameters():
            p.requires_grad_(False)
    train_transformer(pipe, ema, lat_mean, lat_std, labels, args, log)

    # 3. save (EMA weights)
    args.out.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(str(args.out), safe_serialization=True)
    # also write the classic vocab.json/merges.txt so older (slow) CLIPTokenizer versions load the same vocab
    for sub in ("tokenizer", "tokenizer_2"):
        (args.out / sub / "vocab.json").write_text(json.dumps(char_vocab(), ensure_ascii=False))
        (args.out / sub / "merges.txt").write_text("#version: 0.2\n")
    # "T5TokenizerFast" names the same class in transformers 5 and the tokenizer.json-backed one in 4.x
    index_path = args.out / "model_index.json"
    index = json.loads(index_path.read_text())
    index["tokenizer_3"] = ["transformers", "T5TokenizerFast"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    train_s = time.perf_counter() - t_start
    log(f"saved to {args.out} ({size / 1e6:.2f} MB); training time {train_s / 60:.1f} min")

    if args.eval_seeds:
        evaluate(args.out, args.eval_seeds, 28, args.eval_guidance, log, args.grid)
    log(
        f"total runtime {(time.perf_counter() - t_start) / 60:.1f} min wall, {time.process_time() / 60:.1f} min CPU "
        f"(training {train_s / 60:.1f} min wall)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
