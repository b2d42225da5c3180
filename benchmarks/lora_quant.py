#!/usr/bin/env python
"""LoRAs and quantization on the bundled demo model: how far they move the curves, and what a profile
calibrated on the base weights costs in quality against one calibrated on the set-up itself.

    .venv/bin/python benchmarks/lora_quant.py          # writes benchmarks/results/lora_quant.{json,md}

Set-ups: the base weights (float32); the bold-digits LoRA (`builtin:demo-bold`, scripts/train_demo_lora.py) at
scales 0.25, 0.5 and 1.0; torchao int8 weight-only and quanto int8 (float32 compute); bfloat16 and torchao
float8 weight-only (bfloat16 compute: torchao's float8 does not run with float32 activations on a CPU).

For each set-up: a calibration on the calibration prompts (even digits) × seeds 0, 1, its curve distance to
the base profile (`profile.diff.curve_difference`, max over branches of the mean and the max |Δ ratio| per
step), and the distance `magcache profile verify` sees (the base profile against one re-measured prompt ×
seed, the first calibration pair). Then, on held-out prompts (digits 1, 3, 5, 7) × seed 100, the uncached
set-up is the reference; per pass budget and per profile (the base one, the set-up's own), the rule runs at
K 4, R 0.2 and the smallest threshold whose predicted schedule costs at most that many transformer passes
(`profile.plan.predict`), and the mean PSNR against the reference is measured (`quality.compare.cached`).
The demo runs at about 1.4 s per image on a busy 2-core CPU, which sets these small sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from magcache_cli import api  # noqa: E402
from magcache_cli.core.rule import SkipSettings  # noqa: E402
from magcache_cli.profile.diff import curve_difference  # noqa: E402
from magcache_cli.profile.plan import predict  # noqa: E402
from magcache_cli.quality import compare as quality  # noqa: E402
from magcache_cli.runner.loading import DEMO_CALL, LoadOptions, load_pipeline, quiet_libraries  # noqa: E402
from magcache_cli.runner.setups import ModelSetup  # noqa: E402
from magcache_cli.testing.digits import DIGIT_PROMPTS  # noqa: E402

CAL_PROMPTS, CAL_SEEDS = list(DIGIT_PROMPTS[0:8:2]), [0, 1]
EVAL_PROMPTS, EVAL_SEEDS = list(DIGIT_PROMPTS[1:8:2]), [100]
BUDGETS = (18, 14)  # of 28 passes per run
THRESHOLDS = [round(0.005 * 1.15 ** i, 5) for i in range(60)]  # 0.005 … ~18
SETUPS = [  # name, dtype, --lora, --quantize
    ("base", "float32", [], []),
    ("LoRA bold x0.25", "float32", ["builtin:demo-bold:0.25"], []),
    ("LoRA bold x0.5", "float32", ["builtin:demo-bold:0.5"], []),
    ("LoRA bold x1.0", "float32", ["builtin:demo-bold:1.0"], []),
    ("torchao int8wo", "float32", [], ["torchao:int8wo"]),
    ("quanto int8", "float32", [], ["quanto:int8"]),
    ("bfloat16", "bfloat16", [], []),
    ("torchao float8wo (bf16)", "bfloat16", [], ["torchao:float8wo"]),
]


def distance(a, b) -> dict[str, float]:
    """Max over branches of curve_difference's mean and max |Δ ratio|."""
    diffs = [curve_difference(a.branches[lb].ratios, b.branches[lb].ratios) for lb in a.branches if lb in b.branches]
    return {"mean": max(d["mean_abs_diff"] for d in diffs), "max": max(d["max_abs_diff"] for d in diffs)}


def _passes(profile) -> dict[int, SkipSettings]:
    """Predicted passes per run -> the smallest threshold (K 4, R 0.2) that gives them."""
    out: dict[int, SkipSettings] = {}
    for e in THRESHOLDS:
        s = SkipSettings(e, 4, 0.2)
        out.setdefault(predict(profile, profile.calibration.steps, s).passes, s)
    return out


def at_budget(a, b, budget: int) -> tuple[SkipSettings, SkipSettings]:
    """Settings for both profiles at the same pass count: the largest one ≤ `budget` that both reach."""
    pa, pb = _passes(a), _passes(b)
    target = max(p for p in pa if p in pb and p <= budget)
    return pa[target], pb[target]


def study(name: str, dtype: str, loras: list[str], quant: list[str], base_profile, kwargs: dict) -> dict:
    t0 = time.perf_counter()
    pipe, _, _ = load_pipeline(LoadOptions("builtin:demo", dtype=dtype, device="cpu",
                                           setup=ModelSetup.parse(loras, False, quant)))
    own = api.calibrate(pipe, CAL_PROMPTS, CAL_SEEDS, model_id="builtin:demo", **kwargs)
    base_profile = base_profile or own
    one = api.calibrate(pipe, CAL_PROMPTS[:1], CAL_SEEDS[:1], model_id="builtin:demo", **kwargs)
    ref = quality.reference(pipe, EVAL_PROMPTS, EVAL_SEEDS, kwargs, lpips=(None, "off"))
    budgets = []
    for b in BUDGETS:
        row = {"budget": b}
        for label, prof, s in zip(("base profile", "own profile"), (base_profile, own), at_budget(base_profile, own, b)):
            m, _ = quality.cached(pipe, prof, ref, EVAL_PROMPTS, EVAL_SEEDS, kwargs, s)
            row[label] = {"threshold": s.threshold, "passes": m.passes, "psnr": round(m.quality.psnr, 2),
                          "ssim": round(m.quality.ssim, 4)}
        budgets.append(row)
    out = {"setup": name, "dtype": dtype, "lora": loras, "quantize": quant,
           "curve_distance": distance(base_profile, own), "verify_distance": distance(base_profile, one),
           "budgets": budgets, "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out), flush=True)
    return out, own


def markdown(results: list[dict]) -> str:
    head = ("| set-up | curve distance mean / max | verify distance mean / max | "
            + " | ".join(f"PSNR at ≤ {b} of 28 passes: base / own profile (dB, passes)" for b in BUDGETS) + " |")
    lines = [head, "|" + "---|" * (3 + len(BUDGETS))]
    for r in results:
        cells = []
        for row in r["budgets"]:
            b, o = row["base profile"], row["own profile"]
            cells.append(f"{b['psnr']:.2f} / {o['psnr']:.2f} ({b['passes']:g})")
        cd, vd = r["curve_distance"], r["verify_distance"]
        lines.append(f"| {r['setup']} | {cd['mean']:.4f} / {cd['max']:.4f} | {vd['mean']:.4f} / {vd['max']:.4f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lora_quant")
    ap.add_argument("--only", nargs="*", help="set-up names to run (the base always runs)")
    ap.add_argument("--render", action="store_true", help="rewrite the .md from the .json, running nothing")
    args = ap.parse_args(argv)
    if args.render:
        results = json.loads(args.out.with_suffix(".json").read_text())["results"]
        args.out.with_suffix(".md").write_text(markdown(results))
        return 0
    torch.set_num_threads(1)
    quiet_libraries()
    kwargs = {**DEMO_CALL, "output_type": "np"}
    results, base = [], None
    for name, dtype, loras, quant in SETUPS:
        if args.only and name != "base" and name not in args.only:
            continue
        r, own = study(name, dtype, loras, quant, base, kwargs)
        base = base or own
        results.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"calibration": [CAL_PROMPTS, CAL_SEEDS],
                                                         "held_out": [EVAL_PROMPTS, EVAL_SEEDS],
                                                         "results": results}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
