"""The `magcache` Typer app: global options and the command groups. Nothing else lives here."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Optional

import typer

from magcache_cli.cli import generate, profile, quality
from magcache_cli.cli.common import debug as _debug
from magcache_cli.version import __version__

app = typer.Typer(
    name="magcache",
    help="MagCache for any diffusers DiT pipeline: calibrate once, share the YAML profile, run 2-3x faster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"magcache {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (or set MAGCACHE_DEBUG=1).")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
) -> None:
    if debug:
        _debug["on"] = True
    # The CLI renders every warning from the results it gets; the library's logger would say them twice.
    log = logging.getLogger("magcache")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())
    log.propagate = False
    if os.environ.get("RANK", "0").strip() not in ("", "0") and not _debug["on"]:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # torchrun / accelerate: rank 0 speaks for all ranks


generate.register(app)
app.add_typer(profile.profile_app, name="profile")
quality.register(app)


def main() -> None:
    app()
