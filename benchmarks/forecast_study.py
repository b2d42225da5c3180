#!/usr/bin/env python
"""Forecast study on the bundled demo model: MagCache's reuse vs the residual forecast (fixed A and a calibrated
A) vs fewer steps, at equal transformer passes, with batched guidance (SD3's own pipeline) and sequential
guidance (the same weights through `SequentialGuidanceSD3`, see quality_study.py).

    .venv/bin/python benchmarks/forecast_study.py                  # writes benchmarks/results/forecast_study.*
    .venv/bin/python benchmarks/forecast_study.py --prompts 3 --seeds 100

For each guidance setup: one uncached reference per prompt × seed; an E × K grid (R 0.1) swept once per A
(`tune.sweep`, every distinct schedule measured); per pass budget, each row's best mean PSNR among its
settings that cost at most that many passes, and the uncached pipeline at the steps that cost exactly that.

Calibrated A: the calibration run sees the whole uncached trajectory, so per branch the A that minimises the
squared forecast error of the residual on the steps the profile's default settings skip has a closed form
(`forecast_fit`). The residuals are recorded from outside the stack (magcache_cli/testing/residuals.py) on the
profile's calibration prompts and seeds, never on the evaluation seeds. The sweep uses the mean over branches
(the hooks take one A per run); the per-branch values are reported.
"""

from __future__ import annotations

import argparse
import dataclasses
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from magcache_cli.profile.plan import predict, settings_from  # noqa: E402
from magcache_cli.quality import compare as quality  # noqa: E402
from magcache_cli.quality import tune  # noqa: E402
from magcache_cli.runner.calibrate import generator_for  # noqa: E402
from magcache_cli.testing.residuals import StackRecorder  # noqa: E402
import study_helpers  # noqa: E402

FORECASTS = (0.0, 0.25, 0.5, 0.75)
BUDGET_FACTORS = (4.0, 3.0, 2.5, 2.0, 1.5)  # × fewer passes than uncached
GRID = dict(thresholds=(0.06, 0.12, 0.24, 0.48), max_skip_steps=(2, 3, 4, 6, 8), retention_ratios=(0.1,))


def forecast_fit(trajectories: list[dict[str, list[torch.Tensor]]], flags: list[bool]) -> dict[str, float]:
    """Per branch, the A in [0, 1] minimising the squared error of the forecast on the skipped steps of `flags`
    (True = computed), over uncached trajectories (per branch: the residual at every step):

        A* = Σ_t <r_t − r_c, b_t> / Σ_t ||b_t||²,   b_t = (t − c)/(c − p) · (r_c − r_p)

    with c > p the last two computed steps before t (skips with one computed step before are reuse either way)."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    computed = [i for i, f in enumerate(flags) if f]
    for traj in trajectories:
        for label, r in traj.items():
            for t, f in enumerate(flags):
                before = [i for i in computed if i < t]
                if f or len(before) < 2:
                    continue
                c, p = before[-1], before[-2]
                e, b = (r[t] - r[c]).double(), ((t - c) / (c - p) * (r[c] - r[p])).double()
                num[label] = num.get(label, 0.0) + float((e * b).sum())
                den[label] = den.get(label, 0.0) + float((b * b).sum())
    return {label: min(1.0, max(0.0, num[label] / den[label])) if den[label] else 0.0 for label in num}


def uncached_residuals(pipe, prompts, seeds, kwargs, mode: str) -> list[dict[str, list[torch.Tensor]]]:
    """Per prompt × seed and branch, the stack residual of every step of the uncached pipeline."""
    trajs = []
    with StackRecorder(pipe.transformer) as rec:
        for p in prompts:
            for s in seeds:
                rec.calls.clear()
                pipe(prompt=p, generator=generator_for(s), **kwargs)
                res = [y - x for x, y in rec.calls]
                if mode == "batched":  # one call per step on cat([uncond, cond])
                    trajs.append({"uncond": [r[0:1] for r in res], "cond": [r[1:2] for r in res]})
                else:  # two calls per step, cond then uncond
                    trajs.append({"cond": res[0::2], "uncond": res[1::2]})
    return trajs


def rows_at_budgets(pipe, prof, prompts, seeds, kwargs) -> dict:
    """Budgets × {reuse, fixed A, calibrated A, fewer steps} for one guidance setup."""
    steps = kwargs["num_inference_steps"]
    cal, mode = prof.calibration, prof.calibration.guidance_mode
    defaults = settings_from(prof)
    flags = next(iter(predict(prof, steps, defaults).flags.values()))  # joint: every branch alike
    fit = forecast_fit(uncached_residuals(pipe, cal.prompts, cal.seeds, kwargs, mode), flags)
    a_fit = round(sum(fit.values()) / len(fit), 3)
    ref = quality.reference(pipe, prompts, seeds, kwargs)
    pairs = [("reuse (A = 0)" if a == 0 else f"A = {a:g}", a) for a in FORECASTS]
    pairs.append((f"calibrated A = {a_fit:g}", a_fit))
    rows = {name: tune.distinct(tune.sweep(pipe, prof, ref, prompts, seeds, kwargs,
                                           tune.Grid(**GRID, forecasts=(a,)).settings()))
            for name, a in pairs}
    per = ref.per_step
    table = study_helpers.at_budgets(rows, sorted({per * int(steps / f) for f in BUDGET_FACTORS}))
    for r in table:
        k = int(r["passes"] // per)
        m, _ = quality.fewer_steps(pipe, ref, prompts, seeds, kwargs, k)
        r["fewer steps"] = {"psnr": m.quality.psnr, "ssim": m.quality.ssim, "passes": m.passes, "steps": k}
    return {"guidance": mode, "fit_per_branch": fit, "calibrated_a": a_fit,
            "fit_on": {"settings": dataclasses.asdict(defaults), "skipped_steps": [i for i, f in enumerate(flags) if not f],
                       "prompts": cal.prompts, "seeds": cal.seeds},
            "uncached_passes": ref.passes, "runs_per_setting": len(prompts) * len(seeds), "rows": [n for n, _ in pairs],
            "budgets": table,
            "points": {n: [{**dataclasses.asdict(p.settings), "passes": p.measured.passes, **p.measured.quality.to_json()}
                           for p in pts] for n, pts in rows.items()}}


def markdown(result: dict, title: str) -> list[str]:
    names = result["rows"] + ["fewer steps"]
    total = result["uncached_passes"]
    fit = ", ".join(f"{k} {v:.3f}" for k, v in result["fit_per_branch"].items())
    lines = [f"#### {title}", "",
             f"Each cell: best mean PSNR (dB) vs uncached among the row's settings costing at most that many passes "
             f"(of {total:g}), with the passes used and E/K; {result['runs_per_setting']} runs per setting. "
             f"Calibrated A fitted per branch ({fit}) on the calibration prompts at the default settings' schedule "
             f"(skips {result['fit_on']['skipped_steps']}); the row uses their mean.", "",
             "| passes ≤ (× fewer) | " + " | ".join(names) + " |", "|" + " --- |" * (1 + len(names))]
    for r in result["budgets"]:
        cells = [f"{r['passes']:g} ({total / r['passes']:.2f}×)"]
        best = max((r[n]["psnr"] for n in names if r[n] is not None), default=None)
        for n in names:
            c = r[n]
            if c is None:
                cells.append("—")
                continue
            v = f"{c['psnr']:.2f}"
            v = f"**{v}**" if c["psnr"] == best else v
            cells.append(f"{v} ({c['steps']} steps)" if n == "fewer steps"
                         else f"{v} ({c['passes']:g}; E {c['threshold']:g}, K {c['max_skip_steps']})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", type=Path, default=ROOT / "benchmarks" / "results" / "demo.yaml",
                    help="the demo model's calibrated profile (quality_study.py writes it)")
    ap.add_argument("--prompts", type=int, default=5, help="how many of the ten digit prompts (evenly spread)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[100])
    ap.add_argument("--skip-sequential", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from magcache_cli import api
    from magcache_cli.profile.schema import load_profile
    from magcache_cli.runner.loading import DEMO_CALL, LoadOptions, load_pipeline, quiet_libraries
    from magcache_cli.testing import digits
    from quality_study import sequential_sd3_class

    quiet_libraries()
    t0 = time.perf_counter()
    pipe, _, _ = load_pipeline(LoadOptions("builtin:demo"))
    kwargs = dict(DEMO_CALL)
    digits_used = [round(i * 10 / args.prompts) for i in range(args.prompts)]
    prompts = [digits.prompt_for(d) for d in digits_used]
    report = {"model": "builtin:demo", "call": kwargs, "prompts": prompts, "seeds": args.seeds, "grid": GRID,
              "forecasts": FORECASTS, "budget_factors": BUDGET_FACTORS}
    md = [f"Demo model, {kwargs['num_inference_steps']} steps, {len(prompts)} prompts (digits {digits_used}) × seeds "
          f"{args.seeds}; grid E {GRID['thresholds']} × K {GRID['max_skip_steps']} × R {GRID['retention_ratios']}.", ""]
    report["batched"] = rows_at_budgets(pipe, load_profile(args.profile), prompts, args.seeds, kwargs)
    md += markdown(report["batched"], "Batched guidance (SD3's pipeline: one call on cat([uncond, cond]))")
    if not args.skip_sequential:
        seq = sequential_sd3_class()(**pipe.components)
        seq.set_progress_bar_config(disable=True)
        twin = api.calibrate(seq, prompts[:2], [0], model_id="sequential-guidance twin", **kwargs)
        report["sequential"] = rows_at_budgets(seq, twin, prompts, args.seeds, kwargs)
        md += markdown(report["sequential"], "Sequential guidance (the same weights, two calls per step: cond, uncond)")
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    md.append(f"Runtime {report['elapsed_s']:.0f} s (CPU, one thread, shared machine).")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "forecast_study.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (args.out_dir / "forecast_study.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
