"""The `magcache` Typer app: global options, the command groups, and the one error boundary.

Every command runs inside `MagCacheGroup`, so every failure — ours, diffusers', torch's, the OS's — ends as
one line `Error: <what> — <what to do next>` with a non-zero exit code (`cli/errors.py` words it); `--debug`
anywhere on the line, or MAGCACHE_DEBUG=1, adds the traceback. The command line is also rewritten here
before click parses it: `--debug` is taken out wherever it stands, and an option that may be given bare gets
its implied value (`--compile` alone means `--compile auto`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from magcache_cli.cli import generate, profile, quality
from magcache_cli.cli import render as console
from magcache_cli.cli.errors import explain
from magcache_cli.version import __version__

try:  # typer >= 0.22 parses with its own copy of click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer
    import click

# option -> the value it means when given bare (followed by another option, or last on the line)
BARE_VALUES = {"--compile": "auto", "--beat-fewer-steps": "0.5", "--tune": "beat"}
_state = {"debug": False}


def rewrite_args(args: Sequence[str]) -> tuple[list[str], bool]:
    """(the arguments without `--debug`, whether it was given), with bare optional-value options filled in.
    Everything after a lone `--` is left as it is."""
    args, out, debug = list(args), [], False
    for i, a in enumerate(args):
        if a == "--":
            out += args[i:]
            break
        if a == "--debug":
            debug = True
            continue
        out.append(a)
        if a in BARE_VALUES and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(BARE_VALUES[a])
    return out, debug


def _quiet(option: Any) -> Any:
    if option is not None and getattr(option, "is_flag", False) and option.metavar is None:
        option.metavar = ""
    return option


def _quiet_flags(cmd: Any) -> None:
    """No `<bool>` placeholder after a flag in --help (a flag takes no value), --help itself included."""
    for p in cmd.params:
        _quiet(p)
    if not getattr(cmd.get_help_option, "_quiet", False):
        make = cmd.get_help_option

        def get_help_option(ctx: Any) -> Any:
            return _quiet(make(ctx))

        get_help_option._quiet = True
        cmd.get_help_option = get_help_option
    for sub in getattr(cmd, "commands", {}).values():
        _quiet_flags(sub)


def fail(exc: BaseException) -> int:
    """Print `exc` as the one error line (the traceback first with --debug); return the exit code."""
    from magcache_cli.cli.common import stop_ranks

    if stop_ranks(exc):  # a rank other than 0 of a torchrun job: rank 0 prints the job's one line
        return 1
    explained = explain(exc)
    if _state["debug"]:
        console.traceback(exc)
    console.error(explained.line())
    return explained.exit_code


class MagCacheGroup(TyperGroup):
    """The app's click group: the boundary around parsing (`main`) and around every command (`invoke`)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        args, debug = rewrite_args(sys.argv[1:] if args is None else args)
        _state["debug"] = debug or os.environ.get("MAGCACHE_DEBUG", "").strip() not in ("", "0")
        _quiet_flags(self)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0  # click returns an Exit's code when not standalone
        except click.exceptions.NoArgsIsHelpError as e:  # the help was printed
            code = e.exit_code
        except click.ClickException as e:  # bad usage: one line too
            ctx = getattr(e, "ctx", None)
            console.error(f"{e.format_message()} — see `{ctx.command_path if ctx else 'magcache'} --help`")
            code = e.exit_code
        except typer.Abort:
            code = fail(KeyboardInterrupt())
        except Exception as e:  # raised while parsing (an option callback), before `invoke`
            code = fail(e)
        sys.exit(code)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except (Exception, KeyboardInterrupt) as e:
            raise typer.Exit(fail(e)) from None


app = typer.Typer(
    name="magcache",
    help="MagCache for any diffusers DiT pipeline: calibrate once, share the YAML profile, run 2-3x faster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=MagCacheGroup,
)


# Notices printed while diffusers imports, true on every run of this machine and nothing a user of this CLI
# can act on: transformers' image processors falling back to PIL without torchvision (CLIPImageProcessor,
# SiglipImageProcessor); torchao (an optional extra diffusers' quantizers import) naming the CUDA kernels it
# cannot load, torch's pytree warning about the enums torchao registers, and diffusers saying torchao's tensor
# classes did not import. Only these records are dropped (logger, words in the message); every other warning
# still shows, and the library itself filters nothing.
FALLBACK_LOGGER = "transformers.utils.import_utils"
FALLBACK_WORDS = "requires torchvision (not installed); falling back to"
IMPORT_NOTICES = (
    (FALLBACK_LOGGER, FALLBACK_WORDS),
    ("torchao", "Failed to load "),
    ("torch.utils._pytree", "is an Enum subclass and is now natively supported by torch.compile"),
    ("diffusers.quantizers.torchao.torchao_quantizer", "Unable to import `torchao` Tensor objects"),
)


class _DropNotice(logging.Filter):
    def __init__(self, words: str):
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


def quiet_fallback_notices() -> None:
    """Drop the import notices above in this process (the CLI's, not the library's). Nothing is imported: each
    filter waits on the logger the library will log through."""
    for name, words in IMPORT_NOTICES:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.words == words for f in log.filters):
            log.addFilter(_DropNotice(words))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"magcache {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error (anywhere on the line; or set MAGCACHE_DEBUG=1).")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
) -> None:
    """`--debug` is taken out of the line by `MagCacheGroup.main`; it is declared here for --help."""
    # The CLI renders every warning from the results it gets; the library's logger would say them twice.
    log = logging.getLogger("magcache")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())
    log.propagate = False
    quiet_fallback_notices()
    if os.environ.get("RANK", "0").strip() not in ("", "0") and not _state["debug"]:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # torchrun / accelerate: rank 0 speaks for all ranks


generate.register(app)
app.add_typer(profile.profile_app, name="profile")
quality.register(app)


def main() -> None:
    app()
