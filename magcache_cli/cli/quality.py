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
from magcache_cli.cli.common import skip_settings, speedup_choice
from magcache_cli.errors import UsageError
from magcache_cli.runner.recovery import atomic_write, write_or_recover
from magcache_cli.types import SPEEDUP_RANGE, BranchPolicy, Interval

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


def run_compare(job, prof, settings, policy, output, json_, force: bool = False, repeats: int = 3,
                extra: dict | None = None) -> None:
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
        console.emit_json({**cmp.to_json(), "outputs": paths, "side_by_side": sheets, **(extra or {})})


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
    """`tune`'s goal: beat fewer steps (the default), absolute limits, or the best quality at a speedup."""

    beat_fewer_steps: Annotated[Optional[float], typer.Option("--beat-fewer-steps", metavar="[MARGIN_DB]", help="Target (the default): closer to the full output than the uncached pipeline at the same passes, by at least MARGIN_DB (default 0.5) on every prompt × seed."), preflight.finite(example=0.5)] = None
    min_psnr: Annotated[Optional[float], typer.Option(help="Target: PSNR vs uncached, in dB, on every prompt × seed (e.g. 35)."), preflight.finite(example=35)] = None
    min_ssim: Annotated[Optional[float], typer.Option(help="Target: SSIM vs uncached on every prompt × seed (e.g. 0.98)."), preflight.finite(example=0.98)] = None
    max_lpips: Annotated[Optional[float], typer.Option(help="Target: LPIPS vs uncached on every prompt × seed (needs LPIPS weights offline)."), preflight.finite(Interval(0), example=0.05)] = None
    speedup: Annotated[Optional[float], typer.Option("--speedup", help="Instead of the fastest setting meeting a target: the most accurate measured setting within X× fewer passes (with a target too: among those meeting it)."), preflight.finite(SPEEDUP_RANGE, example=2)] = None

    def target(self):
        """The absolute limits, for `--grid` (today's exhaustive sweep needs one)."""
        from magcache_cli.quality.tune import Target

        target = Target(self.min_psnr, self.min_ssim, self.max_lpips)
        if not target.given():
            raise UsageError("the exhaustive sweep (--grid, or tune in several processes) needs an absolute target",
                             hint="pass --min-psnr (e.g. 35), --min-ssim or --max-lpips")
        return target

    def goal(self):
        """The search's goal; with no target and no speedup, beat fewer steps by the default margin."""
        from magcache_cli.quality.search import DEFAULT_MARGIN_DB
        from magcache_cli.quality.search import Goal as SearchGoal

        beat = self.beat_fewer_steps
        if beat is None and self.speedup is None and (self.min_psnr, self.min_ssim, self.max_lpips) == (None,) * 3:
            beat = DEFAULT_MARGIN_DB
        return SearchGoal(self.min_psnr, self.min_ssim, self.max_lpips, beat, self.speedup)


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


Budget = Annotated[Optional[int], typer.Option("--budget", help="At most this many pipeline runs (the uncached reference included); spent before a setting is confirmed, tune stops and exits 1 (file untouched)."), preflight.at_least(1, 60)]
FullGrid = Annotated[bool, typer.Option("--grid", help="Measure every distinct setting of the grid on every prompt × seed (the exhaustive sweep, many more runs; absolute targets only) instead of searching.", rich_help_panel=GRID)]


@o.command
def tune(*, profile: TuneProfile, goal: Goal, out: TunedOut = None, force: o.Force = False, dry_run: DryRun = False,
         show_all: ShowAll = False, budget: Budget = None, sweep: Sweep, full_grid: FullGrid = False,
         branch_policy: o.BranchPolicy = BranchPolicy.JOINT, repeats: o.Repeats = 3, prompts: o.Prompts, call: o.Call,
         inputs: o.Inputs, load: o.TuneLoad, json_: o.Json = False) -> None:
    """Find the fastest skip settings that meet a quality target, by measurement, and write them.

    A search, not a sweep: the grid (threshold × max consecutive skips × retention ratio × forecast A) is predicted first, without the model; then, per A, it bisects over the predicted pass counts toward the target, measures each candidate one prompt × seed at a time and drops it at its first miss, and confirms the winner on held-out runs (every third prompt × seed). One model load and one uncached reference per prompt × seed. The target holds on every run; without one it is --beat-fewer-steps 0.5 (closer to the full output than fewer steps at the same passes). Prints the measured points with the fewer-steps baseline and the pipeline runs spent, and writes the chosen setting into the profile's defaults with the evidence in `defaults.tuned`. Prompts default to the profile's calibration prompts. Refuses (exit 1, file untouched) when no setting meets the target.

    Example:

        magcache tune --profile flux.yaml -p "a cat playing chess" \\
            -p "a red bicycle" -s 0 -s 1 --steps 28
        magcache tune --profile flux.yaml --min-psnr 35 --budget 60
        magcache tune --profile flux.yaml --speedup 2.5
    """
    from magcache_cli.profile.io import load_profile
    from magcache_cli.profile.resolve import resolve_profile

    console.set_json(json_)
    asked = setup.read(load, prompts, call, inputs)
    search_goal, grid = goal.goal(), sweep.grid()
    target = goal.target() if full_grid else None
    profile = str(resolve_profile(str(profile)))  # a shipped profile's name works too (then prefer --out)
    dest = Path(profile) if dry_run else _tuned_destination(profile, out, force)
    prof = load_profile(profile)
    job = setup.load(setup.settle(asked, prof=prof, profile_path=profile, all_prompts=True))
    if job.ranks.info.distributed and target is None:  # several processes share out the exhaustive sweep
        target = goal.target()
    result = _measure(job, prof, search_goal, target, grid, branch_policy, repeats, budget)
    written = None
    if result.chosen is not None and not dry_run and job.ranks.info.is_main:
        written = _write_tuned(prof, result, dest)
    job.ranks.finish()  # every rank ends with rank 0's write; only rank 0 prints
    if not job.ranks.info.is_main:
        raise typer.Exit(0 if result.chosen is not None else 1)
    console.render_tune(result, show_all, written)
    if json_:
        console.emit_json(_tune_json(result, written, len(grid.settings())))
    if result.chosen is None:
        raise _nothing_meets(result, target or search_goal, dest)


def _measure(job, prof, goal, target, grid, policy, repeats, budget, ref=None):
    """The search (or with a `target`, today's exhaustive sweep) under one progress bar."""
    from magcache_cli.quality.tune import tune as grid_tune
    from magcache_cli.quality.tuning import search_tune

    total = job.runs * (len(grid.settings()) + 2) if target is not None else (budget or job.runs * 30)
    with job.progress("Tuning", total=total + 3 * repeats) as bar:
        def on_run(what: str) -> None:
            bar.describe(f"Tuning: {what}")
            bar.advance()
            job.ranks.tick()

        if target is not None:
            return grid_tune(job.pipe, prof, job.prompts, job.seeds, job.kwargs, target, grid, policy, on_run,
                             exchange=job.ranks, repeats=repeats)
        return search_tune(job.pipe, prof, job.prompts, job.seeds, job.kwargs, goal, grid, policy, on_run, budget,
                           repeats, ref)


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

    spent = getattr(result, "budget_spent", False)
    why = (f"the budget of {result.budget} pipeline runs was spent before a setting met {target.describe()}" if spent
           else f"no setting in the grid meets {target.describe()}")
    best = max(result.points, key=psnr_if_skipping, default=None)
    reached = "" if best is None else (
        f" (best with skipping: PSNR {best.measured.quality.psnr:.2f} dB, SSIM {best.measured.quality.ssim:.4f} at "
        f"{best.measured.passes:g} passes)")
    return MagCacheError(
        f"{why}{reached}; {dest} was not changed",
        hint="give a larger --budget" if spent else
        "lower the target, sweep smaller thresholds (--thresholds 0.005,0.01,0.02) or use more --steps")


def _tune_json(result, written: str | None, swept: int) -> dict:
    from magcache_cli.profile.plan import equal_pass_steps
    from magcache_cli.quality.tune import distinct

    ref = result.reference
    search = getattr(result, "goal", None) is not None

    def point(p):
        k = min(ref.steps, equal_pass_steps(p.measured.passes, ref.per_step))
        base = result.baselines.get(k)
        meets = result.meets(p) if search else p.measured.quality.meets(**result.target.given())
        return {"threshold": p.settings.threshold, "max_skip_steps": p.settings.max_skip_steps,
                "retention_ratio": p.settings.retention_ratio, "forecast": p.settings.forecast,
                "passes_per_run": p.measured.passes,
                "speedup_passes": round(p.speedup_passes, 3), "speedup_wall": round(p.speedup_wall, 3),
                **p.measured.quality.to_json(), "pareto": p.pareto, "meets_target": meets,
                "runs": len(p.measured.quality.per_output),
                "fewer_steps": None if base is None else {"steps": k, **base.quality.to_json()}}

    return {
        "target": result.goal.given() if search else result.target.given(),
        "steps": ref.steps,
        "uncached": {"passes_per_run": ref.passes, "wall_s_per_run": round(ref.wall_s, 4)},
        "points": [point(p) for p in distinct(result.points)],
        "settings_swept": swept,
        "pipeline_runs": result.runs,
        "search": result.summary() if search else None,
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
    branch_policy: o.BranchPolicy = BranchPolicy.JOINT,
    speedup: o.Speedup = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="A table over thresholds instead of one schedule.")] = False,
    thresholds: Annotated[Optional[str], typer.Option(help="Thresholds for --sweep, comma-separated. Default: 0.02,0.04,0.06,0.08,0.12,0.16,0.24,0.32,0.48.")] = None,
    json_: o.Json = False,
) -> None:
    """Show what a profile would skip, without loading a model: per-branch timelines, passes and speedup.

    Example:

        magcache schedule --profile flux.yaml --steps 28 --threshold 0.12 \\
            --max-skip-steps 4
        magcache schedule --profile flux.yaml --steps 50 --sweep
        magcache schedule --profile flux.yaml --speedup 2
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
    if speedup is not None and sweep:
        raise UsageError("--speedup and --sweep exclude each other", hint="--sweep shows every threshold's speedup")
    choice = None if speedup is None else speedup_choice(prof, n, speedup, threshold, max_skip_steps, retention_ratio,
                                                         policy=policy)
    if not sweep:
        base = base if choice is None else choice.settings
        pred = predict(prof, n, base, policy)
        console.render_schedule(prof, n, base, pred)
        if json_:
            console.emit_json({"steps": n, "settings": {**dataclasses.asdict(base), "branch_policy": pred.policy},
                               **_pred_json(pred), **({} if choice is None else {"speedup": choice.to_json()})})
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
    """Add the quality commands to the main app (cli/app.py)."""
    app.command("tune")(tune)
    app.command("schedule")(schedule)
