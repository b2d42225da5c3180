"""`magcache tune`, `magcache schedule` and `run --compare`: quality you can see before trusting a profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.cli import job as setup
from magcache_cli.cli import options as o
from magcache_cli.cli import preflight
from magcache_cli.cli import render as console
from magcache_cli.cli.common import skip_settings
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


def run_compare(job, prof, settings, policy, output, json_, force: bool = False, repeats: int = 3) -> None:
    """`magcache run --compare`: uncached, cached and fewer-steps runs; metrics, verdict, side-by-side PNGs."""
    import numpy as np

    from magcache_cli.quality.compare import compare
    from magcache_cli.runner import outputs

    prompts = job.prompts
    with job.progress("Comparing", total=(4 if settings.forecast > 0 else 3) * job.runs + 3 * repeats) as bar:
        def on_run(what: str) -> None:
            bar.describe(f"Comparing: {what}")
            bar.advance()

        cmp = compare(job.pipe, prof, prompts, job.seeds, job.kwargs, settings, policy, on_run=on_run, force=force,
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


TuneProfile = Annotated[Path, typer.Option("--profile", "-P", help="Profile to tune; its defaults are rewritten.")]
TunedOut = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the tuned profile here instead of over --profile.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Measure and report; write nothing.")]
ShowAll = Annotated[bool, typer.Option("--all", help="Show every distinct schedule, not only the Pareto front.")]


@dataclass
class Goal:
    """`tune`'s quality target."""

    min_psnr: Annotated[Optional[float], typer.Option(help="Target: mean PSNR vs uncached, in dB (e.g. 35)."), preflight.finite(example=35)] = None
    min_ssim: Annotated[Optional[float], typer.Option(help="Target: mean SSIM vs uncached (e.g. 0.98)."), preflight.finite(example=0.98)] = None
    max_lpips: Annotated[Optional[float], typer.Option(help="Target: mean LPIPS vs uncached (needs LPIPS weights offline)."), preflight.finite(0.0, example=0.05)] = None

    def target(self):
        from magcache_cli.quality.tune import Target

        target = Target(self.min_psnr, self.min_ssim, self.max_lpips)
        if not target.given():
            raise UsageError("no quality target", hint="pass --min-psnr (e.g. 35), --min-ssim or --max-lpips")
        return target


@dataclass
class Sweep:
    """`tune`'s grid: comma-separated values per setting (None: the default list)."""

    thresholds: Annotated[Optional[str], typer.Option(help="Thresholds to sweep, comma-separated. Default: 0.02,0.04,0.06,0.08,0.12,0.16,0.24,0.32,0.48.", rich_help_panel=GRID)] = None
    max_skips: Annotated[Optional[str], typer.Option(help="Max consecutive skips (K) to sweep. Default: 2,3,4,5,6.", rich_help_panel=GRID)] = None
    retentions: Annotated[Optional[str], typer.Option(help="Retention ratios (R) to sweep. Default: 0.1,0.2.", rich_help_panel=GRID)] = None
    forecasts: Annotated[Optional[str], typer.Option(help="Residual forecast A values to sweep (0 = reuse). Default: 0,0.25,0.5,0.75.", rich_help_panel=GRID)] = None

    def grid(self):
        """The grid, each list checked; UsageError naming the flag."""
        from magcache_cli.quality import tune as t

        grid = t.Grid(_floats(self.thresholds, "--thresholds", t.DEFAULT_THRESHOLDS),
                      _ints(self.max_skips, "--max-skips", t.DEFAULT_MAX_SKIPS),
                      _floats(self.retentions, "--retentions", t.DEFAULT_RETENTIONS),
                      _floats(self.forecasts, "--forecasts", t.DEFAULT_FORECASTS))
        try:
            grid.settings()
        except ValueError as e:
            raise UsageError(f"bad sweep grid: {e}") from None
        return grid


@o.command
def tune(*, profile: TuneProfile, goal: Goal, out: TunedOut = None, force: o.Force = False, dry_run: DryRun = False,
         show_all: ShowAll = False, sweep: Sweep, branch_policy: o.BranchPolicy = "joint", repeats: o.Repeats = 3,
         prompts: o.Prompts, call: o.Call, inputs: o.Inputs, load: o.TuneLoad, json_: o.Json = False) -> None:
    """Find the fastest skip settings that meet a quality target, by measurement, and write them.

    Sweeps threshold × max consecutive skips × retention ratio × forecast A. One model load and one uncached reference per prompt × seed; settings with the same skip schedule and A run once. Prints the Pareto table (passes vs quality) with the fewer-steps baseline at equal passes, and writes the chosen setting into the profile's defaults with the evidence in `defaults.tuned`. Prompts default to the profile's calibration prompts. Refuses (exit 1, file untouched) when no setting meets the target.

    Example:

        magcache tune --profile flux.yaml --min-psnr 35 \\
            -p "a cat playing chess" -s 0 -s 1 --steps 28
    """
    from magcache_cli.profile.io import load_profile
    from magcache_cli.profile.resolve import resolve_profile
    from magcache_cli.quality.tune import tune as run_tune

    console.set_json(json_)
    asked = setup.read(load, prompts, call, inputs)
    target, grid = goal.target(), sweep.grid()
    profile = str(resolve_profile(str(profile)))  # a shipped profile's name works too (then prefer --out)
    dest = Path(profile) if dry_run else _tuned_destination(profile, out, force)
    prof = load_profile(profile)
    job = setup.load(setup.settle(asked, prof=prof, profile_path=profile, all_prompts=True))
    with job.progress("Tuning", total=job.runs * (len(grid.settings()) + 2) + 3 * repeats) as bar:
        def on_run(what: str) -> None:
            bar.describe(f"Tuning: {what}")
            bar.advance()
            job.ranks.tick()

        result = run_tune(job.pipe, prof, job.prompts, job.seeds, job.kwargs, target, grid, branch_policy, on_run,
                          exchange=job.ranks, repeats=repeats)
    written = None
    if result.chosen is not None and not dry_run and job.ranks.info.is_main:
        written = _write_tuned(prof, result, dest)
    job.ranks.finish()  # every rank ends with rank 0's write; only rank 0 prints
    if not job.ranks.info.is_main:
        raise typer.Exit(0 if result.chosen is not None else 1)
    console.render_tune(result, show_all, written)
    if json_:
        console.emit_json(_tune_json(result, written))
    if result.chosen is None:
        raise _nothing_meets(result, target, dest)


def _tuned_destination(profile: str, out: Path | None, force: bool) -> Path:
    """Where the tuned profile goes: --out (refused if it exists, unless --force or it is --profile itself),
    else over --profile."""
    if out is None:
        return preflight.output_file(profile, "--profile", default_name=Path(profile).name)
    same = Path(out).exists() and Path(out).resolve() == Path(profile).resolve()
    return preflight.output_file(out, "--out", default_name=Path(profile).name, overwrite=force or same)


def _write_tuned(prof, result, dest: Path) -> str:
    from magcache_cli.profile.io import save_profile
    from magcache_cli.quality.tune import with_tuned_defaults

    tuned = with_tuned_defaults(prof, result)
    return str(write_or_recover(dest, lambda p: save_profile(tuned, p, overwrite=True)))


def _nothing_meets(result, target, dest: Path) -> Exception:
    from magcache_cli.errors import MagCacheError

    def psnr_if_skipping(p) -> float:
        return p.measured.quality.psnr if p.measured.passes < result.reference.passes else float("-inf")

    best = max(result.points, key=psnr_if_skipping)
    return MagCacheError(
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


@o.command
def schedule(
    profile: Annotated[Path, typer.Option("--profile", "-P", help="Profile whose curves are simulated.")],
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps. Default: the profile's calibration steps."), preflight.at_least(1, 28)] = None,
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
