"""The `magcache` Typer app: global options and the command groups. Nothing else lives here."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from magcache_cli.version import __version__
from magcache_cli.cli import generate, profile, quality
from magcache_cli.cli.common import debug as _debug

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


generate.register(app)
app.add_typer(profile.profile_app, name="profile")
quality.register(app)


def main() -> None:
    app()
