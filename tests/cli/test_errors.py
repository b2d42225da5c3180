"""The error table (cli/errors.py), the command-line rewrites and the help pages, without a model."""

from __future__ import annotations

import errno
import inspect
import os
import re
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from magcache_cli.cli.app import app, rewrite_args
from magcache_cli.cli.errors import RULES, add_note, explain, to_cli
from magcache_cli.errors import LoadError, ProfileError, UsageError


def test_library_words_become_flags():
    assert to_cli("pass `overwrite=True` to replace it") == "pass --force to replace it"
    assert to_cli("compile the whole transformer instead (`mode=full`)") == "compile the whole transformer instead (--compile full)"
    assert to_cli("unknown `pad` 'x'; use `guidance_mode=batched`") == "unknown --pad 'x'; use --guidance-mode batched"
    assert to_cli("check `num_inference_steps`") == "check --steps"
    # backticked words that are not parameters stay as they are
    assert to_cli("run `magcache calibrate` on `_repeated_blocks`") == "run `magcache calibrate` on `_repeated_blocks`"


def test_a_library_error_keeps_its_message_and_gets_cli_words():
    e = explain(ProfileError("p.yaml already exists", hint="pass `overwrite=True` to replace it"))
    assert e.line() == "p.yaml already exists — pass --force to replace it" and e.exit_code == 1


def hub_error(cls_name: str, status: int = 404):
    import huggingface_hub.errors as hub

    response = SimpleNamespace(status_code=status, headers={}, request=None,
                               url="https://huggingface.co/api/models/org/model/revision/main")
    return getattr(hub, cls_name)("hub said no", response=response)


@pytest.mark.parametrize("exc, words", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "the GPU ran out of memory — try --offload model"),
    (MemoryError(), "out of memory — try --dtype bfloat16"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/p.yaml"), "the disk is full: /data/p.yaml — free some space"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/x"), "read-only file system: /ro/x"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "permission denied: /root/x"),
    (KeyboardInterrupt(), "interrupted — nothing of the unfinished work was written"),
    (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero — run again with --debug"),
])
def test_known_causes_have_their_own_line(exc, words):
    assert explain(exc).line().startswith(words)


def test_hub_failures_are_told_apart(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    gated = explain(LoadError("could not load org/model: hub said no").with_traceback(None))
    assert "could not load org/model" in gated.line()  # no cause: the library's own line
    for cls, words in [("GatedRepoError", "org/model is gated"), ("RepositoryNotFoundError", "no such model repo"),
                       ("RevisionNotFoundError", "check --revision")]:
        try:
            raise LoadError("could not load org/model: hub said no") from hub_error(cls)
        except LoadError as e:
            assert words in explain(e).line(), cls
    assert "HTTP 401" in explain(hub_error("HfHubHTTPError", 401)).line()


def test_a_wrapped_cause_only_speaks_for_wrappers():
    # a UsageError raised while handling an OSError keeps its own (better) words
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "prompts.txt")
        except OSError as e:
            raise UsageError("cannot read --prompts-file prompts.txt (Permission denied)", hint="check it") from e
    except UsageError as e:
        assert explain(e).line() == "cannot read --prompts-file prompts.txt (Permission denied) — check it"


def test_notes_are_part_of_the_line():
    e = RuntimeError("CUDA out of memory")
    add_note(e, "2 of 4 outputs were written first: a.png, b.png")
    assert explain(e).what == "the GPU ran out of memory (2 of 4 outputs were written first: a.png, b.png)"


def test_every_rule_has_a_next_step():
    samples = [RuntimeError("out of memory"), MemoryError(), KeyboardInterrupt(), OSError(errno.ENOSPC, "full"),
               OSError(errno.EROFS, "ro"), PermissionError(errno.EACCES, "no"), OSError(errno.EIO, "io")]
    for exc in samples:
        assert explain(exc).next, exc
    assert len({r.name for r in RULES}) == len(RULES)


@pytest.mark.parametrize("args, out, debug", [
    (["run", "--debug", "-p", "x"], ["run", "-p", "x"], True),
    (["--debug", "run"], ["run"], True),
    (["run", "--compile"], ["run", "--compile", "auto"], False),
    (["run", "--compile", "--json"], ["run", "--compile", "auto", "--json"], False),
    (["run", "--compile", "full"], ["run", "--compile", "full"], False),
    (["run", "--", "--debug", "--compile"], ["run", "--", "--debug", "--compile"], False),
])
def test_rewrite_args(args, out, debug):
    assert rewrite_args(args) == (out, debug)


def test_usage_errors_are_one_line_too():
    r = CliRunner().invoke(app, ["run", "--profile", "x", "--steps", "many"])
    assert r.exit_code == 2
    (line,) = [x for x in r.output.splitlines() if x.strip()]
    assert line.startswith("Error: Invalid value for '--steps'") and "see `magcache run --help`" in line


COMMANDS = [["calibrate"], ["run"], ["tune"], ["schedule"], ["profile", "list"], ["profile", "show"],
            ["profile", "validate"], ["profile", "diff"], ["profile", "plot"], ["profile", "import"],
            ["profile", "export"]]


def help_text(*command: str) -> str:
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_examples_copy_paste(command):
    """Every example line of a command's docstring appears whole in its --help at 80 columns (no wrapping
    inside a command), and flags show no `<bool>` placeholder."""
    from typer.main import get_command

    cmd = get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    doc = inspect.cleandoc(cmd.callback.__doc__ or "")
    examples = [line.strip() for line in doc.splitlines() if line.strip().startswith("magcache ")
                or (line.startswith("    ") and line.strip().startswith("-"))]
    text = help_text(*command)
    shown = {line.strip() for line in text.splitlines()}
    assert examples, "every command documents an example"
    for line in examples:
        assert line in shown, f"{line!r} is wrapped in `magcache {' '.join(command)} --help`"
    assert "<bool>" not in text


def test_calibrate_help_has_no_profile_defaults():
    text = re.sub(r"[\s│]+", " ", help_text("calibrate"))  # the option table wraps inside its box
    assert "the profile's" not in text.replace("The profile's default", "")
    assert "Default: 0.06" in text and "Default: 3" in text and "Default: 0.2" in text
    assert "--compile alone means auto" in re.sub(r"[\s│]+", " ", help_text("run")).replace("`", "")


def test_debug_env_switch(monkeypatch, tmp_path):
    monkeypatch.setenv("MAGCACHE_DEBUG", "0")
    r = CliRunner().invoke(app, ["schedule", "--profile", os.fspath(tmp_path / "none.yaml")])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_profile_validate_does_not_import_torch(tmp_path):
    """`profile validate` (and --help, --version) answer in a fraction of a second: no torch import on the way."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import sys; from typer.testing import CliRunner; from magcache_cli.cli.app import app; "
            f"r = CliRunner().invoke(app, ['profile', 'validate', {str(root / 'profiles' / 'flux1-dev.yaml')!r}]); "
            "print(r.exit_code, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.stdout.split() == ["0", "False"], r.stdout + r.stderr


def test_diffusers_see_the_stacktrace_above_is_explained(monkeypatch):
    """diffusers' own chain when the hub is unreachable: `OSError(... see the stacktrace above) from
    ConnectError`, wrapped by the loader's LoadError; the line names the cause, not the missing stacktrace."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    class ConnectError(Exception):  # httpx's, by name
        pass

    try:
        try:
            raise ConnectError("[Errno 101] Network is unreachable")
        except ConnectError as c:
            raise OSError("Cannot load model org/m: the model is not fully cached locally and an error occurred "
                          "while trying to fetch metadata from the Hub. Please check out the root cause in the "
                          "stacktrace above.") from c
    except OSError as o:
        err = LoadError("could not load org/m: Cannot load model org/m: ...")
        err.__cause__ = o
    line = explain(err).line()
    assert line.startswith("the Hugging Face hub cannot be reached") and "stacktrace" not in line
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub.errors import OfflineModeIsEnabled

    err.__cause__.__cause__ = OfflineModeIsEnabled("offline")
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in explain(err).line()
