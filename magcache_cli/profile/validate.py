"""Checking a parsed profile document against the declaration in `schema.py`: strict, and every error names the
dotted field path (`branches.cond.ratios[3]: must be a positive finite number, got -0.5`)."""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from magcache_cli.errors import ProfileError
from magcache_cli.profile.schema import (
    _FIX_HINT,
    _HEX16,
    GUIDANCE_MODES,
    SCHEMA_VERSION,
    SECTIONS,
    SUPPORTED_SCHEMA_VERSIONS,
    BranchCurves,
    AdapterInfo,
    InputFile,
    Profile,
    Quantization,
    TransformerFile,
    is_valid_label,
    profile_to_dict,
    schema_fields,
)
from magcache_cli.types import FORECAST_RANGE, RETENTION_RANGE, THRESHOLD_RANGE


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML `true` is not 1


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _time_text(v: Any) -> str:
    # An unquoted ISO timestamp is read by YAML as a datetime; keep it as the text it was.
    if isinstance(v, datetime.datetime):
        return v.isoformat().replace("+00:00", "Z")
    return v.isoformat() if isinstance(v, datetime.date) else v


_SCALARS = {  # kind: (description, test, convert, type in the docs)
    "str": ("a non-empty string", lambda v: isinstance(v, str) and v != "", str, "str"),
    "text": ("a string", lambda v: isinstance(v, str), str, "str"),
    "int0": ("an integer >= 0", lambda v: _is_int(v) and v >= 0, int, "int ≥ 0"),
    "int1": ("an integer >= 1", lambda v: _is_int(v) and v >= 1, int, "int ≥ 1"),
    "num": ("a finite number", _is_num, float, "float"),
    "num0": ("a finite number >= 0", lambda v: _is_num(v) and v in THRESHOLD_RANGE, float, "float ≥ 0"),
    "pos": ("a positive finite number", lambda v: _is_num(v) and v > 0, float, "float > 0"),
    "retention": (f"a number in {RETENTION_RANGE}", lambda v: _is_num(v) and v in RETENTION_RANGE, float,
                  f"float in {RETENTION_RANGE}"),
    "forecast": (f"a number in {FORECAST_RANGE}", lambda v: _is_num(v) and v in FORECAST_RANGE, float,
                 f"float in {FORECAST_RANGE}"),
    "mode": (f"one of {', '.join(GUIDANCE_MODES)}", lambda v: isinstance(v, str) and v in GUIDANCE_MODES, str,
             " \\| ".join(f"`{m}`" for m in GUIDANCE_MODES)),
    "fingerprint": ("16 lowercase hex characters", lambda v: isinstance(v, str) and _HEX16.fullmatch(v), str, "str"),
    "sha256": ("64 lowercase hex characters", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v), str,
               "str"),
    "media": ("image or video", lambda v: v in ("image", "video"), str, "`image` \\| `video`"),
    "bool": ("true or false", lambda v: isinstance(v, bool), bool, "bool"),
    "time": ("a string (ISO 8601 time)", lambda v: isinstance(v, (str, datetime.date)) and v != "", _time_text, "str"),
}


# kinds that are mappings of declared fields nested in a section (one entry of a list, or an optional one)
ENTRIES: dict[str, type] = {"input": InputFile, "adapter": AdapterInfo, "quant": Quantization,
                            "tfile": TransformerFile}


def _absent(kind: str) -> Any:
    """The value of an optional key left out of the file."""
    if kind == "forecast":
        return 0.0  # profiles from before the forecast: MagCache's plain reuse
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

    def keys(self, v: Any, fld: str, cls: type) -> dict:
        spec = schema_fields(cls)
        return self.mapping(v, fld, tuple(f.key for f in spec), tuple(f.key for f in spec if f.required))

    def section(self, v: Any, name: str, cls: type):
        d = self.keys(v, name, cls)
        return cls(**{f.attr: self.value(d[f.key], f"{name}.{f.key}", f.kind) if f.key in d else _absent(f.kind)
                      for f in schema_fields(cls)})

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
        if kind in ENTRIES:
            return self.section(v, fld, ENTRIES[kind])
        description, test, convert, _ = _SCALARS[kind]
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

    def branch(self, b: Any, where: str, steps: int) -> BranchCurves:
        b = self.keys(b, where, BranchCurves)
        out: dict[str, Any] = {}
        for f in schema_fields(BranchCurves):
            v = b.get(f.key)
            if f.kind == "curve+":
                out[f.attr] = self.curve(v, f"{where}.{f.key}", steps, "pos")
                if out[f.attr][0] != 1.0:
                    raise self.fail(f"{where}.{f.key}[0]",
                                    f"must be 1.0 (step 0 has no previous residual), got {out[f.attr][0]!r}")
            elif f.kind == "curve?":
                out[f.attr] = None if v is None else self.curve(v, f"{where}.{f.key}", steps, "num0")
            elif f.kind == "window?":
                out[f.attr] = self.window(v, f"{where}.{f.key}", steps, out["ratios"])
        return BranchCurves(**out)

    def window(self, v: Any, fld: str, steps: int, ratios: list[float]) -> list[int] | None:
        if v is None:
            return None
        ok = isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v) and 0 <= v[0] < v[1] <= steps
        if not ok:
            raise self.fail(fld, f"must be [start, stop] with 0 <= start < stop <= {steps}, got {_show(v)}")
        if ratios[v[0]] != 1.0:
            raise self.fail(f"{fld.rpartition('.')[0]}.ratios[{v[0]}]", "must be 1.0 (the denoiser's first step)")
        return list(v)


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
    top = c.keys(data, "", Profile)
    sections = {name: c.section(top.get(name, {}), name, cls) for name, cls in SECTIONS.items()}
    raw = c.mapping(top["branches"], "branches")
    if not raw:
        raise c.fail("branches", "at least one branch is required (e.g. `main`, or `cond` and `uncond`)")
    branches = {}
    for label, b in raw.items():
        if not is_valid_label(label):
            raise c.fail(f"branches.{label}", "invalid branch label: use letters, digits and _ . : - only")
        branches[label] = c.branch(b, f"branches.{label}", sections["calibration"].steps)
    return Profile(schema_version=version, source=c.value(top.get("source"), "source", "str?"), branches=branches,
                   **sections)


def validated(p: Profile) -> Profile:
    """`p` checked against the schema (ProfileError naming the field otherwise), as a fresh copy."""
    return profile_from_dict(profile_to_dict(p))
