"""Helpers every command shares: model loading with a status line, skip settings and
call arguments defaulting to a profile's calibration. Commands stay thin: parse, call the library, render."""

from __future__ import annotations

import typer

from magcache_cli.cli import render as console
from magcache_cli.errors import DistributedError, UsageError

DEMO_MODEL = "builtin:demo"
DEMO_PROMPTS = ["a handwritten digit three", "a handwritten digit seven"]


def load_pipe(model, revision, variant, dtype, device, offload, allow_pickle, trust_remote_code, inputs=None,
              vae_tiling: bool = False, vae_slicing: bool = False):
    """Load the pipeline; `inputs` (cli/inputs.CallInputs) names another class and extra components; the VAE
    switches are `--vae-tiling` / `--vae-slicing`."""
    from magcache_cli.runner.loading import LoadOptions, load_pipeline, quiet_libraries

    quiet_libraries()
    with console.console().status(f"Loading {model} …"):
        return load_pipeline(LoadOptions(model, revision, variant, dtype, device, offload, allow_pickle, trust_remote_code,
                                         vae_tiling=vae_tiling, vae_slicing=vae_slicing,
                                         pipeline=inputs.pipeline if inputs else None,
                                         components=inputs.components if inputs else None))


def apply_compile(pipe, mode: str) -> None:
    """`--compile`: none, repeated, full, or auto (bare `--compile`: repeated blocks where declared, else full)."""
    if mode != "none":
        from magcache_cli.core.compile import compile_pipeline

        compile_pipeline(pipe, mode=mode)


def skip_settings(prof, threshold, max_skip_steps, retention_ratio, forecast=None):
    from magcache_cli.runner.run import settings_from

    try:
        return settings_from(prof, threshold, max_skip_steps, retention_ratio, forecast)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_policy(branch_policy: str) -> str:
    from magcache_cli.types import BranchPolicy

    try:
        return BranchPolicy.parse(branch_policy, "branch_policy")
    except ValueError:
        raise UsageError(f"unknown --branch-policy {branch_policy!r}",
                         hint=f"use one of {', '.join(BranchPolicy.values())}") from None


def call_setup(prof, pre, seed, steps, guidance_scale, negative_prompt, height, width, num_frames, pipe,
               all_prompts: bool, inputs=None):
    """Prompts, seeds and call arguments, defaulting to the profile's calibration (as `run` does). `pre` is
    what `preflight.check` read: the prompts given and the parsed --set; `inputs` (cli/inputs.CallInputs) the
    files read. Arguments given now must fit the pipeline; inherited ones it does not take are dropped with
    a note in `inputs.notes`."""
    from magcache_cli.runner.classes import call_arguments
    from magcache_cli.runner.inputs import drop_unaccepted
    from magcache_cli.runner.loading import build_call_kwargs

    cal = prof.calibration
    prompts = pre.prompts or (cal.prompts if all_prompts else cal.prompts[:1])
    if not prompts:
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")

    def given(v, default):
        return default if v is None else v

    named = {"guidance_scale": guidance_scale, "negative_prompt": negative_prompt, "height": height, "width": width,
             "num_frames": num_frames}
    now = {**{k: v for k, v in named.items() if v is not None}, **pre.call_args,
           **(inputs.values if inputs else {})}  # a --set value of None is passed (--set KEY=null)
    inherited = {k: getattr(cal, k) for k in named if getattr(cal, k) is not None}
    inherited, notes = drop_unaccepted({k: v for k, v in {**inherited, **cal.call_args}.items() if k not in now},
                                       call_arguments(pipe), "calibration")
    if inputs is not None:
        inputs.notes += notes
    kwargs = build_call_kwargs(pipe, steps=given(steps, cal.steps), extra={**inherited, **now})
    return prompts, list(seed or [0]), kwargs


def progress_bar(total_runs: int, steps: int, label: str):
    """Callbacks for calibrate/run that drive one progress bar over runs × steps."""
    return console.progress(total_runs * max(1, steps), label)


def demo_defaults(steps, guidance_scale, height, width):
    from magcache_cli.runner.loading import DEMO_CALL

    def given(v, key):
        return DEMO_CALL[key] if v is None else v

    return (given(steps, "num_inference_steps"), given(guidance_scale, "guidance_scale"), given(height, "height"),
            given(width, "width"))


# ------------------------------------------------------------------------------------- several processes

_ranks: dict = {"exchange": None}  # the running command's ranks, for the error boundary


def start_ranks(device: str, context_parallel: str | None = None):
    """The exchange of this command's ranks: under torchrun / accelerate launch (WORLD_SIZE > 1) the process
    group is initialised here, NCCL on cuda:LOCAL_RANK or gloo on CPU; alone, an exchange that does nothing.
    `--context-parallel` is checked before any model is loaded."""
    from magcache_cli.core.distributed import (
        Exchange,
        RankInfo,
        init_process_group,
        rank_info,
        timeout_s,
    )
    from magcache_cli.runner.loading import resolve_device
    from magcache_cli.runner.shard import ContextParallel, check_context_parallel

    info = rank_info()
    accelerator = resolve_device(device) == "cuda"
    cp = None
    if context_parallel is not None:
        try:
            cp = ContextParallel.parse(context_parallel)
        except ValueError as e:
            raise UsageError(str(e).replace("context_parallel", "--context-parallel"),
                             hint="e.g. --context-parallel ulysses=2") from None
        check_context_parallel(cp, info, accelerator)
    init_process_group(info, accelerator, timeout_s())
    exchange = Exchange(info, RankInfo() if cp else info)
    exchange.context_parallel = cp
    _ranks["exchange"] = exchange
    if info.distributed:
        import atexit

        atexit.register(exchange.close)  # after rank 0 printed the error line, if any
    return exchange


def one_line(e: BaseException) -> str:
    """What rank 0's error line says about a failure on this rank: the boundary's wording (cli/errors.py)."""
    from magcache_cli.cli.errors import explain

    return explain(e).line()


def stop_ranks(e: BaseException) -> bool:
    """The error boundary's part in a job of several processes: tell the other ranks that this one failed
    (they stop at their next exchange), unless they told this one. True on ranks other than 0, which exit 1
    without printing: rank 0 prints the job's one error line."""
    exchange = _ranks["exchange"]
    if exchange is None or not exchange.info.distributed or isinstance(e, (KeyboardInterrupt, typer.Exit)):
        return False
    if not (isinstance(e, DistributedError) and e.remote):
        exchange.fail(one_line(e))
    return not exchange.info.is_main


def enable_context_parallel(pipe, exchange) -> None:
    if getattr(exchange, "context_parallel", None) is not None:
        from magcache_cli.core.stacks import find_denoisers
        from magcache_cli.runner.shard import enable_context_parallel as enable

        enable(pipe, exchange.context_parallel, find_denoisers(pipe))
