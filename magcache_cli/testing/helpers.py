"""Small helpers the test suite and benchmarks share (one copy each): drive the CLI in-process, load a tiny
pipeline folder, read a pipeline output's pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def invoke(*args, catch_exceptions: bool = False):
    """Run `magcache <args>` in-process (typer's CliRunner); returns the click Result."""
    from typer.testing import CliRunner

    from magcache_cli.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=catch_exceptions)


def load_tiny(folder: str | Path):
    """Load a saved pipeline folder through the real loading code (`DiffusionPipeline.from_pretrained`)."""
    from magcache_cli.runner.loading import LoadOptions, load_pipeline

    pipe, _, _ = load_pipeline(LoadOptions(str(folder)))
    return pipe


def media(output) -> np.ndarray:
    """The pixels of one pipeline output: its first field that holds pictures (`frames`, `images`, `image`...)."""
    from magcache_cli.runner.outputs import media_field

    return np.asarray(media_field(output)[1])
