"""`magcache profile ...`: inspect, check and convert profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import console
from . import options as o
from .cli import _boundary
from .errors import ProfileError

profile_app = typer.Typer(help="Inspect, check and convert profiles.", no_args_is_help=True)


@profile_app.command("show")
@_boundary
def profile_show(path: Annotated[Path, typer.Argument(help="Profile file.")], json_: o.Json = False) -> None:
    """Show a profile: provenance, defaults, and per-branch curves with sparklines.

    Example:

        magcache profile show profiles/flux1-dev.yaml
    """
    from .profile import load_profile, profile_to_dict

    console.set_json(json_)
    prof = load_profile(path)
    console.render_profile(prof, str(path))
    if json_:
        console.emit_json(profile_to_dict(prof))


@profile_app.command("validate")
def profile_validate(paths: Annotated[list[Path], typer.Argument(help="Profile files.")]) -> None:
    """Check profiles against schema v1; exit 1 if any is invalid (for CI).

    Example:

        magcache profile validate profiles/*.yaml
    """
    from .profile import load_profile

    bad = 0
    for p in paths:
        try:
            load_profile(p)
            console.info(f"[green]ok[/]      {p}")
        except ProfileError as e:
            bad += 1
            console.info(f"[red]invalid[/] {e}")
    if bad:
        console.error(f"{bad} of {len(paths)} profile(s) invalid")
        raise typer.Exit(1)


