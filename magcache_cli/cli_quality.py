"""`magcache tune`, `magcache schedule` and `run --compare`: quality you can see before trusting a profile."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the quality commands to the main app (called from cli._register_subcommands)."""


def run_compare(pipe, prof, prompts, seeds, kwargs, settings, policy, output, json_) -> None:
    from .errors import MagCacheError

    raise MagCacheError("run --compare is not implemented yet")
