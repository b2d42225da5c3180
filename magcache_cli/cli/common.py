"""Helpers every command shares: skip settings from a profile, and the ranks of a job of several
processes (started before loading, stopped by the error boundary). The set-up of calibrate / run / tune is
cli/job.py."""

from __future__ import annotations

import typer

from magcache_cli.errors import DistributedError, UsageError
from magcache_cli.types import BranchPolicy


def skip_settings(prof, threshold, max_skip_steps, retention_ratio, forecast=None):
    from magcache_cli.runner.run import settings_from

    try:
        return settings_from(prof, threshold, max_skip_steps, retention_ratio, forecast)
    except ValueError as e:
        raise UsageError(str(e)) from None


def speedup_choice(prof, steps: int, speedup: float, threshold=None, max_skip_steps=None, retention_ratio=None,
                   forecast=None, policy: BranchPolicy = BranchPolicy.JOINT):
    """`--speedup X`: the settings chosen from the profile's curves (`profile.speedup.choose`), the knobs given
    explicitly held; printed as one line."""
    from magcache_cli.cli import render
    from magcache_cli.profile.speedup import choose

    fixed = {"threshold": threshold, "max_skip_steps": max_skip_steps, "retention_ratio": retention_ratio}
    choice = choose(prof, steps, speedup, check_policy(policy), forecast, fixed)
    render.render_speedup(choice, steps)
    return choice


def check_policy(branch_policy: str) -> str:
    from magcache_cli.types import BranchPolicy

    try:
        return BranchPolicy.parse(branch_policy, "branch_policy")
    except ValueError:
        raise UsageError(f"unknown --branch-policy {branch_policy!r}",
                         hint=f"use one of {', '.join(BranchPolicy.values())}") from None


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
    from magcache_cli.types import Device

    info = rank_info()
    accelerator = resolve_device(device) == Device.CUDA
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
