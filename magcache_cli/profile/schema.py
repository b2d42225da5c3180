"""The on-disk profile (schema v1), declared once: the dataclasses below carry, per field, its file key, kind,
whether it is required and its documentation. Validation, canonical key order, `profile_to_dict` and the field
tables of docs/profile-format.md (`field_tables`) all come from that one declaration.

Validation is strict: unknown keys, wrong types, non-finite numbers and inconsistent curve lengths are errors
that name the dotted field path. YAML text and files are in `profile/io.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from magcache_cli.errors import ProfileError
from magcache_cli.types import GuidanceMode

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
GUIDANCE_MODES = GuidanceMode.values()
LABEL_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_FIX_HINT = "fix the field in the file, or regenerate the profile with `magcache calibrate`"


def _f(kind: str, doc: str, *, required: bool = False, key: str | None = None, factory=None,
       omit_empty: bool = False):
    """One declared field. `kind` is what the file may hold (checked by `_Checker.value`; a trailing `?` allows
    null); `key` is the file's name for it when it differs from the attribute; `omit_empty` leaves an empty
    value out of the written file (so profiles without that feature stay as they were)."""
    meta = {"kind": kind, "doc": doc, "required": required, "key": key, "omit_empty": omit_empty}
    if required:
        return field(metadata=meta)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=None, metadata=meta)


@dataclass(kw_only=True)
class ModelInfo:
    id: str = _f("str", "Hub id or local path, as the user gave it.", required=True)
    revision: str | None = _f("str?", "Hub revision (branch, tag or commit), if one was given.")
    pipeline_class: str = _f("str", "e.g. `FluxPipeline`.", required=True)
    transformer_class: str = _f("str", "e.g. `FluxTransformer2DModel`.", required=True)
    config_fingerprint: str | None = _f(
        "fingerprint?", "16 lowercase hex characters: the first 16 of the sha256 of the transformer config as "
        "JSON (`sort_keys=True`, keys starting with `_` dropped). Detects a profile used with a different "
        "architecture.")
    stack: list[str] = _f("[str]", "The block lists whose residual is cached, e.g. "
                          "`[transformer_blocks, single_transformer_blocks]`. May be empty for imported profiles.",
                          factory=list)
    components: dict[str, str] = _f("{str}", "Extra components loaded next to the weights (`--component "
                                    "NAME=ID_OR_DIR`), e.g. `{controlnet: ./flux-canny}`. Left out when empty.",
                                    factory=dict, omit_empty=True)


@dataclass(kw_only=True)
class SchedulerInfo:
    class_name: str | None = _f("str?", "Scheduler class, e.g. `FlowMatchEulerDiscreteScheduler`.", key="class")
    config: dict[str, Any] = _f("map", "The timestep-shaping keys of the scheduler config (`shift`, "
                                "`use_dynamic_shifting`, ...). Free-form YAML scalars, lists and mappings.",
                                factory=dict)


@dataclass(kw_only=True)
class InputFile:
    """One file a calibration read for a call argument: what it was, never its pixels."""

    arg: str = _f("str", "The call argument (`image`, `mask_image`, `control_image`, `video`, ...).", required=True)
    path: str | None = _f("str?", "The path as given; null for an in-memory image handed to the Python API (its "
                          "`sha256` is then over `MODE:WxH:` and the pixels).", required=True)
    sha256: str = _f("sha256", "sha256 of the file (of a frame folder: its files' names and bytes in name order).",
                     required=True)
    kind: str = _f("media", "`image` or `video`.", required=True)
    width: int = _f("int1", "Width in pixels.", required=True)
    height: int = _f("int1", "Height in pixels.", required=True)
    frames: int | None = _f("int1?", "Frames, for a video. Left out for images.", omit_empty=True)


@dataclass(kw_only=True)
class Calibration:
    steps: int = _f("int1", "Number of denoising steps measured; every curve has exactly this many values.",
                    required=True)
    guidance_mode: str = _f(
        "mode", "`none`: one transformer call per step (guidance-distilled or no CFG). `sequential`: one call per "
        "branch per step. `batched`: one call per step with the branches stacked in the batch.", required=True)
    guidance_scale: float | None = _f("num?", "The guidance scale the curves were measured at.")
    height: int | None = _f("int1?", "Output height.")
    width: int | None = _f("int1?", "Output width.")
    num_frames: int | None = _f("int1?", "Video models.")
    negative_prompt: str | None = _f("text?", "An empty string is a valid negative prompt.")
    call_args: dict[str, Any] = _f("map", "Other pipeline call arguments, e.g. `{true_cfg_scale: 4.0, strength: "
                                   "0.5}`. Free-form YAML data only: images and videos go to `inputs`.",
                                   factory=dict)
    inputs: list[InputFile] = _f(
        "[input]", "File inputs as provenance, never pixels: one entry per file (fields below). Several entries "
        "with the same `arg` were passed as a list. `run` reuses a recorded file when it still exists with that "
        "sha256. Left out when empty.", factory=list, omit_empty=True)
    prompts: list[str] = _f("[text]", "Prompts used for calibration.", factory=list)
    seeds: list[int] = _f("[int0]", "Seeds used for each prompt.", factory=list)
    dtype: str | None = _f("str?", "e.g. `bfloat16`.")
    device: str | None = _f("str?", "e.g. `NVIDIA H200`.")
    created: str | None = _f("time?", "ISO 8601 UTC time, e.g. `'2026-11-26T12:00:00Z'` (an unquoted timestamp is "
                             "accepted and kept as text).")
    versions: dict[str, str] = _f("{str}", "Package versions, e.g. `{magcache: 0.1.0, diffusers: 0.42.1, torch: "
                                  "2.13.0}`. Values are strings: quote versions YAML would read as numbers "
                                  "(`'0.42'`).", factory=dict)


@dataclass(kw_only=True)
class BranchCurves:
    ratios: list[float] = _f(
        "curve+", "Magnitude ratio per step: mean over tokens (and the branch's batch rows) of ‖r_t‖ / ‖r_{t−1}‖, "
        "r = block-stack output minus input. Length `calibration.steps`; every value finite and > 0; `ratios[0]` "
        "must be exactly `1.0` (step 0 has no previous residual).", required=True)
    ratio_std: list[float] | None = _f("curve?", "Population std of the per-token ratio at each step. Same length, "
                                       "finite, ≥ 0.")
    cos_dist: list[float] | None = _f("curve?", "mean(1 − cos(r_t, r_{t−1})) per step. Same length, finite, ≥ 0.")
    run_std: list[float] | None = _f("curve?", "Std of the ratio across calibration runs (prompts × seeds). Same "
                                     "length, finite, ≥ 0.")
    active: list[int] | None = _f(
        "window?", "`[start, stop)`: the schedule positions the curves cover — the steps this branch's denoiser "
        "runs in two-expert pipelines (Wan 2.2 hands over from `transformer` to `transformer_2`), or the steps a "
        "calibration ran when the pipeline began mid-schedule (img2img, inpainting, video-to-video with "
        "`strength` < 1 begin at `int(steps - steps * strength)` or so). Omitted: every step. Outside the window "
        "the ratios are `1.0` placeholders and `ratios[start]` must be `1.0`. A run applies the skip rule, "
        "retention included, to the steps it executes that the window covers, as if they were a run of its own; "
        "steps it executes outside the window are computed and named in a warning. A branch whose window is "
        "narrower than its denoiser's first branch (a guider's extra pass, e.g. skip-layer guidance's "
        "`cond_skip`, runs on some steps only) takes part in the skip rule on its own steps only, computing first "
        "there.")


@dataclass(kw_only=True)
class Defaults:
    threshold: float = field(default=0.06, metadata={
        "kind": "num0", "required": True, "key": None,
        "doc": "Accumulated error allowed before a step must be computed. `0` disables skipping."})
    max_skip_steps: int = field(default=3, metadata={
        "kind": "int0", "required": True, "key": None, "doc": "Most consecutive skipped steps (K)."})
    retention_ratio: float = field(default=0.2, metadata={
        "kind": "retention", "required": True, "key": None,
        "doc": "Fraction of leading steps always computed: the first `int(retention_ratio · steps + 0.5)`."})
    forecast: float = field(default=0.0, metadata={
        "kind": "forecast", "required": False, "key": None, "omit_empty": True,
        "doc": "A of the residual forecast a skipped step replays, `r_c + A·(t−c)/(c−p)·(r_c−r_p)` from the "
               "branch's last two computed residuals (docs/quality.md). Omitted: `0`, MagCache's plain reuse; "
               "left out of the file when 0, so profiles from before it keep their text."})
    tuned: dict[str, Any] | None = _f("map?", "Free-form evidence written by a tuning command (grid, metrics, "
                                      "chosen point).")


@dataclass(kw_only=True)
class Profile:
    schema_version: int = field(default=SCHEMA_VERSION, metadata={
        "kind": "version", "required": True, "key": None,
        "doc": "Must be `1`. A newer version is refused with a hint to upgrade magcache."})
    model: ModelInfo = _f("section", "What was calibrated.", required=True)
    scheduler: SchedulerInfo = _f("section", "The scheduler that shaped the timesteps.", factory=SchedulerInfo)
    calibration: Calibration = _f("section", "How the curves were measured.", required=True)
    source: str | None = _f("str?", "Where the numbers come from when they were not measured by `magcache "
                            "calibrate`, e.g. `published by the MagCache authors, not re-measured here`. `null` "
                            "for measured profiles.")
    branches: dict[str, BranchCurves] = _f("branches", "Label → curves, at least one branch.", required=True)
    defaults: Defaults = field(default_factory=Defaults, metadata={
        "kind": "section", "required": True, "key": None,
        "doc": "Skip settings used when the command line does not override them."})


# the top-level sections that are mappings of declared fields
SECTIONS: dict[str, type] = {"model": ModelInfo, "scheduler": SchedulerInfo, "calibration": Calibration,
                             "defaults": Defaults}


@dataclass(frozen=True)
class FieldSpec:
    key: str  # the name in the file
    attr: str  # the dataclass attribute
    kind: str
    required: bool
    doc: str


def schema_fields(cls: type) -> list[FieldSpec]:
    """The declared fields of a section, in canonical (file) order."""
    return [FieldSpec(f.metadata.get("key") or f.name, f.name, f.metadata["kind"], f.metadata["required"],
                      f.metadata["doc"]) for f in dataclasses.fields(cls)]


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


_SCALARS = {  # kind: (description, test, convert, type in the docs)
    "str": ("a non-empty string", lambda v: isinstance(v, str) and v != "", str, "str"),
    "text": ("a string", lambda v: isinstance(v, str), str, "str"),
    "int0": ("an integer >= 0", lambda v: _is_int(v) and v >= 0, int, "int ≥ 0"),
    "int1": ("an integer >= 1", lambda v: _is_int(v) and v >= 1, int, "int ≥ 1"),
    "num": ("a finite number", _is_num, float, "float"),
    "num0": ("a finite number >= 0", lambda v: _is_num(v) and v >= 0, float, "float ≥ 0"),
    "pos": ("a positive finite number", lambda v: _is_num(v) and v > 0, float, "float > 0"),
    "retention": ("a number in [0, 1)", lambda v: _is_num(v) and 0 <= v < 1, float, "float in [0, 1)"),
    "forecast": ("a number in [0, 1]", lambda v: _is_num(v) and 0 <= v <= 1, float, "float in [0, 1]"),
    "mode": (f"one of {', '.join(GUIDANCE_MODES)}", lambda v: isinstance(v, str) and v in GUIDANCE_MODES, str,
             " \\| ".join(f"`{m}`" for m in GUIDANCE_MODES)),
    "fingerprint": ("16 lowercase hex characters", lambda v: isinstance(v, str) and _HEX16.fullmatch(v), str, "str"),
    "sha256": ("64 lowercase hex characters", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v), str,
               "str"),
    "media": ("image or video", lambda v: v in ("image", "video"), str, "`image` \\| `video`"),
    "time": ("a string (ISO 8601 time)", lambda v: isinstance(v, (str, datetime.date)) and v != "", _time_text, "str"),
}
_DOC_TYPES = {"input": "mapping", "map": "mapping", "{str}": "mapping str → str", "section": "mapping", "branches": "mapping",
              "version": "int", "curve+": "list[float]", "curve": "list[float]", "window": "[int, int]"}


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
        if kind == "input":
            return self.section(v, fld, InputFile)
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


def profile_to_dict(p: Profile) -> dict:
    """The profile as plain data, keys in schema order; optional curves that are None are left out."""

    def plain(obj: Any) -> dict:
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.metadata.get("omit_empty") and not v:
                continue
            if isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
                v = [plain(x) for x in v]
            out[f.metadata.get("key") or f.name] = copy.deepcopy(v)
        return out

    out = plain(p)
    for name in SECTIONS:
        out[name] = plain(out[name])
    out["branches"] = {label: {k: list(v) for k, v in plain(b).items() if v is not None}
                       for label, b in p.branches.items()}
    return out


def validated(p: Profile) -> Profile:
    """`p` checked against the schema (ProfileError naming the field otherwise), as a fresh copy."""
    return profile_from_dict(profile_to_dict(p))


# ------------------------------------------------------------------------------------------------- docs


def _doc_type(kind: str) -> str:
    null = kind.endswith("?")
    kind = kind.rstrip("?")
    if kind.startswith("["):
        text = f"list[{_doc_type(kind[1:-1])}]"
    else:
        text = _DOC_TYPES.get(kind) or _SCALARS[kind][3]
    return f"{text} \\| null" if null else text


def field_table(cls: type) -> str:
    """The markdown field table of one section, as docs/profile-format.md shows it."""
    rows = ["| key | type | required | meaning |", "|---|---|---|---|"]
    for f in schema_fields(cls):
        rows.append(f"| `{f.key}` | {_doc_type(f.kind)} | {'yes' if f.required else 'no'} | {f.doc} |")
    return "\n".join(rows)


def field_tables() -> dict[str, str]:
    """Every section's field table, keyed as in the docs' `<!-- fields:NAME -->` markers."""
    return {"top": field_table(Profile), **{name: field_table(cls) for name, cls in SECTIONS.items()},
            "input": field_table(InputFile), "branch": field_table(BranchCurves)}
