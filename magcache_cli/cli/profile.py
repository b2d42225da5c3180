"""`magcache profile ...`: find, inspect, check, compare, plot, import and export profiles.

Every command that reads a profile takes a path or the name of a shipped profile (`magcache profile list`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from magcache_cli.cli import options as o
from magcache_cli.cli import render as console
from magcache_cli.cli.common import check_policy
from magcache_cli.errors import ProfileError, UsageError
from magcache_cli.types import SKIP_DEFAULTS, BranchPolicy, ExportFormat, GuidanceMode, PadMode

profile_app = typer.Typer(help="Find, inspect, check, compare, plot, import and export profiles.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="Profile file, or the name of a shipped profile (see `magcache profile list`).")]
META = "Metadata"
DEFAULTS = "Defaults written to the profile"


@profile_app.command("list")
def profile_list(json_: o.Json = False) -> None:
    """List the profiles you can use by name: shipped ones and those in MAGCACHE_PROFILE_PATH folders.

    Example:

        magcache profile list
    """
    from magcache_cli.profile.resolve import list_profiles, profile_dirs

    console.set_json(json_)
    rows = list_profiles()
    if json_:
        console.emit_json({"profiles": rows})
    else:
        console.render_profile_list(rows, [str(d) for d in profile_dirs()])


@profile_app.command("show")
def profile_show(ref: Ref, json_: o.Json = False) -> None:
    """Show a profile: provenance, defaults, and per-branch curves with sparklines.

    Example:

        magcache profile show flux1-dev
    """
    from magcache_cli.profile.resolve import load_by_ref
    from magcache_cli.profile.schema import profile_to_dict

    console.set_json(json_)
    prof, path = load_by_ref(ref)
    console.render_profile(prof, str(path))
    if json_:
        console.emit_json(profile_to_dict(prof))


@profile_app.command("validate")
def profile_validate(refs: Annotated[list[str], typer.Argument(help="Profile files or names.")]) -> None:
    """Check profiles against schema v1; exit 1 if any is invalid (for CI).

    Example:

        magcache profile validate profiles/*.yaml
    """
    from magcache_cli.profile.resolve import load_by_ref

    console.set_json(False)
    bad = 0
    for ref in refs:
        try:
            _, path = load_by_ref(ref)
            console.info(f"[green]ok[/]      {path}")
        except ProfileError as e:
            bad += 1
            console.info(f"[red]invalid[/] {e}")
    if bad:
        console.error(f"{bad} of {len(refs)} profile(s) invalid")
        raise typer.Exit(1)


@profile_app.command("diff")
def profile_diff(
    a: Annotated[str, typer.Argument(help="Profile A (file or name).")],
    b: Annotated[str, typer.Argument(help="Profile B (file or name).")],
    branch_policy: Annotated[str, typer.Option(help=f"{o.choices(BranchPolicy)}: the policy of the simulated schedules (joint is run's default).")] = BranchPolicy.JOINT,
    json_: o.Json = False,
) -> None:
    """Compare two profiles: metadata, per-branch curve differences, and the skip schedules they give.

    Both profiles' curves are simulated with A's defaults and with B's defaults, so you see what the curve difference alone does to the schedule. A difference is not an error: the exit code is 0.

    Example:

        magcache profile diff flux.yaml flux1-dev
    """
    from magcache_cli.profile.diff import diff_profiles
    from magcache_cli.profile.resolve import load_by_ref

    console.set_json(json_)
    branch_policy = check_policy(branch_policy)
    (pa, path_a), (pb, path_b) = load_by_ref(a), load_by_ref(b)
    result = diff_profiles(pa, pb, policy=branch_policy)
    if json_:
        console.emit_json({"a": str(path_a), "b": str(path_b), **result})
    else:
        console.render_profile_diff(result, str(path_a), str(path_b))


@profile_app.command("plot")
def profile_plot(
    ref: Ref,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Image file (.png, .svg, .pdf); needs matplotlib (pip install 'magcache-cli\\[plot]'). Without it: a terminal chart.")] = None,
    height: Annotated[int, typer.Option(min=3, help="Terminal chart height in rows.")] = 12,
    width: Annotated[int, typer.Option(min=8, help="Terminal chart width in columns (longer curves are resampled).")] = 72,
) -> None:
    """Plot the ratio curve of every branch with its ±ratio_std band.

    Example:

        magcache profile plot wan2.1-t2v-1.3b --output wan.png
    """
    from magcache_cli.core.charts import ascii_chart
    from magcache_cli.profile.plot import plot_png
    from magcache_cli.profile.resolve import load_by_ref

    console.set_json(False)
    prof, path = load_by_ref(ref)
    if output is not None:
        title = f"{prof.model.id} — {path.stem} ({prof.calibration.steps} steps)"
        console.info(f"Wrote [bold]{plot_png(prof, output, title)}[/]")
        return
    stds = {label: b.ratio_std for label, b in prof.branches.items()}
    curves = {label: b.ratios for label, b in prof.branches.items()}
    console.render_curve_chart(prof, str(path), ascii_chart(curves, stds, height=height, width=width))


@profile_app.command("import")
def profile_import(
    ratios: Annotated[Optional[str], typer.Option(help='The ratios: "1.0, 1.21, 1.11, ..." or a JSON list.')] = None,
    ratios_file: Annotated[Optional[Path], typer.Option(help="File with the ratios (JSON list, or separated by commas/whitespace).")] = None,
    interleaved: Annotated[bool, typer.Option("--interleaved", help="cond/uncond interleaved by call: \\[c0, u0, c1, u1, ...] (official MagCache scripts).")] = False,
    uncond_first: Annotated[bool, typer.Option("--uncond-first", help="With --interleaved: \\[u0, c0, u1, c1, ...] (ComfyUI-MagCache lists).")] = False,
    pad: Annotated[str, typer.Option(help=f"Step-0 1.0 pad (one per branch): {o.choices(PadMode)} (auto: from --steps, else from the list's start).")] = PadMode.AUTO,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id the curve belongs to (required).", rich_help_panel=META)] = None,
    pipeline_class: Annotated[Optional[str], typer.Option(help="Pipeline class, e.g. FluxPipeline (required).", rich_help_panel=META)] = None,
    transformer_class: Annotated[Optional[str], typer.Option(help="Transformer class, e.g. FluxTransformer2DModel (required).", rich_help_panel=META)] = None,
    scheduler_class: Annotated[Optional[str], typer.Option(help="Scheduler class, if known.", rich_help_panel=META)] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Steps per branch; checked against the list's length.", rich_help_panel=META)] = None,
    guidance_mode: Annotated[Optional[str], typer.Option(help=f"{o.choices(GuidanceMode)}. Default: none for one curve, sequential for --interleaved.", rich_help_panel=META)] = None,
    source: Annotated[Optional[str], typer.Option(help="Where the numbers come from (repo, commit, file and lines).", rich_help_panel=META)] = None,
    threshold: Annotated[Optional[float], typer.Option(help=f"Default threshold ({SKIP_DEFAULTS['threshold']:g} if not given).", rich_help_panel=DEFAULTS)] = None,
    max_skip_steps: Annotated[Optional[int], typer.Option(help=f"Default max consecutive skips K ({SKIP_DEFAULTS['max_skip_steps']} if not given).", rich_help_panel=DEFAULTS)] = None,
    retention_ratio: Annotated[Optional[float], typer.Option(help=f"Default retention ratio ({SKIP_DEFAULTS['retention_ratio']:g} if not given).", rich_help_panel=DEFAULTS)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Profile to write. Without it the YAML goes to stdout.")] = None,
    force: o.Force = False,
    json_: o.Json = False,
) -> None:
    """Build a profile from a plain list of ratios, e.g. one printed by another MagCache implementation.

    Example (the interleaved Wan2.1 list of the MagCache scripts, 2 leading 1.0 pads included):

        magcache profile import --ratios-file wan.txt --interleaved --steps 50 \\
            --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers \\
            --pipeline-class WanPipeline \\
            --transformer-class WanTransformer3DModel \\
            --threshold 0.12 --max-skip-steps 4 --out wan.yaml
    """
    from magcache_cli.profile.convert import (
        import_ratios,
        parse_ratios,
        read_ratios_file,
    )
    from magcache_cli.profile.io import dump_profile, save_profile

    console.set_json(json_)
    if (ratios is None) == (ratios_file is None):
        raise UsageError("give the ratios once", hint="pass either --ratios or --ratios-file")
    missing = [f"--{n}" for n, v in (("model", model), ("pipeline-class", pipeline_class),
                                      ("transformer-class", transformer_class)) if not v]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}",
                         hint="name the model, e.g. --model black-forest-labs/FLUX.1-dev --pipeline-class FluxPipeline "
                              "--transformer-class FluxTransformer2DModel")
    if out is not None and out.exists() and not force:
        raise UsageError(f"{out} exists", hint="pass --force to overwrite it, or choose another --out")
    values = parse_ratios(ratios) if ratios is not None else read_ratios_file(ratios_file)
    prof, added = import_ratios(
        values, interleaved=interleaved, uncond_first=uncond_first, pad=pad, steps=steps, model=model,
        pipeline_class=pipeline_class, transformer_class=transformer_class, scheduler_class=scheduler_class,
        guidance_mode=guidance_mode, source=source, threshold=threshold, max_skip_steps=max_skip_steps,
        retention_ratio=retention_ratio)
    if out is None:
        console.emit_text(dump_profile(prof))
        return
    path = save_profile(prof, out, overwrite=force)
    console.render_import(prof, str(path), added)
    if json_:
        console.emit_json({"profile": str(path), "steps": prof.calibration.steps, "pads_added": added,
                           "guidance_mode": prof.calibration.guidance_mode,
                           "branches": {label: b.ratios for label, b in prof.branches.items()}})


@profile_app.command("export")
def profile_export(
    ref: Ref,
    format_: Annotated[str, typer.Option("--format", "-f", help=f"{o.choices(ExportFormat)}: a diffusers MagCacheConfig snippet, or plain JSON lists.")] = ExportFormat.DIFFUSERS,
    branch: Annotated[Optional[str], typer.Option(help="diffusers: the branch whose curve MagCacheConfig gets (default cond, else the first).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="diffusers: num_inference_steps (default: the profile's steps).")] = None,
) -> None:
    """Print the profile for use elsewhere: diffusers' MagCacheConfig snippet, or plain JSON.

    diffusers uses one curve for every guidance pass; the snippet says how far the other branches are.

    Example:

        magcache profile export flux1-dev --format diffusers > magcache_flux.py
    """
    from magcache_cli.profile.convert import (
        EXPORT_FORMATS,
        export_diffusers,
        export_json,
    )
    from magcache_cli.profile.resolve import load_by_ref

    if format_ not in EXPORT_FORMATS:
        raise UsageError(f"unknown --format {format_!r}", hint=f"use one of {', '.join(EXPORT_FORMATS)}")
    prof, path = load_by_ref(ref)
    if format_ == ExportFormat.JSON:
        console.emit_json(export_json(prof, path.stem))
    else:
        console.emit_text(export_diffusers(prof, path.stem, branch=branch, steps=steps))


VerifyPrompt = Annotated[Optional[str], typer.Option("--prompt", "-p", help="Prompt to re-measure on. Default: the profile's first calibration prompt.")]
VerifySeed = Annotated[Optional[int], typer.Option("--seed", "-s", help="Seed to re-measure on. Default: the profile's first calibration seed.")]
Tolerance = Annotated[Optional[float], typer.Option("--tolerance", help="Largest distance (mean |Δ ratio| per step, worst branch) that passes. Default: 0.012, from the demo-model measurements in docs/workflows.md (the same weights, also int8/float8-quantized: 0.0044 at most; a LoRA at scale 0.5: 0.018). Curves that vary more between prompts may need more.")]


@profile_app.command("verify")
@o.command
def profile_verify(*, ref: Ref, load: o.VerifyLoad, prompt: VerifyPrompt = None, seed: VerifySeed = None,
                   tolerance: Tolerance = None, json_: o.Json = False) -> None:
    """Re-measure a profile's curves on one prompt × seed and check they have not moved (exit 1 if they have).

    Loads the profile's model (or --model) with the same --lora / --quantize / --transformer-file set-up as you would run it, calibrates one prompt × seed at the profile's settings, and reports how far each branch's curve moved and what that does to the skip schedule at the profile's defaults. Run it in CI after upgrading diffusers, torch, the weights or an adapter.

    Example:

        magcache profile verify flux.yaml --quantize torchao:int8wo --json
    """
    from magcache_cli.cli import job as setup
    from magcache_cli.profile.resolve import load_by_ref
    from magcache_cli.runner.verify import verify

    console.set_json(json_)
    if tolerance is not None and not tolerance >= 0:
        raise UsageError(f"--tolerance must be a number >= 0, got {tolerance}", hint="e.g. --tolerance 0.02")
    prof, path = load_by_ref(ref)
    cal = prof.calibration
    seeds = [seed if seed is not None else (cal.seeds[0] if cal.seeds else 0)]
    asked = setup.read(load, o.Prompts(prompt=[prompt] if prompt is not None else None, seed=seeds), o.Call(),
                       o.Inputs())
    job = setup.load(setup.settle(asked, prof=prof, profile_path=str(path)), one_process="profile verify")
    with job.progress("Re-measuring", total=job.steps) as bar:
        result = verify(job.pipe, prof, job.kwargs, prompt=job.prompts[0], seed=job.seeds[0], tolerance=tolerance,
                        inputs=job.files.provenance, on_step=lambda _: bar.advance())
    if json_:
        console.emit_json({"profile": str(path), **result.as_dict()})
    else:
        console.render_verify(result, str(path))
    if not result.ok:
        raise typer.Exit(1)
