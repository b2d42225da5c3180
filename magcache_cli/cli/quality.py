"""`magcache tune`, `magcache schedule` and `run --compare`: quality you can see before trusting a profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.cli import options as o
from magcache_cli.cli import preflight
from magcache_cli.cli import render as console
from magcache_cli.cli.common import (
    call_setup,
    enable_context_parallel,
    load_pipe,
    skip_settings,
    start_ranks,
)
from magcache_cli.errors import UsageError
from magcache_cli.runner.recovery import atomic_write, write_or_recover

GRID = "Sweep grid"


def _floats(text: str | None, name: str, default: tuple) -> tuple:
    if text is None:
        return default
    try:
        vals = tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise UsageError(f"{name} {text!r} is not a comma-separated list of numbers", hint=f"e.g. {name} 0.04,0.08,0.12") from None
    if not vals:
        raise UsageError(f"{name} is empty", hint=f"e.g. {name} 0.04,0.08,0.12")
    return vals


def _ints(text: str | None, name: str, default: tuple) -> tuple:
    vals = _floats(text, name, default)
    if any(v != int(v) for v in vals):
        raise UsageError(f"{name} takes whole numbers, got {text!r}", hint=f"e.g. {name} 2,3,4")
    return tuple(int(v) for v in vals)


def run_compare(pipe, prof, prompts, seeds, kwargs, settings, policy, output, json_, force: bool = False,
                repeats: int = 3) -> None:
    """`magcache run --compare`: uncached, cached and fewer-steps runs; metrics, verdict, side-by-side PNGs."""
    import numpy as np

    from magcache_cli.quality.compare import compare
    from magcache_cli.runner import outputs

    n = len(prompts) * len(seeds)
    with console.progress((4 if settings.forecast > 0 else 3) * n + 3 * repeats, "Comparing") as bar:
        def on_run(what: str) -> None:
            bar.describe(f"Comparing: {what}")
            bar.advance()

        cmp = compare(pipe, prof, prompts, seeds, kwargs, settings, policy, on_run=on_run, force=force,
                      repeats=repeats)
    res = cmp.cached_result
    targets = outputs.output_paths(Path(output), res.prompts_seeds, prompts)
    paths = [str(write_or_recover(t, lambda p, out=out: outputs.save(out, p))) for out, t in zip(res.outputs, targets)]
    sheets = []
    for p, ref, cached, fewer in zip(targets, cmp.reference.arrays, cmp.cached_arrays, cmp.baseline_arrays):
        sheet = side_by_side([("uncached", ref), ("cached", cached), (f"{cmp.baseline_steps} steps", fewer),
                              ("|diff| x4", np.clip(np.abs(cached - ref) * 4, 0, 1))])
        path = write_or_recover(Path(p).with_name(f"{Path(p).stem}-compare.png"),
                                lambda q, sheet=sheet: atomic_write(q, sheet.save))
        sheets.append(str(path))
    for w in cmp.cached.warnings:
        console.warn(w)
    console.render_compare(cmp, paths, sheets)
    if json_:
        console.emit_json({**cmp.to_json(), "outputs": paths, "side_by_side": sheets})


def side_by_side(panels, min_side: int = 128):
    """One PIL image: the panels left to right with their captions, small outputs upscaled (nearest).

    Video panels show their middle frame.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    frames = [(label, a[len(a) // 2] if a.ndim == 4 else a) for label, a in panels]
    h, w = frames[0][1].shape[:2]
    scale = max(1, -(-min_side // min(h, w)))
    cap, gap = 14, 4
    sheet = Image.new("RGB", (len(frames) * (w * scale + gap) - gap, h * scale + cap), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, a) in enumerate(frames):
        img = Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8)).convert("RGB")
        x = i * (w * scale + gap)
        sheet.paste(img.resize((w * scale, h * scale), Image.NEAREST), (x, cap))
        draw.text((x + 2, 1), label, fill="black")
    return sheet


def tune(
    profile: Annotated[Path, typer.Option("--profile", "-P", help="Profile to tune; its defaults are rewritten.")],
    min_psnr: Annotated[Optional[float], typer.Option(help="Target: mean PSNR vs uncached, in dB (e.g. 35).")] = None,
    min_ssim: Annotated[Optional[float], typer.Option(help="Target: mean SSIM vs uncached (e.g. 0.98).")] = None,
    max_lpips: Annotated[Optional[float], typer.Option(help="Target: mean LPIPS vs uncached (needs LPIPS weights offline).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the tuned profile here instead of over --profile.")] = None,
    force: o.Force = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure and report; write nothing.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Show every distinct schedule, not only the Pareto front.")] = False,
    thresholds: Annotated[Optional[str], typer.Option(help="Thresholds to sweep, comma-separated. Default: 0.02,0.04,0.06,0.08,0.12,0.16,0.24,0.32,0.48.", rich_help_panel=GRID)] = None,
    max_skips: Annotated[Optional[str], typer.Option(help="Max consecutive skips (K) to sweep. Default: 2,3,4,5,6.", rich_help_panel=GRID)] = None,
    retentions: Annotated[Optional[str], typer.Option(help="Retention ratios (R) to sweep. Default: 0.1,0.2.", rich_help_panel=GRID)] = None,
    forecasts: Annotated[Optional[str], typer.Option(help="Residual forecast A values to sweep (0 = reuse). Default: 0,0.25,0.5,0.75.", rich_help_panel=GRID)] = None,
    branch_policy: o.BranchPolicy = "joint",
    repeats: o.Repeats = 3,
    prompt: o.Prompt = None,
    prompts_file: o.PromptsFile = None,
    seed: o.Seed = None,
    steps: o.Steps = None,
    guidance_scale: o.GuidanceScale = None,
    negative_prompt: o.NegativePrompt = None,
    height: o.Height = None,
    width: o.Width = None,
    num_frames: o.NumFrames = None,
    set_: o.Set = None,
    image: o.Image = None,
    mask_image: o.MaskImage = None,
    control_image: o.ControlImage = None,
    video: o.Video = None,
    strength: o.Strength = None,
    pipeline: o.Pipeline = None,
    component: o.Component = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Load this model instead of the profile's.", rich_help_panel=o.LOAD)] = None,
    revision: o.Revision = None,
    variant: o.Variant = None,
    dtype: o.Dtype = "auto",
    device: o.Device = "auto",
    offload: o.Offload = "none",
    allow_pickle: o.AllowPickle = False,
    trust_remote_code: o.TrustRemoteCode = False,
    vae_tiling: o.VaeTiling = False,
    vae_slicing: o.VaeSlicing = False,
    context_parallel: o.ContextParallel = None,
    json_: o.Json = False,
) -> None:
    """Find the fastest skip settings that meet a quality target, by measurement, and write them.

    Sweeps threshold × max consecutive skips × retention ratio × forecast A. One model load and one uncached reference per prompt × seed; settings with the same skip schedule and A run once. Prints the Pareto table (passes vs quality) with the fewer-steps baseline at equal passes, and writes the chosen setting into the profile's defaults with the evidence in `defaults.tuned`. Prompts default to the profile's calibration prompts. Refuses (exit 1, file untouched) when no setting meets the target.

    Example:

        magcache tune --profile flux.yaml --min-psnr 35 \\
            -p "a cat playing chess" -s 0 -s 1 --steps 28
    """
    from magcache_cli.cli.inputs import gather, split_set
    from magcache_cli.errors import MagCacheError
    from magcache_cli.profile.io import load_profile, save_profile
    from magcache_cli.quality.tune import (
        DEFAULT_FORECASTS,
        DEFAULT_MAX_SKIPS,
        DEFAULT_RETENTIONS,
        DEFAULT_THRESHOLDS,
        Grid,
        Target,
        with_tuned_defaults,
    )
    from magcache_cli.quality.tune import tune as run_tune

    console.set_json(json_)
    set_, set_files = split_set(set_)  # KEY=@PATH items are files, read by `gather`
    pre = preflight.check(locals())
    policy = branch_policy
    target = Target(min_psnr, min_ssim, max_lpips)
    if not target.given():
        raise UsageError("no quality target", hint="pass --min-psnr (e.g. 35), --min-ssim or --max-lpips")
    grid = Grid(_floats(thresholds, "--thresholds", DEFAULT_THRESHOLDS), _ints(max_skips, "--max-skips", DEFAULT_MAX_SKIPS),
                _floats(retentions, "--retentions", DEFAULT_RETENTIONS), _floats(forecasts, "--forecasts", DEFAULT_FORECASTS))
    try:
        settings_list = grid.settings()
    except ValueError as e:
        raise UsageError(f"bad sweep grid: {e}") from None
    from magcache_cli.profile.resolve import resolve_profile

    profile = str(resolve_profile(str(profile)))  # a shipped profile's name works too (then prefer --out)
    dest = Path(profile)
    if not dry_run:
        same = out is not None and Path(out).exists() and Path(out).resolve() == Path(profile).resolve()
        dest = (preflight.output_file(out, "--out", default_name=Path(profile).name, overwrite=force or same)
                if out is not None else preflight.output_file(profile, "--profile", default_name=Path(profile).name))
    prof = load_profile(profile)
    model_id, rev = model or prof.model.id, revision or (None if model else prof.model.revision)
    cal = prof.calibration
    preflight.sizes(model_id, rev, cal.height if height is None else height, cal.width if width is None else width)
    files = gather(image=image, mask_image=mask_image, control_image=control_image, video=video, strength=strength,
                   set_files=set_files, pipeline=pipeline, component=component, model=model, revision=revision,
                   profile=prof, profile_path=profile)
    ranks = start_ranks(device, context_parallel)
    pipe, _, _ = load_pipe(model_id, rev, variant, dtype, device, offload, allow_pickle, trust_remote_code, files,
                           vae_tiling=vae_tiling, vae_slicing=vae_slicing)
    enable_context_parallel(pipe, ranks)
    prompts, seeds, kwargs = call_setup(prof, pre, seed, steps, guidance_scale, negative_prompt, height, width,
                                        num_frames, pipe, all_prompts=True, inputs=files)
    for note in files.notes:
        console.notice(note)
    n = len(prompts) * len(seeds)
    with console.progress(n * (len(settings_list) + 2) + 3 * repeats, "Tuning") as bar:
        def on_run(what: str) -> None:
            bar.describe(f"Tuning: {what}")
            bar.advance()
            ranks.tick()

        ranks.on_remote = bar.advance
        result = run_tune(pipe, prof, prompts, seeds, kwargs, target, grid, policy, on_run, exchange=ranks,
                          repeats=repeats)
    written = None
    if result.chosen is not None and not dry_run and ranks.info.is_main:
        tuned = with_tuned_defaults(prof, result)
        written = str(write_or_recover(dest, lambda p: save_profile(tuned, p, overwrite=True)))
    ranks.finish()  # every rank ends with rank 0's write; only rank 0 prints
    if not ranks.info.is_main:
        raise typer.Exit(0 if result.chosen is not None else 1)
    console.render_tune(result, show_all, written)
    if json_:
        console.emit_json(_tune_json(result, written))
    if result.chosen is None:
        best = max((p for p in result.points), key=lambda p: p.measured.quality.psnr if p.measured.passes < result.reference.passes else float("-inf"))
        raise MagCacheError(
            f"no setting in the grid meets {target.describe()} (best with skipping: PSNR "
            f"{best.measured.quality.psnr:.2f} dB, SSIM {best.measured.quality.ssim:.4f} at {best.measured.passes:g} passes); "
            f"{dest} was not changed",
            hint="lower the target, sweep smaller thresholds (--thresholds 0.005,0.01,0.02) or use more --steps")


def _tune_json(result, written: str | None) -> dict:
    from magcache_cli.profile.plan import equal_pass_steps
    from magcache_cli.quality.tune import distinct

    ref = result.reference

    def point(p):
        k = min(ref.steps, equal_pass_steps(p.measured.passes, ref.per_step))
        base = result.baselines.get(k)
        return {"threshold": p.settings.threshold, "max_skip_steps": p.settings.max_skip_steps,
                "retention_ratio": p.settings.retention_ratio, "forecast": p.settings.forecast,
                "passes_per_run": p.measured.passes,
                "speedup_passes": round(p.speedup_passes, 3), "speedup_wall": round(p.speedup_wall, 3),
                **p.measured.quality.to_json(), "pareto": p.pareto,
                "meets_target": p.measured.quality.meets(**result.target.given()),
                "fewer_steps": None if base is None else {"steps": k, **base.quality.to_json()}}

    return {
        "target": result.target.given(),
        "steps": ref.steps,
        "uncached": {"passes_per_run": ref.passes, "wall_s_per_run": round(ref.wall_s, 4)},
        "points": [point(p) for p in distinct(result.points)],
        "settings_swept": len(result.points),
        "pipeline_runs": result.runs,
        "chosen": None if result.chosen is None else point(result.chosen),
        "evidence": None if result.chosen is None else result.evidence(),
        "written": written,
        "lpips_note": ref.lpips_note,
        "wall_times_suspect": result.wall_suspect,
        "wall_note": result.wall_note,
        "timing": None if result.timings is None else result.timings.to_json(),
    }


def schedule(
    profile: Annotated[Path, typer.Option("--profile", "-P", help="Profile whose curves are simulated.")],
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps. Default: the profile's calibration steps.")] = None,
    threshold: o.Threshold = None,
    max_skip_steps: o.MaxSkipSteps = None,
    retention_ratio: o.RetentionRatio = None,
    branch_policy: o.BranchPolicy = "joint",
    sweep: Annotated[bool, typer.Option("--sweep", help="A table over thresholds instead of one schedule.")] = False,
    thresholds: Annotated[Optional[str], typer.Option(help="Thresholds for --sweep, comma-separated. Default: 0.02,0.04,0.06,0.08,0.12,0.16,0.24,0.32,0.48.")] = None,
    json_: o.Json = False,
) -> None:
    """Show what a profile would skip, without loading a model: per-branch timelines, passes and speedup.

    Example:

        magcache schedule --profile flux.yaml --steps 28 --threshold 0.12 \\
            --max-skip-steps 4
        magcache schedule --profile flux.yaml --steps 50 --sweep
    """
    import dataclasses

    from magcache_cli.api import load_profile  # a path or a shipped profile's name
    from magcache_cli.profile.plan import predict
    from magcache_cli.quality.tune import DEFAULT_THRESHOLDS

    console.set_json(json_)
    preflight.check(locals())
    policy = branch_policy
    prof = load_profile(profile)
    n = steps if steps is not None else prof.calibration.steps
    base = skip_settings(prof, threshold, max_skip_steps, retention_ratio)
    if not sweep:
        pred = predict(prof, n, base, policy)
        console.render_schedule(prof, n, base, pred)
        if json_:
            console.emit_json({"steps": n, "settings": {**dataclasses.asdict(base), "branch_policy": pred.policy},
                               **_pred_json(pred)})
        return
    rows = []
    for e in _floats(thresholds, "--thresholds", DEFAULT_THRESHOLDS):
        s = skip_settings(prof, e, base.max_skip_steps, base.retention_ratio)
        rows.append((s, predict(prof, n, s, policy)))
    console.render_schedule_sweep(prof, n, rows)
    if json_:
        console.emit_json({"steps": n, "max_skip_steps": base.max_skip_steps, "retention_ratio": base.retention_ratio,
                           "branch_policy": rows[0][1].policy,
                           "sweep": [{"threshold": s.threshold, **_pred_json(p)} for s, p in rows]})


def _pred_json(pred: dict) -> dict:
    from magcache_cli.core.rule import schedule_summary

    return {"passes": pred.passes, "total_passes": pred.total, "speedup": round(pred.speedup, 4),
            "branches": {lb: {k: v for k, v in s.items()} for lb, s in schedule_summary(pred.flags).items()}}


def register(app: typer.Typer) -> None:
    """Add the quality commands to the main app (called from cli._register_subcommands)."""
    app.command("tune")(tune)
    app.command("schedule")(schedule)
