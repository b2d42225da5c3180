"""Pre-flight: every input is checked before the model loads, so a user error costs seconds, never a run.

Each option's own rule (`Check`: a range, a choice) is part of its type in cli/options.py and runs
before the command starts; `read` reads `--prompts-file` and parses `--set` once, so nothing is read twice.
`output_file` settles where a result will really go (inside an existing directory, never inside a file,
somewhere writable) and proves it can be written there. `sizes` asks the model's configs, without
loading weights, what heights and widths it accepts; `storable` asks the profile schema whether a
calibration with these call arguments can be saved. A new option declares its `Check` in its type. Errors are
`UsageError`s naming the flag.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magcache_cli.errors import ProfileError, UsageError

MAX_PROMPTS_FILE = 16 << 20  # bytes
DEVICES = ("auto", "cuda", "mps", "cpu")


class Check:
    """A rule for one option's value, declared in the option's type (`Annotated[..., typer.Option(...),
    Check(...)]` in cli/options.py) and run by `options.command` on every value given, before the command
    body starts: renaming a parameter cannot drop it. `rule(flag, value)` raises a UsageError naming `flag`."""

    def __init__(self, rule: Callable[[str, Any], None]):
        self.rule = rule

    def __call__(self, flag: str, value: Any) -> None:
        self.rule(flag, value)


def at_least(low: int, example: int) -> Check:
    def check(flag: str, v: Any) -> None:
        if v < low:
            raise UsageError(f"{flag} must be >= {low}, got {v}", hint=f"e.g. {flag} {example}")
    return Check(check)


def _finite(flag: str, v: Any, low: float | None, below: float | None, example: float) -> None:
    if not math.isfinite(v):
        raise UsageError(f"{flag} {v} is not a finite number",
                         hint=f"pass a number, e.g. {flag} {example:g} (nan and inf are not values)")
    if (low is not None and v < low) or (below is not None and v >= below):
        span = f"a finite number >= {low:g}" if below is None else f"a number in [{low:g}, {below:g})"
        raise UsageError(f"{flag} must be {span}, got {v:g}", hint=f"e.g. {flag} {example:g}")


def finite(low: float | None = None, below: float | None = None, example: float = 1.0) -> Check:
    """A finite number, >= `low` and < `below` when given."""
    return Check(lambda flag, v: _finite(flag, v, low, below, example))


def one_of(choices: tuple[str, ...]) -> Check:
    def check(flag: str, v: Any) -> None:
        if str(v) not in choices:
            raise UsageError(f"unknown {flag} {v!r}", hint=f"use {', '.join(choices[:-1])} or {choices[-1]}")
    return Check(check)


def _seeds(flag: str, values: Any) -> None:
    for s in values:
        if not 0 <= s < 2**64:
            raise UsageError(f"--seed {s} is out of range", hint="seeds are whole numbers from 0 to 18446744073709551615")


def _unit(flag: str, v: Any) -> None:
    """A number in [0, 1] (the forecast A)."""
    _finite(flag, v, 0.0, None, 0.5)
    if v > 1:
        raise UsageError(f"{flag} must be in [0, 1], got {v:g}", hint=f"e.g. {flag} 0.5 (0 = reuse)")


SEEDS = Check(_seeds)
UNIT = Check(_unit)
DEVICE = one_of(DEVICES)


@dataclass
class Checked:
    """What `read` read for the command: prompts from -p and --prompts-file, and --set parsed."""

    prompts: list[str] = field(default_factory=list)
    call_args: dict[str, Any] = field(default_factory=dict)


def read(prompt: list[str] | None, prompts_file: Path | None, set_items: list[str] | None) -> Checked:
    """Read the prompts file and parse --set, once. Raises UsageError on the first problem."""
    return Checked([*(prompt or []), *read_prompts_file(prompts_file)], parse_set(set_items))


# ------------------------------------------------------------------------------------------ --set, files


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs; VALUE is parsed as YAML (`4` -> 4, `true` -> True, `[1, 2]` -> list). Values
    must be plain data with finite numbers (what a profile's `calibration.call_args` can hold)."""
    import yaml

    from magcache_cli.profile.reading import parse_yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--set {item!r} is not KEY=VALUE", hint="e.g. --set true_cfg_scale=4")
        if key in ("prompt", "generator"):
            raise UsageError(f"--set {key} is set by magcache itself", hint="use --prompt / --seed")
        try:
            out[key] = parse_yaml(value) if value.strip() else None
        except ProfileError as e:
            raise UsageError(f"--set {key}: value {value!r} is not valid YAML ({e.message.split(': ', 1)[-1]})",
                             hint="quote strings that YAML would read otherwise, e.g. --set key='\"a: b\"'") from None
        _plain(out[key], f"--set {key}")
    del yaml
    return out


def _plain(v: Any, where: str) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise UsageError(f"{where}: {v} is not a finite number", hint="pass a number (nan and inf are not values)")
    if isinstance(v, (list, tuple)):
        for x in v:
            _plain(x, where)
    elif isinstance(v, dict):
        for x in v.values():
            _plain(x, where)
    elif not (v is None or isinstance(v, (bool, int, float, str))):
        raise UsageError(f"{where}: a {type(v).__name__} cannot be a call argument here",
                         hint="use numbers, strings, true/false, lists or mappings")


def read_prompts_file(path: Path | None) -> list[str]:
    """The prompts in `--prompts-file`: one per line, `#` comments and blank lines skipped; checked now."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--prompts-file {path}: {'is a directory' if path.is_dir() else 'no such file'}",
                         hint="pass a text file with one prompt per line")
    try:
        if path.stat().st_size > MAX_PROMPTS_FILE:
            raise UsageError(f"--prompts-file {path} is larger than {MAX_PROMPTS_FILE >> 20} MB",
                             hint="pass a text file with one prompt per line")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--prompts-file {path} is not UTF-8 text", hint="save it as UTF-8") from None
    except OSError as e:
        raise UsageError(f"cannot read --prompts-file {path} ({e.strerror})", hint="check the path and its permissions") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UsageError(f"--prompts-file {path} has no prompts", hint="one prompt per line; lines starting with # are comments")
    return prompts


def _cannot_create_in(folder: Path) -> str | None:
    """Why no file can be created in the existing directory `folder`, or None. Tried for real: permission
    bits say nothing about /proc, /sys or a read-only mount, least of all for root."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".magcache-probe-")
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    os.unlink(tmp)
    return None


def output_file(path: Path | str, option: str, *, default_name: str, overwrite: bool | None = None,
                force_flag: str = "--force") -> Path:
    """Where an output will really be written, checked now.

    An existing directory means `default_name` inside it. The nearest existing
    ancestor must be a directory in which a file can be created (the missing folders are created when
    writing). `overwrite=False` refuses an existing file (`force_flag` allows it); None lets it be replaced.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / default_name
        if path.is_dir():
            raise UsageError(f"{option} {path} is a directory", hint=f"pass a file name with {option}")
    if path.exists():
        if overwrite is False:
            raise UsageError(f"{path} exists", hint=f"pass {force_flag} to overwrite it, or choose another {option}")
        if not path.is_file():
            raise UsageError(f"{option} {path} is not a regular file", hint=f"choose another {option}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, not a folder", hint=f"choose another {option}")
    why = _cannot_create_in(ancestor)
    if why:
        raise UsageError(f"{option} {path}: cannot write in {ancestor} ({why})", hint=f"choose another {option}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path} is not writable", hint=f"choose another {option}")
    return path


# ------------------------------------------------------------------------------------- model and profile


def sizes(model: str, revision: str | None, height: int | None, width: int | None) -> None:
    """Heights and widths the pipeline accepts, from its configs (local folder or hub cache; nothing is
    downloaded and no weights are read): a multiple of the VAE's downsampling times the patch size."""
    if height is None and width is None:
        return
    from magcache_cli.runner.loading import size_multiple

    multiple = size_multiple(model, revision)
    if not multiple:
        return
    for name, v in (("height", height), ("width", width)):
        if v is not None and v % multiple:
            lower, upper = max(multiple, v - v % multiple), v - v % multiple + multiple
            raise UsageError(f"--{name} {v}: {model} makes sizes in multiples of {multiple}",
                             hint=f"use e.g. --{name} {lower}" + (f" or {upper}" if upper != lower else ""))


def storable(calibration: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Refuse, before any work, call arguments and defaults a profile could not save: the schema decides."""
    from magcache_cli.cli.errors import FLAGS
    from magcache_cli.profile.validate import profile_from_dict

    steps = calibration.get("steps") or 1
    doc = {"schema_version": 1,
           "model": {"id": "model", "pipeline_class": "Pipeline", "transformer_class": "Transformer"},
           "calibration": {"guidance_mode": "none", **{k: v for k, v in calibration.items() if v is not None},
                           "steps": steps},
           "branches": {"main": {"ratios": [1.0] * steps}},
           "defaults": {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2,
                        **{k: v for k, v in defaults.items() if v is not None}}}
    try:
        profile_from_dict(doc)
    except ProfileError as e:
        parts = (e.field or "").split(".")
        where = (f"--set {parts[2]}" if parts[1:2] == ["call_args"] and len(parts) > 2
                 else FLAGS.get(parts[-1].split("[")[0], e.field or "a value"))
        what = e.message.split(": ", 1)[-1]
        raise UsageError(f"{where}: {what}, so the profile could not be saved",
                         hint=f"change {where.split()[0]}") from None
