"""Options declared once (cli/options.py): a group parameter becomes its fields' flags in place, the group is
rebuilt by field name, and each option's check is part of its type, so every command offering the option
refuses the same bad value before doing anything, whatever the parameter is called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Optional

import pytest
import typer
from typer.testing import CliRunner

from magcache_cli.cli import options as o
from magcache_cli.cli.preflight import at_least
from magcache_cli.runner import loading
from magcache_cli.testing.helpers import invoke


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*a, **k):
        pytest.fail("the model was loaded although the input could be refused before")

    monkeypatch.setattr(loading, "load_pipeline", refuse)


def error_line(r) -> str:
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    (line,) = [x for x in r.output.splitlines() if x.startswith("Error:")]
    return line


# every command that offers the flag, with the arguments it needs besides (none is read: checks come first)
COMMANDS = {
    "calibrate": [],
    "run": ["--profile", "missing.yaml"],
    "tune": ["--profile", "missing.yaml", "--min-psnr", "35"],
    "schedule": ["--profile", "missing.yaml"],
}


@pytest.mark.parametrize("flag, value, words, commands", [
    ("--steps", "0", "--steps must be >= 1, got 0", ("calibrate", "run", "tune", "schedule")),
    ("--height", "-8", "--height must be >= 1, got -8", ("calibrate", "run", "tune")),
    ("--guidance-scale", "nan", "--guidance-scale nan is not a finite number", ("calibrate", "run", "tune")),
    ("--seed", "-1", "--seed -1 is out of range", ("calibrate", "run", "tune")),
    ("--device", "gpu", "unknown --device 'gpu'", ("calibrate", "run", "tune")),
    ("--dtype", "fp8", "unknown --dtype 'fp8'", ("calibrate", "run", "tune")),
    ("--compile", "max", "unknown --compile 'max'", ("calibrate", "run")),
    ("--threshold", "-0.1", "--threshold must be a finite number >= 0, got -0.1", ("calibrate", "run", "schedule")),
    ("--max-skip-steps", "-1", "--max-skip-steps must be >= 0, got -1", ("calibrate", "run", "schedule")),
    ("--retention-ratio", "1", "--retention-ratio must be a number in [0, 1), got 1", ("calibrate", "run", "schedule")),
    ("--forecast", "1.5", "--forecast must be in [0, 1], got 1.5", ("run",)),
    ("--branch-policy", "some", "unknown --branch-policy 'some'", ("run", "tune", "schedule")),
    ("--repeats", "0", "--repeats must be >= 1, got 0", ("run", "tune")),
    ("--min-ssim", "inf", "--min-ssim inf is not a finite number", ("tune",)),
])
def test_each_command_offering_an_option_refuses_the_same_bad_value_first(no_model, flag, value, words, commands):
    for command in commands:
        line = error_line(invoke(command, *COMMANDS[command], flag, value))
        assert words in line, (command, line)


@dataclass
class Knobs:
    size: Annotated[Optional[int], typer.Option(help="A size.", rich_help_panel="Knobs"), at_least(1, 4)] = None
    name_: Annotated[str, typer.Option("--name", help="A name.", rich_help_panel="Knobs")] = "x"
    secret: Annotated[bool, typer.Option("--secret", help="Never offered.")] = False

    HIDDEN: ClassVar[tuple[str, ...]] = ("secret",)


def test_command_spreads_a_group_in_place_and_rebuilds_it():
    seen = []

    @o.command
    def toy(*, first: Annotated[int, typer.Option(help="First.")] = 1, knobs: Knobs,
            last: Annotated[bool, typer.Option("--last", help="Last.")] = False) -> None:
        seen.append((first, knobs, last))

    app = typer.Typer()
    app.command()(toy)
    app.command("other")(lambda: None)  # two commands: invoked by name
    runner = CliRunner()
    r = runner.invoke(app, ["toy", "--size", "3", "--name", "y", "--last", "--first", "2"])
    assert r.exit_code == 0, r.output
    assert seen == [(2, Knobs(size=3, name_="y", secret=False), True)]
    options = [p.opts[0] for p in typer.main.get_command(app).commands["toy"].params]
    assert options == ["--first", "--size", "--name", "--last"]  # the group's flags where it stands; no --secret
    r = runner.invoke(app, ["toy", "--size", "0"])
    assert r.exit_code != 0 and "--size must be >= 1, got 0" in str(r.exception) and len(seen) == 1


def test_an_option_declared_twice_is_refused_when_the_command_is_built():
    with pytest.raises(TypeError, match="toy: size declared more than once"):
        @o.command
        def toy(*, knobs: Knobs, size: Annotated[int, typer.Option(help="Again.")] = 1) -> None:
            pass
