"""`magcache calibrate` and `magcache run`: measure a profile, and generate with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.cli import options as o
from magcache_cli.cli import preflight
from magcache_cli.cli import render as console
from magcache_cli.cli.common import (
    DEMO_MODEL,
    DEMO_PROMPTS,
    apply_compile,
    call_setup,
    demo_defaults,
    enable_context_parallel,
    load_pipe,
    progress_bar,
    skip_settings,
    start_ranks,
)
from magcache_cli.cli.errors import add_note
from magcache_cli.cli.inputs import gather, profile_file, split_set
from magcache_cli.errors import MagCacheError, UsageError
from magcache_cli.runner.recovery import RecoveredError, write_or_recover


def calibrate(
    model: o.Model = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Profile to write (YAML).")] = Path("profile.yaml"),
    force: o.Force = False,
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
    threshold: o.NewThreshold = None,
    max_skip_steps: o.NewMaxSkipSteps = None,
    retention_ratio: o.NewRetentionRatio = None,
    revision: o.Revision = None,
    variant: o.Variant = None,
    dtype: o.Dtype = "auto",
    device: o.Device = "auto",
    offload: o.Offload = "none",
    allow_pickle: o.AllowPickle = False,
    trust_remote_code: o.TrustRemoteCode = False,
    vae_tiling: o.VaeTiling = False,
    vae_slicing: o.VaeSlicing = False,
    compile_: o.Compile = "none",
    context_parallel: o.ContextParallel = None,
    keep_partial: Annotated[bool, typer.Option("--keep-partial", help="On Ctrl-C, save the runs already finished as the profile (its `source` says how many).")] = False,
    json_: o.Json = False,
) -> None:
    """Measure a model's per-branch magnitude-ratio curves and write a profile.

    Runs full inference (nothing skipped, outputs unchanged) on every prompt × seed and records, per guidance branch and step, the ratio of the block stack's residual norms.

    Example:

        magcache calibrate --model black-forest-labs/FLUX.1-dev --steps 28 \\
            -p "a cat playing chess" -s 0 -s 1 --out flux.yaml
    """
    from magcache_cli.profile.io import save_profile
    from magcache_cli.runner.calibrate import CalibrationInterrupted
    from magcache_cli.runner.calibrate import calibrate as run_calibration
    from magcache_cli.runner.loading import build_call_kwargs, device_name

    console.set_json(json_)
    set_, set_files = split_set(set_)  # KEY=@PATH items are files, read by `gather`
    pre = preflight.check(locals())
    out = preflight.output_file(out, "--out", default_name="profile.yaml", overwrite=force)
    model = model or DEMO_MODEL
    prompts = pre.prompts or (DEMO_PROMPTS if model == DEMO_MODEL else [])
    if not prompts:
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")
    seeds = seed or [0]
    if model == DEMO_MODEL:
        steps, guidance_scale, height, width = demo_defaults(steps, guidance_scale, height, width)
    defaults = {k: v for k, v in (("threshold", threshold), ("max_skip_steps", max_skip_steps),
                                   ("retention_ratio", retention_ratio)) if v is not None}
    preflight.sizes(model, revision, height, width)
    preflight.storable({"steps": steps, "guidance_scale": guidance_scale, "negative_prompt": negative_prompt,
                        "height": height, "width": width, "num_frames": num_frames, "call_args": pre.call_args,
                        "prompts": prompts, "seeds": seeds}, defaults)
    ranks = start_ranks(device, context_parallel)
    files = gather(image=image, mask_image=mask_image, control_image=control_image, video=video, strength=strength,
                   set_files=set_files, pipeline=pipeline, component=component, model=model, revision=revision)
    pipe, dev, dt = load_pipe(model, revision, variant, dtype, device, offload, allow_pickle, trust_remote_code, files,
                              vae_tiling=vae_tiling, vae_slicing=vae_slicing)
    enable_context_parallel(pipe, ranks)
    apply_compile(pipe, compile_)
    kwargs = build_call_kwargs(pipe, steps=steps, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                               height=height, width=width, num_frames=num_frames,
                               extra={**pre.call_args, **files.values})
    n_steps = kwargs.get("num_inference_steps") or 50
    with progress_bar(len(prompts) * len(seeds), n_steps, "Calibrating") as bar:
        ranks.on_remote = bar.advance
        try:
            result = run_calibration(
                pipe, prompts, seeds, kwargs, model_id=model, revision=revision, dtype=str(dt).removeprefix("torch."),
                device=device_name(dev), defaults=defaults, keep_partial=keep_partial, inputs=files.provenance,
                components=files.components,
                on_step=lambda _: (bar.advance(), ranks.tick()),
                on_run=lambda i, p, s: bar.describe(f"Calibrating {i + 1}/{len(prompts) * len(seeds)} (seed {s})"),
                exchange=ranks,
            )
        except CalibrationInterrupted as e:
            if ranks.info.is_main:
                try:
                    e.saved_to = write_or_recover(out, lambda p: save_profile(e.result.profile, p, overwrite=True))
                except RecoveredError as r:
                    e.saved_to = r.recovered
            raise
    path = write_or_recover(out, lambda p: save_profile(result.profile, p, overwrite=True)) if ranks.info.is_main else out
    ranks.finish()  # every rank ends with rank 0's write; only rank 0 prints
    if not ranks.info.is_main:
        return
    console.render_calibration(result, str(path))
    if json_:
        from magcache_cli.profile.schema import profile_to_dict

        console.emit_json({
            "profile": str(path),
            "stack": result.stack.paths,
            "guidance_mode": result.profile.calibration.guidance_mode,
            "runs": result.runs,
            "denoiser_calls": result.denoiser_calls,
            "wall_s": round(result.wall_s, 4),
            "window": list(result.window),
            "branches": profile_to_dict(result.profile)["branches"],
        })



def run(
    profile: Annotated[str, typer.Option("--profile", "-P", help="Profile file written by `magcache calibrate`, or a shipped profile's name (`magcache profile list`).")],
    prompt: o.Prompt = None,
    prompts_file: o.PromptsFile = None,
    seed: o.Seed = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file; several prompts/seeds give <stem>-p<i>-s<seed><ext>.")] = Path("out/magcache.png"),
    threshold: o.Threshold = None,
    max_skip_steps: o.MaxSkipSteps = None,
    retention_ratio: o.RetentionRatio = None,
    forecast: o.Forecast = None,
    branch_policy: o.BranchPolicy = "joint",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run the plain pipeline (for comparison).", rich_help_panel=o.SKIP)] = False,
    repeats: o.Repeats = 3,
    compare: Annotated[bool, typer.Option("--compare", help="Also run uncached and at fewer steps (same seeds, one model load); report speedup, PSNR/SSIM (LPIPS if available) and write a side-by-side PNG.", rich_help_panel=o.SKIP)] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Load this model instead of the profile's.", rich_help_panel=o.LOAD)] = None,
    force: Annotated[bool, typer.Option("--force", help="Use the profile even if it was calibrated on another transformer.", rich_help_panel=o.SKIP)] = False,
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
    revision: o.Revision = None,
    variant: o.Variant = None,
    dtype: o.Dtype = "auto",
    device: o.Device = "auto",
    offload: o.Offload = "none",
    allow_pickle: o.AllowPickle = False,
    trust_remote_code: o.TrustRemoteCode = False,
    vae_tiling: o.VaeTiling = False,
    vae_slicing: o.VaeSlicing = False,
    compile_: o.Compile = "none",
    context_parallel: o.ContextParallel = None,
    json_: o.Json = False,
) -> None:
    """Generate with step skipping driven by a profile, per guidance branch.

    Call options default to the profile's calibration settings; skip settings to its defaults.

    Example:

        magcache run --profile flux.yaml -p "a cat playing chess" -s 0 \\
            --threshold 0.12 --output cat.png
    """
    from magcache_cli.api import load_profile
    from magcache_cli.runner import outputs
    from magcache_cli.runner.run import run as run_cached
    from magcache_cli.runner.shard import merge_run

    console.set_json(json_)
    set_, set_files = split_set(set_)  # KEY=@PATH items are files, read by `gather`
    pre = preflight.check(locals())
    output = preflight.output_file(output, "--output", default_name="magcache.png")
    if compare and no_cache:
        raise UsageError("--compare and --no-cache exclude each other", hint="--compare already runs uncached")
    prof = load_profile(profile)
    settings = skip_settings(prof, threshold, max_skip_steps, retention_ratio, forecast)  # bad values fail before loading
    if not (pre.prompts or prof.calibration.prompts):
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")
    model_id, rev = model or prof.model.id, revision or (None if model else prof.model.revision)
    cal = prof.calibration
    preflight.sizes(model_id, rev, cal.height if height is None else height, cal.width if width is None else width)
    ranks = start_ranks(device, context_parallel)
    if compare and ranks.info.distributed:
        raise UsageError("--compare runs in one process", hint="start it without torchrun or accelerate launch")
    files = gather(image=image, mask_image=mask_image, control_image=control_image, video=video, strength=strength,
                   set_files=set_files, pipeline=pipeline, component=component, model=model, revision=revision,
                   profile=prof, profile_path=profile_file(profile))
    pipe, _, _ = load_pipe(model_id, rev, variant, dtype, device, offload, allow_pickle, trust_remote_code, files,
                           vae_tiling=vae_tiling, vae_slicing=vae_slicing)
    enable_context_parallel(pipe, ranks)
    apply_compile(pipe, compile_)
    prompts, seeds, kwargs = call_setup(prof, pre, seed, steps, guidance_scale, negative_prompt, height, width,
                                        num_frames, pipe, all_prompts=False, inputs=files)
    for note in files.notes:
        console.notice(note)
    if compare:
        from magcache_cli.cli.quality import run_compare

        return run_compare(pipe, prof, prompts, seeds, kwargs, settings, branch_policy, output, json_, force,
                           repeats)
    n = kwargs["num_inference_steps"]
    pairs = [(p, s) for p in prompts for s in seeds]
    # names from the whole prompt × seed list: each rank writes its share under the names one process uses;
    # context-parallel ranks share each output, which rank 0 writes
    saved = SavedOutputs(outputs.output_paths(output, pairs, prompts),
                         enabled=ranks.context_parallel is None or ranks.info.is_main)
    with progress_bar(len(pairs), n, "Generating") as bar, saved:
        ranks.on_remote = bar.advance
        result = run_cached(pipe, prompts, seeds, kwargs, profile=None if no_cache else prof, settings=settings,
                            policy=branch_policy, no_cache=no_cache, force=force,
                            on_step=lambda _: (bar.advance(), ranks.tick()),
                            on_run=lambda i, p, s: bar.describe(f"Generating {i + 1}/{len(pairs)}"),
                            exchange=ranks, on_output=saved.save)
    result, paths = merge_run(ranks, result, saved.written)
    ranks.finish()
    if not ranks.info.is_main:
        return
    for w in result.warnings:
        console.warn(w)
    for note in result.notes:
        console.notice(note)
    result.notes[:0] = files.notes  # shown before the run
    console.render_run(result, paths, no_cache)
    if json_:
        console.emit_json({**result.to_json(), "no_cache": no_cache, "outputs": paths})
    saved.raise_if_recovered()


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
