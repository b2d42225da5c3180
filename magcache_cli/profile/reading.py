"""Reading a profile's YAML safely: bounded in size, depth and node count, plain data only.

Canonical profiles are a few KB, never use anchors or aliases, and nest four levels deep. The limits are
generous for hand edits and for curves of thousands of steps, and keep `load_profile` on any file (a
hostile one included) to a fraction of a second and bounded memory. Everything is checked on libyaml's
event stream before a single object is built, so an alias bomb or a 60 MB file costs nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml import events

from magcache_cli.errors import ProfileError

MAX_BYTES = 4 << 20  # 4 MiB; a 1,000-step profile with four curves on four branches is ~150 KB
MAX_DEPTH = 32  # canonical profiles nest 4 levels (calibration.call_args adds what the pipeline takes)
MAX_NODES = 50_000  # scalars + collections; the same 1,000-step profile has ~17,000

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the same data, ~6x faster
_OPEN = (events.SequenceStartEvent, events.MappingStartEvent)
_CLOSE = (events.SequenceEndEvent, events.MappingEndEvent)
_NODE = (events.ScalarEvent, *_OPEN)


class _StrictLoader(_Base):
    """A safe loader (plain data only, never objects) that also rejects duplicate mapping keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(None, None, "merge keys (<<) are not allowed",
                                                        key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads a number with an exponent but no dot, as people write them (`threshold: 6e-05`,
# `1e3`), as a string; YAML 1.2 and every other tool read a float. Profiles are read the 1.2 way.
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


class _Refused(Exception):
    def __init__(self, what: str, line: int | None):
        super().__init__(what)
        self.what, self.line = what, line


def _check_events(text: str) -> None:
    """Refuse anchors, aliases, deep nesting and too many nodes, streaming, before anything is built."""
    depth = nodes = 0
    for e in yaml.parse(text, Loader=_Base):
        if isinstance(e, events.AliasEvent):
            raise _Refused(f"YAML alias *{e.anchor} (anchors and aliases are not allowed in profiles)",
                           e.start_mark.line)
        if isinstance(e, _NODE):
            if e.anchor is not None:
                raise _Refused(f"YAML anchor &{e.anchor} (anchors and aliases are not allowed in profiles)",
                               e.start_mark.line)
            nodes += 1
            if nodes > MAX_NODES:
                raise _Refused(f"more than {MAX_NODES:,} values", e.start_mark.line)
            if isinstance(e, _OPEN):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Refused(f"nested deeper than {MAX_DEPTH} levels", e.start_mark.line)
        elif isinstance(e, _CLOSE):
            depth -= 1


def parse_yaml(text: str, path: str | None = None) -> Any:
    """The plain data in one YAML document, within the limits above; anything else is a ProfileError."""
    where = f"{path}: " if path else ""
    if len(text) > MAX_BYTES:
        raise ProfileError(f"{where}{len(text):,} characters is more than a profile can be ({MAX_BYTES:,})",
                           hint="check that this is a profile file", path=path)
    try:
        _check_events(text)
        return yaml.load(text, Loader=_StrictLoader)
    except _Refused as r:
        line = f" (line {r.line + 1})" if r.line is not None else ""
        raise ProfileError(f"{where}refused{line}: {r.what}", hint="write the values out in full", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ProfileError(f"{where}invalid YAML{at}: {getattr(exc, 'problem', None) or exc}",
                           hint="fix the YAML syntax", path=path) from exc
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:  # e.g. a timestamp like 2024-13-45
        raise ProfileError(f"{where}invalid YAML value: {exc}", hint="fix the value", path=path) from exc


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a profile file's YAML: size checked before reading, then `parse_yaml`."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a profile file" if path.is_dir() else "not found"
        raise ProfileError(f"profile {what}: {path}", path=str(path),
                           hint="check the path, or create a profile with `magcache calibrate --out PATH`")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ProfileError(f"{path}: {size:,} bytes is more than a profile can be ({MAX_BYTES:,})",
                               hint="check that this is a profile file", path=str(path))
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_BYTES + 1)  # a file growing after the stat stays bounded too
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}", hint="check the file", path=str(path)) from exc
    return parse_yaml(text, str(path))
