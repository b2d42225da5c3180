"""`magcache calibrate` and `magcache run`: measure a profile, and generate with it."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.cli import job as setup
from magcache_cli.cli import options as o
from magcache_cli.cli import preflight
from magcache_cli.cli import render as console
from magcache_cli.cli.common import skip_settings, speedup_choice
from magcache_cli.cli.errors import add_note
from magcache_cli.cli.inputs import profile_file
from magcache_cli.errors import MagCacheError, UsageError
from magcache_cli.types import SPEEDUP_RANGE
from magcache_cli.runner.recovery import RecoveredError, write_or_recover

ProfileOut = Annotated[Path, typer.Option("--out", "-o", help="Profile to write (YAML).")]
KeepPartial = Annotated[bool, typer.Option("--keep-partial", help="On Ctrl-C, save the runs already finished as the profile (its `source` says how many).")]
ProfileRef = Annotated[str, typer.Option("--profile", "-P", help="Profile file written by `magcache calibrate`, or a shipped profile's name (`magcache profile list`).")]
Output = Annotated[Path, typer.Option("--output", "-o", help="Output file; several prompts/seeds give <stem>-p<i>-s<seed><ext>.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Run the plain pipeline (for comparison).", rich_help_panel=o.SKIP)]
Compare = Annotated[bool, typer.Option("--compare", help="Also run uncached and at fewer steps (same seeds, one model load); report speedup, PSNR/SSIM (LPIPS if available) and write a side-by-side PNG.", rich_help_panel=o.SKIP)]
OtherTransformer = Annotated[bool, typer.Option("--force", help="Use the profile even if it was calibrated on another transformer.", rich_help_panel=o.SKIP)]


CalSpeedup = Annotated[Optional[float], typer.Option("--speedup", help="Write defaults for this speedup: the settings chosen from the new curves as `run --speedup X` would (the defaults given with --threshold etc. are held).", rich_help_panel=o.SKIP), preflight.finite(SPEEDUP_RANGE, example=2)]
CalTune = Annotated[Optional[str], typer.Option("--tune", metavar="[TARGET]", help="Then tune on the calibration's own prompts × seeds, its outputs as the uncached reference (no second reference pass), and write the tuned defaults. TARGET: beat[=DB] (default: beat fewer steps by 0.5 dB), psnr=DB, ssim=V, lpips=V or speedup=X.", rich_help_panel=o.SKIP)]


@o.command
def calibrate(*, load: o.Load, out: ProfileOut = Path("profile.yaml"), force: o.Force = False, prompts: o.Prompts,
              call: o.Call, inputs: o.Inputs, defaults: o.NewDefaults, speedup: CalSpeedup = None,
              tune: CalTune = None, keep_partial: KeepPartial = False, json_: o.Json = False) -> None:
    """Measure a model's per-branch magnitude-ratio curves and write a profile.

    Runs full inference (nothing skipped, outputs unchanged) on every prompt × seed and records, per guidance branch and step, the ratio of the block stack's residual norms.

    Example:

        magcache calibrate --model black-forest-labs/FLUX.1-dev --steps 28 \\
            -p "a cat playing chess" -s 0 -s 1 --out flux.yaml
        magcache calibrate --out demo.yaml --tune
        magcache calibrate --out demo.yaml --speedup 2
    """
    from magcache_cli.cli.calibrated import after_calibration, tune_goal
    from magcache_cli.runner.calibrate import calibrate as run_calibration
    from magcache_cli.runner.loading import device_name

    console.set_json(json_)
    asked = setup.read(load, prompts, call, inputs)
    goal = None if tune is None else tune_goal(tune)
    out = preflight.output_file(out, "--out", default_name="profile.yaml", overwrite=force)
    settled = setup.settle(asked)
    preflight.storable(settled.calibration(), defaults.given())
    job = setup.load(settled, one_process="--tune" if tune is not None else None)
    with job.progress("Calibrating") as bar, _saving_partial(out, job.ranks):
        result = run_calibration(
            job.pipe, job.prompts, job.seeds, job.kwargs, model_id=job.model, revision=job.revision,
            dtype=str(job.dtype).removeprefix("torch."), device=device_name(job.device), defaults=defaults.given(),
            keep_partial=keep_partial, inputs=job.files.provenance, components=job.files.components,
            on_step=job.on_step(bar), exchange=job.ranks, keep_outputs=goal is not None,
            on_run=lambda i, p, s: bar.describe(f"Calibrating {i + 1}/{job.runs} (seed {s})"))
    extra = after_calibration(job, result, speedup, goal, defaults.given(), out) if speedup or goal else {}
    path = _save_profile(out, result.profile) if job.ranks.info.is_main else out
    job.ranks.finish()  # every rank ends with rank 0's write; only rank 0 prints
    if job.ranks.info.is_main:
        console.render_calibration(result, str(path))
        if json_:
            console.emit_json({**_calibration_json(result, path), **extra})


def _save_profile(out: Path, profile) -> Path:
    from magcache_cli.profile.io import save_profile

    return write_or_recover(out, lambda p: save_profile(profile, p, overwrite=True))


@contextmanager
def _saving_partial(out: Path, ranks):
    """On Ctrl-C with --keep-partial, rank 0 saves the runs finished so far (a recovery file if need be)."""
    from magcache_cli.runner.calibrate import CalibrationInterrupted

    try:
        yield
    except CalibrationInterrupted as e:
        if ranks.info.is_main:
            try:
                e.saved_to = _save_profile(out, e.result.profile)
            except RecoveredError as r:
                e.saved_to = r.recovered
        raise


def _calibration_json(result, path: Path) -> dict:
    from magcache_cli.profile.schema import profile_to_dict

    return {
        "profile": str(path),
        "stack": result.stack.paths,
        "guidance_mode": result.profile.calibration.guidance_mode,
        "runs": result.runs,
        "denoiser_calls": result.denoiser_calls,
        "wall_s": round(result.wall_s, 4),
        "window": list(result.window),
        "branches": profile_to_dict(result.profile)["branches"],
    }


@o.command
def run(*, profile: ProfileRef, prompts: o.Prompts, output: Output = Path("out/magcache.png"), skip: o.Skip,
        no_cache: NoCache = False, repeats: o.Repeats = 3, compare: Compare = False, load: o.ProfileLoad,
        force: OtherTransformer = False, call: o.Call, inputs: o.Inputs, json_: o.Json = False) -> None:
    """Generate with step skipping driven by a profile, per guidance branch.

    Call options default to the profile's calibration settings; skip settings to its defaults.

    Example:

        magcache run --profile flux.yaml -p "a cat playing chess" -s 0 \\
            --threshold 0.12 --output cat.png
    """
    from magcache_cli.api import load_profile

    console.set_json(json_)
    asked = setup.read(load, prompts, call, inputs)
    output = preflight.output_file(output, "--output", default_name="magcache.png")
    if compare and no_cache:
        raise UsageError("--compare and --no-cache exclude each other", hint="--compare already runs uncached")
    prof = load_profile(profile)
    settings = skip_settings(prof, skip.threshold, skip.max_skip_steps, skip.retention_ratio,
                             skip.forecast)  # bad values fail before loading
    settled = setup.settle(asked, prof=prof, profile_path=profile_file(profile))
    choice = None
    if skip.speedup is not None:
        choice = speedup_choice(prof, settled.call.steps or prof.calibration.steps, skip.speedup, skip.threshold,
                                skip.max_skip_steps, skip.retention_ratio, skip.forecast, skip.branch_policy)
        settings = choice.settings
    extra = {} if choice is None else {"speedup": choice.to_json()}  # --json: the choice, only when asked
    job = setup.load(settled, one_process="--compare" if compare else None)
    if compare:
        from magcache_cli.cli.quality import run_compare

        return run_compare(job, prof, settings, skip.branch_policy, output, json_, force, repeats, extra)
    result, paths, saved = _generate(job, prof, settings, skip.branch_policy, output, no_cache, force)
    if not job.ranks.info.is_main:
        return
    for w in result.warnings:
        console.warn(w)
    for note in result.notes:
        console.notice(note)
    result.notes[:0] = job.files.notes  # shown before the run
    console.render_run(result, paths, no_cache)
    if json_:
        console.emit_json({**result.to_json(), "no_cache": no_cache, "outputs": paths, **extra})
    saved.raise_if_recovered()


def _generate(job, prof, settings, policy: str, output: Path, no_cache: bool, force: bool):
    """The cached (or plain) runs, each output saved as it comes; (result, paths, SavedOutputs)."""
    from magcache_cli.runner import outputs
    from magcache_cli.runner.inputs import prompt_seed_pairs
    from magcache_cli.runner.run import run as run_cached
    from magcache_cli.runner.shard import merge_run

    ranks = job.ranks
    pairs = prompt_seed_pairs(job.prompts, job.seeds)
    # names from the whole prompt × seed list: each rank writes its share under the names one process uses;
    # context-parallel ranks share each output, which rank 0 writes
    saved = SavedOutputs(outputs.output_paths(output, pairs, job.prompts),
                         enabled=ranks.context_parallel is None or ranks.info.is_main)
    with job.progress("Generating") as bar, saved:
        result = run_cached(job.pipe, job.prompts, job.seeds, job.kwargs, profile=None if no_cache else prof,
                            settings=settings, policy=policy, no_cache=no_cache, force=force,
                            on_step=job.on_step(bar), exchange=ranks, on_output=saved.save,
                            on_run=lambda i, p, s: bar.describe(f"Generating {i + 1}/{len(pairs)}"))
    result, paths = merge_run(ranks, result, saved.written)
    ranks.finish()
    return result, paths, saved


class SavedOutputs:
    """Saves each output the moment it exists, so nothing computed is lost: a failed write goes to a
    recovery file (and the run goes on); a failure or Ctrl-C later says how many outputs are on disk."""

    def __init__(self, targets: list[Path], enabled: bool = True):
        self.targets, self.enabled = targets, enabled
        self.written: list[tuple[int, str]] = []  # (prompt × seed index, path)
        self.recovered: list[RecoveredError] = []

    def save(self, i: int, out) -> None:
        from magcache_cli.runner import outputs

        if not self.enabled:
            return
        try:
            self.written.append((i, str(write_or_recover(self.targets[i], lambda p: outputs.save(out, p)))))
        except RecoveredError as e:
            self.written.append((i, str(e.recovered)))
            self.recovered.append(e)

    def __enter__(self) -> "SavedOutputs":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None and self.written:
            add_note(exc, f"{len(self.written)} of {len(self.targets)} outputs were written first: "
                          f"{', '.join(p for _, p in self.written)}")

    def raise_if_recovered(self) -> None:
        if self.recovered:
            raise MagCacheError(
                f"{len(self.recovered)} of {len(self.targets)} outputs could not be written where asked "
                f"({self.recovered[0].why}); they were saved to {', '.join(str(e.recovered) for e in self.recovered)}",
                hint="move them into place once the problem is fixed")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
    app.command("run")(run)
