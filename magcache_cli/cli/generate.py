"""`magcache calibrate` and `magcache run`: measure a profile, and generate with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.cli import options as o
from magcache_cli.cli import render as console
from magcache_cli.cli.common import (
    DEMO_MODEL,
    DEMO_PROMPTS,
    apply_compile,
    boundary,
    call_setup,
    check_policy,
    demo_defaults,
    enable_context_parallel,
    load_pipe,
    progress_bar,
    skip_settings,
    start_ranks,
)
from magcache_cli.errors import UsageError


@boundary
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
    threshold: o.Threshold = None,
    max_skip_steps: o.MaxSkipSteps = None,
    retention_ratio: o.RetentionRatio = None,
    revision: o.Revision = None,
    variant: o.Variant = None,
    dtype: o.Dtype = "auto",
    device: o.Device = "auto",
    offload: o.Offload = "none",
    allow_pickle: o.AllowPickle = False,
    trust_remote_code: o.TrustRemoteCode = False,
    compile_: o.Compile = "none",
    context_parallel: o.ContextParallel = None,
    json_: o.Json = False,
) -> None:
    """Measure a model's per-branch magnitude-ratio curves and write a profile.

    Runs full inference (nothing skipped, outputs unchanged) on every prompt × seed and records, per
    guidance branch and step, the ratio of the block stack's residual norms.

    Example:

        magcache calibrate --model black-forest-labs/FLUX.1-dev --steps 28 -p "a cat playing chess" -s 0 -s 1 --out flux.yaml
    """
    from magcache_cli.profile.io import save_profile
    from magcache_cli.runner.calibrate import calibrate as run_calibration
    from magcache_cli.runner.loading import (
        build_call_kwargs,
        device_name,
        parse_set,
        read_prompts,
    )

    console.set_json(json_)
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out} exists", hint="pass --force to overwrite it, or choose another --out")
    model = model or DEMO_MODEL
    prompts = read_prompts(prompt, prompts_file) or (DEMO_PROMPTS if model == DEMO_MODEL else [])
    if not prompts:
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")
    seeds = seed or [0]
    if model == DEMO_MODEL:
        steps, guidance_scale, height, width = demo_defaults(steps, guidance_scale, height, width)
    ranks = start_ranks(device, context_parallel)
    pipe, dev, dt = load_pipe(model, revision, variant, dtype, device, offload, allow_pickle, trust_remote_code)
    enable_context_parallel(pipe, ranks)
    apply_compile(pipe, compile_)
    kwargs = build_call_kwargs(pipe, steps=steps, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                               height=height, width=width, num_frames=num_frames, extra=parse_set(set_))
    defaults = {k: v for k, v in (("threshold", threshold), ("max_skip_steps", max_skip_steps),
                                   ("retention_ratio", retention_ratio)) if v is not None}
    n_steps = kwargs.get("num_inference_steps") or 50
    with progress_bar(len(prompts) * len(seeds), n_steps, "Calibrating") as bar:
        ranks.on_remote = bar.advance
        result = run_calibration(
            pipe, prompts, seeds, kwargs, model_id=model, revision=revision, dtype=str(dt).removeprefix("torch."),
            device=device_name(dev), defaults=defaults,
            on_step=lambda _: (bar.advance(), ranks.tick()),
            on_run=lambda i, p, s: bar.describe(f"Calibrating {i + 1}/{len(prompts) * len(seeds)} (seed {s})"),
            exchange=ranks,
        )
    path = save_profile(result.profile, out, overwrite=force) if ranks.info.is_main else out
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



@boundary
def run(
    profile: Annotated[str, typer.Option("--profile", "-P", help="Profile file written by `magcache calibrate`, or a shipped profile's name (`magcache profile list`).")],
    prompt: o.Prompt = None,
    prompts_file: o.PromptsFile = None,
    seed: o.Seed = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file; several prompts/seeds give <stem>-p<i>-s<seed><ext>.")] = Path("out/magcache.png"),
    threshold: o.Threshold = None,
    max_skip_steps: o.MaxSkipSteps = None,
    retention_ratio: o.RetentionRatio = None,
    branch_policy: o.BranchPolicy = "joint",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run the plain pipeline (for comparison).", rich_help_panel=o.SKIP)] = False,
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
    revision: o.Revision = None,
    variant: o.Variant = None,
    dtype: o.Dtype = "auto",
    device: o.Device = "auto",
    offload: o.Offload = "none",
    allow_pickle: o.AllowPickle = False,
    trust_remote_code: o.TrustRemoteCode = False,
    compile_: o.Compile = "none",
    context_parallel: o.ContextParallel = None,
    json_: o.Json = False,
) -> None:
    """Generate with step skipping driven by a profile, per guidance branch.

    Call options default to the profile's calibration settings; skip settings to its defaults.

    Example:

        magcache run --profile flux.yaml -p "a cat playing chess" -s 0 --threshold 0.12 --output cat.png
    """
    from magcache_cli.api import load_profile
    from magcache_cli.runner import outputs
    from magcache_cli.runner.run import run as run_cached
    from magcache_cli.runner.shard import merge_run

    console.set_json(json_)
    branch_policy = check_policy(branch_policy)
    prof = load_profile(profile)
    settings = skip_settings(prof, threshold, max_skip_steps, retention_ratio)  # bad values fail before loading
    if not (prompt or prompts_file or prof.calibration.prompts):
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")
    ranks = start_ranks(device, context_parallel)
    if compare and ranks.info.distributed:
        raise UsageError("--compare runs in one process", hint="start it without torchrun or accelerate launch")
    pipe, _, _ = load_pipe(model or prof.model.id, revision or (None if model else prof.model.revision), variant,
                       dtype, device, offload, allow_pickle, trust_remote_code)
    enable_context_parallel(pipe, ranks)
    apply_compile(pipe, compile_)
    prompts, seeds, kwargs = call_setup(prof, prompt, prompts_file, seed, steps, guidance_scale, negative_prompt,
                                         height, width, num_frames, set_, pipe, all_prompts=False)
    if compare:
        if no_cache:
            raise UsageError("--compare and --no-cache exclude each other", hint="--compare already runs uncached")
        from magcache_cli.cli.quality import run_compare

        return run_compare(pipe, prof, prompts, seeds, kwargs, settings, branch_policy, output, json_, force)
    n = kwargs["num_inference_steps"]
    with progress_bar(len(prompts) * len(seeds), n, "Generating") as bar:
        ranks.on_remote = bar.advance
        result = run_cached(pipe, prompts, seeds, kwargs, profile=None if no_cache else prof, settings=settings,
                            policy=branch_policy, no_cache=no_cache, force=force,
                            on_step=lambda _: (bar.advance(), ranks.tick()),
                            on_run=lambda i, p, s: bar.describe(f"Generating {i + 1}/{len(prompts) * len(seeds)}"),
                            exchange=ranks)
    # names from the whole prompt × seed list: each rank writes its share under the names one process uses
    targets = outputs.output_paths(output, [(p, s) for p in prompts for s in seeds], prompts)
    writes = ranks.context_parallel is None or ranks.info.is_main  # context-parallel ranks share each output
    paths = [(i, str(outputs.save(out, targets[i]))) for i, out in zip(result.indices, result.outputs) if writes]
    result, paths = merge_run(ranks, result, paths)
    ranks.finish()
    if not ranks.info.is_main:
        return
    for w in result.warnings:
        console.warn(w)
    for note in result.notes:
        console.notice(note)
    console.render_run(result, paths, no_cache)
    if json_:
        console.emit_json({**result.to_json(), "no_cache": no_cache, "outputs": paths})


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
    app.command("run")(run)
