"""Train the demo model's style LoRA: bold digits (`magcache_cli/demo_model/lora/bold-digits.safetensors`).

The data are the demo's digits with their strokes thickened (a 3×3 max filter on the 32×32 images, white ink on
black), the objective the demo's own rectified flow (scripts/train_demo_model.py), trained on a rank-4 peft LoRA
over the transformer's attention and feed-forward projections only (text encoders and VAE frozen). Seed 0, one
thread, a few minutes on a CPU. Saved with `StableDiffusion3Pipeline.save_lora_weights`, so
`pipe.load_lora_weights(...)` and `magcache ... --lora builtin:demo-bold` load it.

    python scripts/train_demo_lora.py [--steps 400] [--out magcache_cli/demo_model/lora]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_demo_model import T5_TOKENS, SinkJointAttnProcessor, digit_tensors, lr_at  # noqa: E402

from magcache_cli.testing import digits  # noqa: E402

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
           "ff.net.0.proj", "ff.net.2"]


def bold(x: torch.Tensor) -> torch.Tensor:
    """Thicker strokes: a 3×3 max filter (the ink is the bright value)."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "magcache_cli" / "demo_model" / "lora")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from diffusers import StableDiffusion3Pipeline
    from diffusers.models.attention_processor import JointAttnProcessor2_0
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = StableDiffusion3Pipeline.from_pretrained(digits.DEMO_MODEL_DIR)
    for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae):
        m.requires_grad_(False)
    x, labels = digit_tensors()
    with torch.no_grad():
        lat = torch.cat([pipe.vae.encode(bold(x[i:i + 256])).latent_dist.mean for i in range(0, len(x), 256)])
        sf, sh = pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor
        x0_all = (lat - sh) * sf
        prompts = list(digits.DIGIT_PROMPTS) + [""]
        pe, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False,
                                              max_sequence_length=1)
    t = pipe.transformer
    t.requires_grad_(False)
    t.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=TARGETS, init_lora_weights=True))
    t.set_attn_processor(SinkJointAttnProcessor(T5_TOKENS))
    params = [p for p in t.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 5)
    t.train()
    t0, running = time.perf_counter(), None
    for step in range(args.steps):
        opt.param_groups[0]["lr"] = lr_at(step, args.steps, args.lr, 20)
        idx = torch.randint(0, x0_all.shape[0], (args.batch,), generator=g)
        x0 = x0_all[idx]
        y = labels[idx].clone()
        y[torch.rand(args.batch, generator=g) < 0.1] = 10
        sigma = torch.sigmoid(torch.randn(args.batch, generator=g))
        noise = torch.randn(x0.shape, generator=g)
        s = sigma.view(-1, 1, 1, 1)
        pred = t((1 - s) * x0 + s * noise, encoder_hidden_states=pe[y], pooled_projections=pooled[y],
                 timestep=sigma * 1000.0, return_dict=False)[0]
        loss = F.mse_loss(pred, noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}/{args.steps} loss {running:.4f} [{time.perf_counter() - t0:.0f}s]", flush=True)
    t.set_attn_processor(JointAttnProcessor2_0())
    t.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    StableDiffusion3Pipeline.save_lora_weights(args.out, transformer_lora_layers=get_peft_model_state_dict(t),
                                               weight_name="bold-digits.safetensors")
    print(f"wrote {args.out / 'bold-digits.safetensors'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
