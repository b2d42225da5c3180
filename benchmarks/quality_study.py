#!/usr/bin/env python
"""Quality study on the bundled demo model: tune, held-out check of the quality targets, fewer-steps
baseline, and per-branch vs shared curve / joint vs independent policy at equal transformer passes.

    .venv/bin/python benchmarks/quality_study.py                 # the demo model; writes benchmarks/results/
    .venv/bin/python benchmarks/quality_study.py --check         # exit 1 if the issue's quality targets fail
    .venv/bin/python benchmarks/quality_study.py --tiny --quick  # plumbing only: a random-weight tiny SD3

What it does, in order (one model load; every number is measured, nothing is fitted):

1. `magcache calibrate` on the demo model with its defaults (the CLI, in a subprocess), batched guidance.
2. `magcache tune --min-psnr 35 --grid` (the exhaustive sweep; `tune` searches by default since issue 18, see
   benchmarks/speedup_study.py) on the ten digit prompts × the tune seeds (the CLI, default grid, which
   includes the residual forecast A ∈ {0, 0.25, 0.5, 0.75}; `--study-grid` sweeps a smaller E × K grid).
3. Held-out check on other seeds: uncached, cached with the tuned defaults, and uncached at the step count
   with the same transformer passes: passes, PSNR/SSIM vs uncached, and digit-classifier adherence. Then
   budgets from tune's Pareto front (the chosen point, and the best points within 3.5×, 2.5×, 2.25× and 1.6×
   fewer passes), each measured on the held-out runs with its forecast, with plain reuse on the same schedule, and as fewer
   steps at the same passes. (Forecast rows per budget, batched and sequential guidance, calibrated A:
   benchmarks/forecast_study.py.)
4. Branch study. The demo model is SD3, whose pipeline batches guidance (one call on cat([uncond, cond])),
   where only the joint policy exists. So the study also runs the same trained weights through
   `SequentialGuidanceSD3`, a subclass of the diffusers pipeline whose denoising loop makes two transformer
   calls per step, cond then uncond, and mixes them exactly as SD3 does (`uncond + g * (cond - uncond)`).
   Its uncached output is checked against the batched pipeline's. It is calibrated like any sequential
   pipeline (per-branch curves); then three configurations are swept over threshold × K × R:
   per-branch curves + joint policy, per-branch + independent, and one shared curve (the cond curve for
   both branches, as diffusers' hook does; with one curve both branch states decide alike, so joint and
   independent coincide). The table gives each configuration's best PSNR within equal pass budgets.

Writes `<out>/quality_study.json` and `<out>/quality_study.md` (the tables quoted in docs/quality.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import study_helpers  # noqa: E402

from magcache_cli.profile.io import load_profile  # noqa: E402
from magcache_cli.profile.plan import equal_pass_steps  # noqa: E402
from magcache_cli.quality import compare as quality  # noqa: E402
from magcache_cli.quality import tune  # noqa: E402
from magcache_cli.quality.metrics import measure  # noqa: E402
from magcache_cli.runner.outputs import as_array  # noqa: E402
from magcache_cli.runner.run import run  # noqa: E402

TARGET_PSNR, TARGET_SPEEDUP, TARGET_ADHERENCE_POINTS = 35.0, 2.5, 1.0


# ------------------------------------------------------------------------------- sequential-guidance SD3


def sequential_sd3_class():
    from diffusers import StableDiffusion3Pipeline
    from diffusers.pipelines.stable_diffusion_3.pipeline_output import (
        StableDiffusion3PipelineOutput,
    )
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
        calculate_shift,
        retrieve_timesteps,
    )

    class SequentialGuidanceSD3(StableDiffusion3Pipeline):
        """StableDiffusion3Pipeline with guidance as two transformer calls per step: cond, then uncond.

        Same prompt encoding, latents, timesteps, guidance mix and decoding as the parent's `__call__`
        (one prompt, one image, no IP-adapter, no skip-layer guidance). SD3's transformer has no
        `cache_context`, so the calls are labelled by their order in the step, like Chroma's or Lumina2's.
        """

        @torch.no_grad()
        def __call__(self, prompt, negative_prompt=None, num_inference_steps=28, guidance_scale=7.0, height=None,
                     width=None, generator=None, max_sequence_length=256, output_type="pil", mu=None):
            height = height or self.default_sample_size * self.vae_scale_factor
            width = width or self.default_sample_size * self.vae_scale_factor
            self._guidance_scale, self._clip_skip, self._joint_attention_kwargs = guidance_scale, None, None
            self._interrupt = False
            device = self._execution_device
            pe, npe, pp, npp = self.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None,
                                                  negative_prompt=negative_prompt, do_classifier_free_guidance=True,
                                                  device=device, max_sequence_length=max_sequence_length)
            latents = self.prepare_latents(1, self.transformer.config.in_channels, height, width, pe.dtype, device,
                                           generator)
            kw = {}
            if self.scheduler.config.get("use_dynamic_shifting", None) and mu is None:
                p = self.transformer.config.patch_size
                seq = (latents.shape[2] // p) * (latents.shape[3] // p)
                c = self.scheduler.config
                kw["mu"] = calculate_shift(seq, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                           c.get("base_shift", 0.5), c.get("max_shift", 1.16))
            elif mu is not None:
                kw["mu"] = mu
            timesteps, _ = retrieve_timesteps(self.scheduler, num_inference_steps, device, **kw)
            for t in timesteps:
                ts = t.expand(latents.shape[0])
                cond = self.transformer(hidden_states=latents, timestep=ts, encoder_hidden_states=pe,
                                        pooled_projections=pp, return_dict=False)[0]
                uncond = self.transformer(hidden_states=latents, timestep=ts, encoder_hidden_states=npe,
                                          pooled_projections=npp, return_dict=False)[0]
                noise = uncond + guidance_scale * (cond - uncond)
                latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
            latents = latents / self.vae.config.scaling_factor + self.vae.config.shift_factor
            image = self.vae.decode(latents, return_dict=False)[0]
            image = self.image_processor.postprocess(image, output_type=output_type)
            self.maybe_free_model_hooks()
            return StableDiffusion3PipelineOutput(images=image)

    return SequentialGuidanceSD3


# ------------------------------------------------------------------------------------------------ helpers


def cli(*args: str) -> dict:
    """Run the magcache CLI with --json in a subprocess; returns its JSON."""
    cmd = [sys.executable, "-m", "magcache_cli", *args, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def adherence(arrays, prompts_seeds, digit_of) -> float | None:
    if digit_of is None:
        return None
    from magcache_cli.testing import digits

    labels = [digit_of[p] for p, _ in prompts_seeds]
    return 100.0 * float(digits.adherence(np.stack(arrays), labels))


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def f2(x):
    return "identical" if x is not None and x >= 100 else ("—" if x is None else f"{x:.2f}")


# ---------------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="pipeline folder (default: the bundled demo model)")
    ap.add_argument("--tiny", action="store_true", help="use a random-weight tiny SD3 (plumbing check only)")
    ap.add_argument("--quick", action="store_true", help="fewer prompts/seeds and a small grid")
    ap.add_argument("--tune-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=list(range(100, 110)))
    ap.add_argument("--study-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--skip-study", action="store_true")
    ap.add_argument("--study-grid", action="store_true",
                    help="tune over E 0.06,0.12,0.24,0.32,0.48 × K 2,3,4,6,8 × R 0.1 (× the default A values) instead of "
                         "the default grid (fewer runs, for a shared CPU)")
    ap.add_argument("--label", default=None, help="how the model is named in the report")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the issue's quality targets hold")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from magcache_cli.runner.loading import (
        DEMO_CALL,
        LoadOptions,
        load_pipeline,
        quiet_libraries,
    )

    quiet_libraries()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    label = "demo model (trained)"
    if args.tiny:
        import tempfile

        from magcache_cli.testing.tiny import FAMILIES, build_tiny_pipeline

        model = str(build_tiny_pipeline("sd3", Path(tempfile.mkdtemp()) / "tiny_sd3", seed=0))
        call = {k: v for k, v in FAMILIES["sd3"].call_kwargs.items()}
        call = {**call, "num_inference_steps": 28}
        prompts = ["a cat", "a dog", "a red house"]
        digit_of = None
        label = "TINY RANDOM-WEIGHT SD3 — plumbing only, says nothing about quality"
    else:
        from magcache_cli.testing import digits

        model = args.model or "builtin:demo"
        call = dict(DEMO_CALL)
        prompts = [digits.prompt_for(d) for d in range(10)]
        digit_of = {digits.prompt_for(d): d for d in range(10)}
    label = args.label or label
    if args.quick:
        prompts = prompts[:3]
        args.eval_seeds = args.eval_seeds[:2]
    steps = call["num_inference_steps"]
    t_start = time.perf_counter()
    report: dict = {"model": label, "model_path": model, "weights": _weights_id(model), "call": call,
                    "torch_threads": 1, "device": "cpu", "torch": torch.__version__}
    md = [f"Model: **{label}** (transformer weights sha256 {report['weights']}); {steps} steps, call {json.dumps({k: v for k, v in call.items() if k != 'num_inference_steps'})}; CPU, 1 thread.", ""]

    # 1-2: calibrate and tune through the CLI, exactly as a user would
    prof_path = out / "demo.yaml"
    cal_args = ["calibrate", "--out", str(prof_path), "--force", "--steps", str(steps)]
    cal_args += ["--model", model] + [x for k, v in call.items() if k != "num_inference_steps"
                                     for x in (_flag(k, v))]
    if args.tiny or args.model:  # the demo model calibrates on `magcache calibrate`'s own default prompts
        cal_args += [x for p in prompts[:2] for x in ("-p", p)]
    report["calibrate"] = cli(*cal_args)
    tuned_path = out / "demo-tuned.yaml"
    tune_args = ["tune", "--profile", str(prof_path), "--min-psnr", str(TARGET_PSNR), "--out", str(tuned_path),
                 "--force", "--all", "--grid", "--steps", str(steps)] + [x for p in prompts for x in ("-p", p)]
    tune_args += [x for s in args.tune_seeds for x in ("-s", str(s))]
    if args.quick:
        tune_args += ["--thresholds", "0.06,0.12,0.24,0.48", "--max-skips", "2,4,6", "--retentions", "0.1"]
    elif args.study_grid:
        tune_args += ["--thresholds", "0.06,0.12,0.24,0.32,0.48", "--max-skips", "2,3,4,6,8", "--retentions", "0.1"]
    t0 = time.perf_counter()
    tuned = cli(*tune_args)
    report["tune"] = tuned
    report["tune"]["elapsed_s"] = round(time.perf_counter() - t0, 1)
    md += _tune_tables(tuned, steps, len(prompts) * len(args.tune_seeds))

    # 3: held-out check of the written defaults
    pipe, _, _ = load_pipeline(LoadOptions(model))
    kwargs = dict(call)
    if tuned["chosen"] is None:
        report["heldout"] = None
        md += ["", f"**No setting in the grid met PSNR ≥ {TARGET_PSNR} dB**; nothing was written.", ""]
        ok = False
    else:
        prof = load_profile(tuned_path)
        report["heldout"], lines, ok, ref = _heldout(pipe, prof, prompts, args.eval_seeds, kwargs, digit_of)
        md += lines
        report["heldout_budgets"], lines = _budgets(pipe, prof, tuned, prompts, args.eval_seeds, kwargs, ref)
        md += lines

    # 4: branch study on the sequential-guidance twin
    if not args.skip_study:
        seq = sequential_sd3_class()(**pipe.components)
        seq.set_progress_bar_config(disable=True)
        report["study"], lines = _study(pipe, seq, prompts, args.study_seeds, kwargs, args.quick)
        md += lines
    elif (out / "quality_study.json").exists():  # keep the last measured branch study, marked as such
        old = json.loads((out / "quality_study.json").read_text()).get("study")
        if old:
            report["study"] = {**old, "carried_over": "not re-measured in this run (--skip-study)"}
    report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    md += ["", f"Total runtime: {report['elapsed_s']:.0f} s."]
    (out / "quality_study.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "quality_study.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if args.check and not ok:
        print("quality targets NOT met", file=sys.stderr)
        return 1
    return 0


def _weights_id(model: str) -> str:
    """First 12 hex digits of the transformer weights' sha256: which model version the numbers belong to."""
    import hashlib

    from magcache_cli.runner.loading import BUILTIN_MODELS

    folder = BUILTIN_MODELS.get(model) or Path(model)
    files = sorted((folder / "transformer").glob("*.safetensors"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12] if files else "unknown"


def _flag(key, value):
    named = {"guidance_scale": "--guidance-scale", "height": "--height", "width": "--width",
             "negative_prompt": "--negative-prompt", "num_frames": "--num-frames"}
    if key in named:
        return [named[key], str(value)]
    return ["--set", f"{key}={json.dumps(value)}"]


def _tune_tables(tuned: dict, steps: int, runs: int) -> list[str]:
    ch = tuned["chosen"]
    lines = ["### Sweep (`magcache tune --min-psnr 35 --all`)", "",
             f"{tuned['settings_swept']} settings, {len(tuned['points'])} distinct schedules, {runs} runs per "
             f"schedule, {tuned['pipeline_runs']} pipeline runs in all. Quality: mean over runs vs uncached; the "
             "last columns are the uncached pipeline at the step count with the same transformer passes.", "",
             row(["E", "K", "R", "A", "passes", "× fewer", "× wall", "PSNR dB", "worst", "SSIM", "Pareto",
                  "fewer steps", "its PSNR", "closer"]),
             row(["---"] * 14)]
    for p in tuned["points"]:
        fs = p["fewer_steps"]
        closer = "" if fs is None else quality.closer(_Q(p["psnr"]), _Q(fs["psnr"]))
        mark = " ★" if ch and _key(p) == _key(ch) else ""
        lines.append(row([f"{p['threshold']:g}{mark}", p["max_skip_steps"], f"{p['retention_ratio']:g}",
                          f"{p['forecast']:g}",
                          f"{p['passes_per_run']:g}/{steps}", f"{p['speedup_passes']:.2f}",
                          f"{p['speedup_wall']:.2f}", f2(p["psnr"]), f2(p["psnr_min"]), f"{p['ssim']:.4f}",
                          "yes" if p["pareto"] else "", "" if fs is None else fs["steps"],
                          "" if fs is None else f2(fs["psnr"]), closer]))
    if ch:
        lines += ["", f"Chosen (★, written to the profile's defaults): threshold {ch['threshold']:g}, K "
                      f"{ch['max_skip_steps']}, R {ch['retention_ratio']:g}, A {ch['forecast']:g}: "
                      f"{ch['passes_per_run']:g}/{steps} passes "
                      f"({ch['speedup_passes']:.2f}× fewer), PSNR {ch['psnr']:.2f} dB on the tune prompts."]
    return lines + [""]


class _Q:
    def __init__(self, psnr):
        self.psnr = psnr


def _key(point: dict) -> tuple:
    return point["threshold"], point["max_skip_steps"], point["retention_ratio"], point["forecast"]


def _budgets(pipe, prof, tuned, prompts, seeds, kwargs, ref):
    """The chosen point and the best Pareto points within 3.5×, 2.5×, 2.25× and 1.6× fewer passes (each once),
    re-measured on the held-out runs: with their forecast, with plain reuse on the same schedule, and as fewer
    steps at equal passes."""
    from magcache_cli.core.rule import SkipSettings

    steps = kwargs["num_inference_steps"]
    front = [p for p in tuned["points"] if p["pareto"]]
    picked = [tuned["chosen"]]
    for factor in (3.5, 2.5, 2.25, 1.6):
        fit = [p for p in front if p["passes_per_run"] <= steps / factor]
        best = max(fit, key=lambda p: p["psnr"], default=None)
        if best is not None and all(_key(best) != _key(p) for p in picked):
            picked.append(best)
    data, lines = [], ["### Forecast vs reuse vs fewer steps at several budgets (held-out runs)", "",
                       f"Points of tune's Pareto front re-measured on the {len(prompts) * len(seeds)} held-out runs; "
                       "reuse is the same schedule with A = 0; fewer steps costs the same passes.", "",
                       row(["setting (E, K, R, A)", "passes", "× fewer", "forecast PSNR", "reuse PSNR",
                            "fewer steps", "its PSNR", "closer"]), row(["---"] * 8)]
    for p in picked:
        s = SkipSettings(p["threshold"], p["max_skip_steps"], p["retention_ratio"], p["forecast"])
        fc, _ = quality.cached(pipe, prof, ref, prompts, seeds, kwargs, s)
        ru = fc if s.forecast == 0 else quality.cached(pipe, prof, ref, prompts, seeds, kwargs,
                                                      SkipSettings(s.threshold, s.max_skip_steps, s.retention_ratio))[0]
        k = min(ref.steps, equal_pass_steps(fc.passes, ref.per_step))
        fs, _ = quality.fewer_steps(pipe, ref, prompts, seeds, kwargs, k)
        winner = quality.closer(fc.quality, fs.quality)
        data.append({"settings": {"threshold": s.threshold, "max_skip_steps": s.max_skip_steps,
                                  "retention_ratio": s.retention_ratio, "forecast": s.forecast},
                     "passes": fc.passes, "speedup_passes": ref.passes / fc.passes, "forecast": fc.quality.to_json(),
                     "reuse": ru.quality.to_json(), "fewer_steps": {"steps": k, **fs.quality.to_json()},
                     "closer": winner})
        lines.append(row([f"{s.threshold:g}, {s.max_skip_steps}, {s.retention_ratio:g}, {s.forecast:g}",
                          f"{fc.passes:g}/{steps}", f"{ref.passes / fc.passes:.2f}", f2(fc.quality.psnr),
                          f2(ru.quality.psnr), k, f2(fs.quality.psnr), winner]))
    return data, lines + [""]


def _heldout(pipe, prof, prompts, seeds, kwargs, digit_of):
    from magcache_cli.profile.plan import settings_from

    s = settings_from(prof)
    ref = quality.reference(pipe, prompts, seeds, kwargs)
    cached, cres = quality.cached(pipe, prof, ref, prompts, seeds, kwargs, s)
    k = min(ref.steps, equal_pass_steps(cached.passes, ref.per_step))
    fewer, fres = quality.fewer_steps(pipe, ref, prompts, seeds, kwargs, k)
    pairs = cres.prompts_seeds
    adh = {"uncached": adherence(ref.arrays, pairs, digit_of),
           "cached": adherence([as_array(o) for o in cres.outputs], pairs, digit_of),
           "fewer": adherence([as_array(o) for o in fres.outputs], pairs, digit_of)}
    speed = ref.passes / cached.passes
    ok = (speed >= TARGET_SPEEDUP and cached.quality.psnr >= TARGET_PSNR
          and (adh["cached"] is None or abs(adh["cached"] - adh["uncached"]) <= TARGET_ADHERENCE_POINTS))
    data = {"settings": {"threshold": s.threshold, "max_skip_steps": s.max_skip_steps,
                         "retention_ratio": s.retention_ratio, "forecast": s.forecast},
            "runs": len(pairs), "seeds": seeds, "uncached_passes": ref.passes, "cached_passes": cached.passes,
            "speedup_passes": speed, "speedup_wall": ref.wall_s / cached.wall_s, "cached": cached.quality.to_json(),
            "fewer_steps": {"steps": k, **fewer.quality.to_json()}, "adherence_pct": adh, "targets_met": ok}
    a = lambda v: "—" if v is None else f"{v:.0f} %"  # noqa: E731
    lines = ["### Held-out check of the tuned defaults", "",
             f"Defaults written by tune: threshold {s.threshold:g}, K {s.max_skip_steps}, R {s.retention_ratio:g}, "
             f"forecast A {s.forecast:g}. "
             f"{len(pairs)} runs: {len(prompts)} prompts × seeds {seeds[0]}–{seeds[-1]} (not used to tune).", "",
             row(["run", "steps", "passes/run", "wall/run", "PSNR dB (mean)", "worst", "SSIM", "adherence"]),
             row(["---"] * 8),
             row(["uncached", ref.steps, f"{ref.passes:g}", f"{ref.wall_s:.3f} s", "—", "—", "—", a(adh["uncached"])]),
             row(["cached (tuned)", ref.steps, f"{cached.passes:g}", f"{cached.wall_s:.3f} s", f2(cached.quality.psnr),
                  f2(cached.quality.psnr_min), f"{cached.quality.ssim:.4f}", a(adh["cached"])]),
             row([f"fewer steps ({k})", k, f"{fewer.passes:g}", f"{fewer.wall_s:.3f} s", f2(fewer.quality.psnr),
                  f2(fewer.quality.psnr_min), f"{fewer.quality.ssim:.4f}", a(adh["fewer"])]),
             "",
             f"Targets (≥ {TARGET_SPEEDUP}× fewer passes, PSNR ≥ {TARGET_PSNR:g} dB, adherence within "
             f"{TARGET_ADHERENCE_POINTS:g} point of uncached): {'**met**' if ok else '**NOT met**'} "
             f"({speed:.2f}×, {cached.quality.psnr:.2f} dB"
             + ("" if adh["cached"] is None else f", {adh['cached'] - adh['uncached']:+.0f} points") + ").", ""]
    return data, lines, ok, ref


def _study(batched, seq, prompts, seeds, kwargs, quick: bool):
    from magcache_cli import calibrate as api_calibrate

    steps = kwargs["num_inference_steps"]
    # the twin is the same model: its uncached outputs must match the batched pipeline's
    b = run(batched, prompts[:2], seeds[:1], kwargs, profile=None, no_cache=True)
    s = run(seq, prompts[:2], seeds[:1], kwargs, profile=None, no_cache=True)
    twin = measure([as_array(o) for o in s.outputs], [as_array(o) for o in b.outputs])
    diff = max(float(np.abs(as_array(x) - as_array(y)).max()) for x, y in zip(s.outputs, b.outputs))
    prof = api_calibrate(seq, prompts[:2], [0], model_id="sequential-guidance twin",
                         **{k: v for k, v in kwargs.items()})
    configs = {
        "per-branch, joint": (prof, "joint"),
        "per-branch, independent": (prof, "independent"),
        "shared cond curve": (study_helpers.shared_curve_profile(prof, "cond"), "independent"),
    }
    # a smaller grid than tune's: the twin costs two calls per step and there are three configurations
    grid = tune.Grid(thresholds=(0.04, 0.08, 0.12, 0.24, 0.48) if quick else (0.04, 0.08, 0.12, 0.16, 0.24, 0.32, 0.48),
                        max_skip_steps=(2, 4, 6), retention_ratios=(0.1,))
    ref = quality.reference(seq, prompts, seeds, kwargs)
    rows = {}
    for name, (p, policy) in configs.items():
        rows[name] = tune.distinct(tune.sweep(seq, p, ref, prompts, seeds, kwargs, grid.settings(), policy))
    total = ref.passes
    budgets = [round(total * f) for f in (0.3, 0.35, 0.4, 0.5, 0.6, 0.75)]
    table = study_helpers.at_budgets(rows, budgets)
    curves = {lb: b.ratios for lb, b in prof.branches.items()}
    gap = max(abs(x - y) for x, y in zip(curves["cond"], curves["uncond"]))
    data = {"twin_vs_batched": {"psnr": twin.psnr, "max_abs_diff": diff}, "curve_gap_max": gap,
            "grid": {"thresholds": grid.thresholds, "max_skip_steps": grid.max_skip_steps,
                     "retention_ratios": grid.retention_ratios},
            "runs_per_schedule": len(prompts) * len(seeds), "uncached_passes": total,
            "budgets": table,
            "points": {n: [{"threshold": p.settings.threshold, "max_skip_steps": p.settings.max_skip_steps,
                            "retention_ratio": p.settings.retention_ratio, "passes": p.measured.passes,
                            **p.measured.quality.to_json()} for p in pts] for n, pts in rows.items()}}
    names = list(configs)
    lines = ["### Per-branch vs shared curve, joint vs independent (sequential-guidance twin)", "",
             f"Same trained weights, guidance as two calls per step (cond, uncond). Uncached twin vs the batched "
             f"pipeline: PSNR {f2(twin.psnr)} dB, max abs pixel difference {diff:.2g}. Largest gap between the "
             f"cond and uncond curves: {gap:.4f}. Each cell: the best mean PSNR (dB) vs uncached among the "
             f"configuration's grid settings that cost at most that many passes per run (of {total:g}); "
             f"{len(prompts) * len(seeds)} runs per setting.", "",
             row(["passes ≤"] + names), row(["---"] * (1 + len(names)))]
    for r in table:
        cells = [f"{r['passes']:g}"]
        for n in names:
            c = r[n]
            cells.append("—" if c is None else f"{f2(c['psnr'])} ({c['passes']:g}; E {c['threshold']:g}, K {c['max_skip_steps']})")
        lines.append(row(cells))
    return data, lines + [""]


if __name__ == "__main__":
    raise SystemExit(main())
