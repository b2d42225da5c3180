"""The on-disk profile (schema v1): load, validate, render canonically, save atomically.

Validation is strict: unknown keys, wrong types, non-finite numbers and inconsistent curve lengths are
errors that name the dotted field path. See docs/profile-format.md for the field reference.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from magcache_cli.errors import ProfileError
from magcache_cli.types import Choice, GuidanceMode

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
GUIDANCE_MODES = GuidanceMode.values()
CURVE_KEYS = ("ratios", "ratio_std", "cos_dist", "run_std")
LABEL_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_HEX16 = re.compile(r"[0-9a-f]{16}")
HEADER = "# magcache profile — edit defaults freely; regenerate curves with `magcache calibrate`\n"
DECIMALS = 5
_FIX_HINT = "fix the field in the file, or regenerate the profile with `magcache calibrate`"

# Top-level keys in canonical order, and the fields of each section as (key, kind, required). Kinds are checked
# by `_Checker.value`; a trailing "?" allows null. An absent optional key reads as null, [] or {} by its kind.
_TOP = ("schema_version", "model", "scheduler", "calibration", "source", "branches", "defaults")
_TOP_REQUIRED = ("schema_version", "model", "calibration", "branches", "defaults")
_SECTIONS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "model": (
        ("id", "str", True), ("revision", "str?", False), ("pipeline_class", "str", True),
        ("transformer_class", "str", True), ("config_fingerprint", "fingerprint?", False),
        ("stack", "[str]", False), ("components", "{str}", False),
    ),
    "scheduler": (("class", "str?", False), ("config", "map", False)),
    "calibration": (
        ("steps", "int1", True), ("guidance_mode", "mode", True), ("guidance_scale", "num?", False),
        ("height", "int1?", False), ("width", "int1?", False), ("num_frames", "int1?", False),
        ("negative_prompt", "str?", False), ("call_args", "map", False), ("inputs", "[input]", False),
        ("prompts", "[str]", False), ("seeds", "[int0]", False), ("dtype", "str?", False), ("device", "str?", False),
        ("created", "time?", False), ("versions", "{str}", False),
    ),
    "input": (("arg", "str", True), ("path", "str?", True), ("sha256", "sha256", True), ("kind", "media", True),
              ("width", "int1", True), ("height", "int1", True), ("frames", "int1?", False)),  # provenance only
    "defaults": (("threshold", "num0", True), ("max_skip_steps", "int0", True),
                 ("retention_ratio", "retention", True), ("tuned", "map?", False)),
}


@dataclass
class ModelInfo:
    id: str
    pipeline_class: str
    transformer_class: str
    revision: str | None = None
    config_fingerprint: str | None = None
    stack: list[str] = field(default_factory=list)
    components: dict[str, str] = field(default_factory=dict)


@dataclass
class SchedulerInfo:
    class_name: str | None = None  # `class` in the file
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Calibration:
    steps: int
    guidance_mode: str
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    negative_prompt: str | None = None
    call_args: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    dtype: str | None = None
    device: str | None = None
    created: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class BranchCurves:
    ratios: list[float]
    ratio_std: list[float] | None = None
    cos_dist: list[float] | None = None
    run_std: list[float] | None = None
    # [start, stop): the global steps this branch's denoiser runs (two-expert pipelines such as Wan 2.2);
    # None means every step. Outside it the ratios are 1.0 placeholders.
    active: list[int] | None = None


@dataclass
class Defaults:
    threshold: float = 0.06
    max_skip_steps: int = 3
    retention_ratio: float = 0.2
    tuned: dict[str, Any] | None = None


@dataclass
class Profile:
    model: ModelInfo
    calibration: Calibration
    branches: dict[str, BranchCurves]
    defaults: Defaults = field(default_factory=Defaults)
    scheduler: SchedulerInfo = field(default_factory=SchedulerInfo)
    source: str | None = None
    schema_version: int = SCHEMA_VERSION


def config_fingerprint(config: Mapping) -> str:
    """First 16 hex chars of sha256 over the config as sorted JSON, private (`_`-prefixed) keys dropped."""
    public = {k: v for k, v in dict(config).items() if not str(k).startswith("_")}
    text = json.dumps(public, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_valid_label(label: object) -> bool:
    """Branch labels: non-empty, letters, digits and `_ . : -` (e.g. `cond`, `transformer_2.uncond`)."""
    return isinstance(label, str) and LABEL_RE.fullmatch(label) is not None


# ---------------------------------------------------------------------------------------------- validation


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML `true` is not 1


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _time_text(v: Any) -> str:
    # An unquoted ISO timestamp is read by YAML as a datetime; keep it as the text it was.
    if isinstance(v, datetime.datetime):
        return v.isoformat().replace("+00:00", "Z")
    return v.isoformat() if isinstance(v, datetime.date) else v


_SCALARS = {  # kind: (description, test, convert)
    "str": ("a non-empty string", lambda v: isinstance(v, str) and v != "", str),
    "int0": ("an integer >= 0", lambda v: _is_int(v) and v >= 0, int),
    "int1": ("an integer >= 1", lambda v: _is_int(v) and v >= 1, int),
    "num": ("a finite number", _is_num, float),
    "num0": ("a finite number >= 0", lambda v: _is_num(v) and v >= 0, float),
    "pos": ("a positive finite number", lambda v: _is_num(v) and v > 0, float),
    "retention": ("a number in [0, 1)", lambda v: _is_num(v) and 0 <= v < 1, float),
    "mode": (f"one of {', '.join(GUIDANCE_MODES)}", lambda v: isinstance(v, str) and v in GUIDANCE_MODES, str),
    "fingerprint": ("16 lowercase hex characters", lambda v: isinstance(v, str) and _HEX16.fullmatch(v), str),
    "sha256": ("64 lowercase hex characters", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v), str),
    "media": ("image or video", lambda v: v in ("image", "video"), str),
    "time": ("a string (ISO 8601 time)", lambda v: isinstance(v, (str, datetime.date)) and v != "", _time_text),
}


def _absent(kind: str) -> Any:
    """The value of an optional key left out of the file."""
    return None if kind.endswith("?") else [] if kind.startswith("[") else {}


def _show(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true (a boolean)", False: "false (a boolean)"}[v]
    return "a mapping" if isinstance(v, dict) else "a list" if isinstance(v, (list, tuple)) else repr(v)


class _Checker:
    """Turns a parsed document into checked values; every error names the dotted field path."""

    def __init__(self, path: str | None):
        self.path = path

    def fail(self, fld: str | None, what: str, hint: str | None = _FIX_HINT) -> ProfileError:
        msg = f"{fld}: {what}" if fld else what
        return ProfileError(f"{self.path}: {msg}" if self.path else msg, hint=hint, field=fld, path=self.path)

    def mapping(self, v: Any, fld: str, allowed: tuple | None = None, required: tuple = ()) -> dict:
        if not isinstance(v, dict):
            raise self.fail(fld, f"must be a mapping, got {_show(v)}")
        for key in v:
            if not isinstance(key, str):
                raise self.fail(fld, f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                where = f"{fld}.{key}" if fld else key
                raise self.fail(where, f"unknown key (allowed keys: {', '.join(allowed)})")
        for key in required:
            if key not in v:
                raise self.fail(f"{fld}.{key}" if fld else key, "required key is missing")
        return v

    def section(self, v: Any, name: str, fld: str | None = None) -> dict[str, Any]:
        spec, fld = _SECTIONS[name], fld or name
        d = self.mapping(v, fld, tuple(k for k, _, _ in spec), tuple(k for k, _, req in spec if req))
        return {k: self.value(d[k], f"{fld}.{k}", kind) if k in d else _absent(kind) for k, kind, _ in spec}

    def value(self, v: Any, fld: str, kind: str) -> Any:
        if kind.endswith("?"):
            if v is None:
                return None
            kind = kind[:-1]
        if kind.startswith("["):
            if not isinstance(v, (list, tuple)):
                raise self.fail(fld, f"must be a list, got {_show(v)}")
            return [self.value(x, f"{fld}[{i}]", kind[1:-1]) for i, x in enumerate(v)]
        if kind == "{str}":
            return {k: self.value(x, f"{fld}.{k}", "str") for k, x in self.mapping(v, fld).items()}
        if kind == "map":
            return self.plain(self.mapping(v, fld), fld)
        if kind == "input":  # frames: videos only
            return {k: x for k, x in self.section(v, kind, fld).items() if x is not None or k != "frames"}
        description, test, convert = _SCALARS[kind]
        if not test(v):
            raise self.fail(fld, f"must be {description}, got {_show(v)}")
        return convert(v)

    def plain(self, v: Any, fld: str) -> Any:
        """Free-form data (call args, scheduler config, tuning evidence): YAML scalars, lists, mappings."""
        if isinstance(v, float) and not math.isfinite(v):
            raise self.fail(fld, f"must be finite, got {v!r}")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [self.plain(x, f"{fld}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            return {k: self.plain(x, f"{fld}.{k}") for k, x in self.mapping(v, fld).items()}
        raise self.fail(fld, f"unsupported value of type {type(v).__name__}")

    def curve(self, v: Any, fld: str, steps: int, kind: str) -> list[float]:
        if isinstance(v, (list, tuple)) and len(v) != steps:
            raise self.fail(fld, f"has {len(v)} values but calibration.steps is {steps}")
        return self.value(v, fld, f"[{kind}]")

    def version(self, v: Any) -> int:
        if not _is_int(v):
            raise self.fail("schema_version", f"must be an integer, got {_show(v)}")
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
            newer = "; upgrade magcache to read newer profiles" if v > max(SUPPORTED_SCHEMA_VERSIONS) else ""
            raise self.fail("schema_version", f"unsupported version {v}",
                            hint=f"this magcache reads schema_version {supported}{newer}")
        return v


def profile_from_dict(data: dict, path: str | None = None) -> Profile:
    """Validate a parsed profile document and build a `Profile`.

    Raises ProfileError whose message starts with the dotted field path (after the file path, if given),
    e.g. `branches.cond.ratios[3]: must be a positive finite number, got -0.5`; `.field` holds the path.
    """
    c = _Checker(str(path) if path is not None else None)
    if data is None:
        raise c.fail(None, "the profile is empty", hint="create one with `magcache calibrate`")
    if not isinstance(data, dict):
        raise c.fail(None, f"the profile must be a mapping of sections, got {_show(data)}")
    # The version first: a newer file's unknown keys are explained by its version.
    version = c.version(data["schema_version"]) if "schema_version" in data else SCHEMA_VERSION
    top = c.mapping(data, "", _TOP, _TOP_REQUIRED)
    model = ModelInfo(**c.section(top["model"], "model"))
    s = c.section(top.get("scheduler", {}), "scheduler")
    scheduler = SchedulerInfo(class_name=s["class"], config=s["config"])
    calibration = Calibration(**c.section(top["calibration"], "calibration"))
    source = c.value(top.get("source"), "source", "str?")

    raw = c.mapping(top["branches"], "branches")
    if not raw:
        raise c.fail("branches", "at least one branch is required (e.g. `main`, or `cond` and `uncond`)")
    branches = {}
    for label, b in raw.items():
        where = f"branches.{label}"
        if not is_valid_label(label):
            raise c.fail(where, "invalid branch label: use letters, digits and _ . : - only")
        b = c.mapping(b, where, (*CURVE_KEYS, "active"), ("ratios",))
        ratios = c.curve(b["ratios"], f"{where}.ratios", calibration.steps, "pos")
        if ratios[0] != 1.0:
            raise c.fail(f"{where}.ratios[0]", f"must be 1.0 (step 0 has no previous residual), got {ratios[0]!r}")
        extra = {
            key: None if b.get(key) is None else c.curve(b[key], f"{where}.{key}", calibration.steps, "num0")
            for key in CURVE_KEYS[1:]
        }
        active = _active_range(c, b.get("active"), f"{where}.active", calibration.steps, ratios)
        branches[label] = BranchCurves(ratios=ratios, **extra, active=active)

    defaults = Defaults(**c.section(top["defaults"], "defaults"))
    return Profile(model=model, calibration=calibration, branches=branches, defaults=defaults,
                   scheduler=scheduler, source=source, schema_version=version)


def _active_range(c: _Checker, v: Any, fld: str, steps: int, ratios: list[float]) -> list[int] | None:
    if v is None:
        return None
    ok = isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v) and 0 <= v[0] < v[1] <= steps
    if not ok:
        raise c.fail(fld, f"must be [start, stop] with 0 <= start < stop <= {steps}, got {_show(v)}")
    if ratios[v[0]] != 1.0:
        raise c.fail(f"{fld[:-len('active')]}ratios[{v[0]}]", "must be 1.0 (the denoiser's first step)")
    return list(v)


# ----------------------------------------------------------------------------------------- dict and text


def profile_to_dict(p: Profile) -> dict:
    """The profile as plain data, keys in schema order; optional curves that are None are left out."""

    def section(obj: Any, name: str) -> dict:
        attr = {"class": "class_name"}
        return {k: copy.deepcopy(getattr(obj, attr.get(k, k))) for k, _, _ in _SECTIONS[name]
                if (name, k) not in {("model", "components"), ("calibration", "inputs")} or getattr(obj, k)}

    return {
        "schema_version": p.schema_version,
        "model": section(p.model, "model"),
        "scheduler": section(p.scheduler, "scheduler"),
        "calibration": section(p.calibration, "calibration"),
        "source": p.source,
        "branches": {
            label: {key: list(getattr(b, key)) for key in (*CURVE_KEYS, "active") if getattr(b, key) is not None}
            for label, b in p.branches.items()
        },
        "defaults": section(p.defaults, "defaults"),
    }


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


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also rejects duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_profile(path: str | os.PathLike) -> Profile:
    """Read and validate a profile file. Every problem is a ProfileError carrying the path."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a profile file" if path.is_dir() else "not found"
        raise ProfileError(f"profile {what}: {path}", path=str(path),
                           hint="check the path, or create a profile with `magcache calibrate --out PATH`")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only, never objects
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}", hint="check the file", path=str(path)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        msg = f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}"
        raise ProfileError(msg, hint="fix the YAML syntax", path=str(path)) from exc
    return profile_from_dict(data, path=str(path))


def save_profile(p: Profile, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the canonical text atomically (temp file in the same directory, then `os.replace`).

    Refuses to replace an existing file unless `overwrite=True`. Parent directories are created.
    On any failure no partial file is left behind and an existing file is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ProfileError(f"{path} already exists", hint="pass --force to overwrite it", path=str(path))
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
