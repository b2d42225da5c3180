"""Profiles as YAML text and files: the canonical, diff-friendly text (`dump_profile`), a strict safe loader
(`load_profile`) and atomic writes (`save_profile`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from magcache_cli.errors import ProfileError
from magcache_cli.profile.reading import read_yaml
from magcache_cli.profile.schema import Profile, profile_to_dict
from magcache_cli.profile.validate import profile_from_dict
from magcache_cli.types import Choice

HEADER = "# magcache profile — edit defaults freely; regenerate curves with `magcache calibrate`\n"
DECIMALS = 5


class _Flow(list):
    """A list rendered on one line."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False):
        # Indent block sequences under their key, which reads better than PyYAML's default.
        return super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, data: list):
    # Curves and the stack on one line; other lists of numbers too; lists of strings one per line.
    flow = isinstance(data, _Flow) or (
        bool(data) and all(v is None or isinstance(v, (bool, int, float)) for v in data)
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(_Flow, _represent_list)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_multi_representer(Choice, lambda dumper, v: dumper.represent_str(v.value))  # enums as their words


def dump_profile(p: Profile) -> str:
    """The canonical text: schema key order, curves on one line rounded to 5 decimals, a header comment.

    The profile is validated first (ProfileError on invalid content). Saving, loading and saving again
    gives byte-identical text.
    """
    data = profile_to_dict(profile_from_dict(profile_to_dict(p)))
    data["model"]["stack"] = _Flow(data["model"]["stack"])
    for curves in data["branches"].values():
        for key, values in curves.items():
            curves[key] = _Flow(round(v, DECIMALS) for v in values)
    # One YAML document per top-level section, joined with blank lines, for readable diffs.
    sections = [
        yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                  allow_unicode=True, width=1 << 30)
        for key, value in data.items()
    ]
    text = HEADER + "\n".join(sections)
    profile_from_dict(yaml.safe_load(text))  # e.g. a ratio below 5e-6 would round to an invalid 0.0
    return text


# ------------------------------------------------------------------------------------------------ files


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile file. Every problem is a ProfileError carrying the path; reading is
    bounded (size, values, nesting; no anchors or aliases), see `profile/reading.py`."""
    return profile_from_dict(read_yaml(path), path=str(path))


def save_profile(p: Profile, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the canonical text atomically (temp file in the same directory, then `os.replace`).

    Refuses to replace an existing file unless `overwrite=True`. Parent directories are created.
    On any failure no partial file is left behind and an existing file is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ProfileError(f"{path} already exists", hint="pass `overwrite=True` to replace it", path=str(path))
    text = dump_profile(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
