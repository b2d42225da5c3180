"""Helpers every command shares: the error boundary, model loading with a status line, skip settings and
call arguments defaulting to a profile's calibration. Commands stay thin: parse, call the library, render."""

from __future__ import annotations

import functools
import os
import traceback

import typer

from magcache_cli.cli import render as console
from magcache_cli.errors import MagCacheError, UsageError

DEMO_MODEL = "builtin:demo"
DEMO_PROMPTS = ["a handwritten digit three", "a handwritten digit seven"]
debug = {"on": os.environ.get("MAGCACHE_DEBUG") == "1"}


def boundary(fn):
    """Library errors become `Error: <what> — <what to do next>` and exit 1; --debug shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MagCacheError as e:
            if debug["on"]:
                traceback.print_exc()
            console.error(str(e))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.error("interrupted")
            raise typer.Exit(130) from None
    return wrapper


def load_pipe(model, revision, variant, dtype, device, offload, allow_pickle, trust_remote_code):
    from magcache_cli.runner.loading import LoadOptions, load_pipeline, quiet_libraries

    quiet_libraries()
    with console.console().status(f"Loading {model} …"):
        return load_pipeline(LoadOptions(model, revision, variant, dtype, device, offload, allow_pickle, trust_remote_code))


def apply_compile(pipe, mode: str) -> None:
    if mode not in ("none", "repeated", "full"):
        raise UsageError(f"unknown --compile {mode!r}", hint="use none, repeated or full")
    if mode != "none":
        from magcache_cli.core.compile import compile_pipeline

        compile_pipeline(pipe, mode=mode)


def skip_settings(prof, threshold, max_skip_steps, retention_ratio):
    from magcache_cli.runner.run import settings_from

    try:
        return settings_from(prof, threshold, max_skip_steps, retention_ratio)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_policy(branch_policy: str) -> str:
    from magcache_cli.types import BranchPolicy

    if branch_policy not in BranchPolicy.values():
        raise UsageError(f"unknown --branch-policy {branch_policy!r}", hint="use joint or independent")
    return branch_policy


def call_setup(prof, prompt, prompts_file, seed, steps, guidance_scale, negative_prompt, height, width, num_frames,
                set_, pipe, all_prompts: bool):
    """Prompts, seeds and call arguments, defaulting to the profile's calibration (as `run` does)."""
    from magcache_cli.runner.loading import build_call_kwargs, parse_set, read_prompts

    cal = prof.calibration
    prompts = read_prompts(prompt, prompts_file) or (cal.prompts if all_prompts else cal.prompts[:1])
    if not prompts:
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")
    kwargs = build_call_kwargs(
        pipe, steps=steps or cal.steps,
        guidance_scale=guidance_scale if guidance_scale is not None else cal.guidance_scale,
        negative_prompt=negative_prompt if negative_prompt is not None else cal.negative_prompt,
        height=height or cal.height, width=width or cal.width, num_frames=num_frames or cal.num_frames,
        extra={**cal.call_args, **parse_set(set_)})
    return prompts, list(seed or [0]), kwargs


def progress_bar(total_runs: int, steps: int, label: str):
    """Callbacks for calibrate/run that drive one progress bar over runs × steps."""
    return console.progress(total_runs * max(1, steps), label)

def demo_defaults(steps, guidance_scale, height, width):
    from magcache_cli.runner.loading import DEMO_CALL

    return (steps or DEMO_CALL["num_inference_steps"], guidance_scale or DEMO_CALL["guidance_scale"],
            height or DEMO_CALL["height"], width or DEMO_CALL["width"])
