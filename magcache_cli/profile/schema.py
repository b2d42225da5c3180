"""The on-disk profile (schema v1), declared once: the dataclasses below carry, per field, its file key, kind,
whether it is required and its documentation. Validation (`validate.py`), canonical key
order, `profile_to_dict` and the field tables of docs/profile-format.md (`fields_doc.py`) all come from that
one declaration.

Validation is strict: unknown keys, wrong types, non-finite numbers and inconsistent curve lengths are errors
that name the dotted field path. YAML text and files are in `profile/io.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from magcache_cli.types import SKIP_DEFAULTS, GuidanceMode

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
GUIDANCE_MODES = GuidanceMode.values()
LABEL_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_HEX16 = re.compile(r"[0-9a-f]{16}")
# transformer config keys about storage, not architecture: left out of `config_fingerprint`
STORAGE_KEYS = frozenset({"quantization_config"})
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
class AdapterInfo:
    """One LoRA adapter the curves were measured with."""

    name: str = _f("str", "The adapter's name on the pipeline (`--lora` loads `lora0`, `lora1`, ...).", required=True)
    source: str | None = _f("str?", "Hub repo, file or folder as given to `--lora`; null for an adapter the caller "
                            "loaded itself (found on the pipeline).")
    weight_name: str | None = _f("str?", "The weight file inside a hub repo or folder (`owner/repo/FILE` form). "
                                 "Left out when none was named.", omit_empty=True)
    sha256: str | None = _f("sha256?", "sha256 of the adapter's weight file, when the file is known. Left out "
                            "otherwise.", omit_empty=True)
    scale: float = _f("num", "The adapter's weight (`set_adapters`); `1.0` unless `SOURCE:SCALE` said otherwise.",
                      required=True)
    fused: bool = _f("bool", "Whether the adapter was fused into the weights (`--fuse-lora`).", required=True)


@dataclass(kw_only=True)
class Quantization:
    """How one component's weights were quantized."""

    component: str = _f("str", "The pipeline component, e.g. `transformer`.", required=True)
    backend: str = _f("str", "`torchao`, `bitsandbytes`, `quanto` or `gguf`.", required=True)
    spec: str | None = _f("str?", "The `--quantize` spec, e.g. `torchao:int8wo`; null for weights that came "
                          "quantized (a pre-quantized repo, a GGUF file) or were quantized by the caller.")
    config: dict[str, Any] = _f("map", "The quantization config the weights carry (`quantization_config.to_dict()`, "
                                "trimmed to its plain keys). Left out when empty.", factory=dict, omit_empty=True)


@dataclass(kw_only=True)
class TransformerFile:
    """A transformer loaded from one file (`--transformer-file`) instead of the pipeline's folder."""

    path: str = _f("str", "The path or URL as given.", required=True)
    format: str = _f("str", "`safetensors` or `gguf`.", required=True)
    sha256: str | None = _f("sha256?", "sha256 of the file; null when it was not on disk (a URL diffusers "
                            "downloaded to its cache).")
    bytes: int | None = _f("int1?", "File size in bytes.")


@dataclass(kw_only=True)
class ModelInfo:
    id: str = _f("str", "Hub id or local path, as the user gave it.", required=True)
    revision: str | None = _f("str?", "Hub revision (branch, tag or commit), if one was given.")
    pipeline_class: str = _f("str", "e.g. `FluxPipeline`.", required=True)
    transformer_class: str = _f("str", "e.g. `FluxTransformer2DModel`.", required=True)
    config_fingerprint: str | None = _f(
        "fingerprint?", "16 lowercase hex characters: the first 16 of the sha256 of the transformer config as "
        "JSON (`sort_keys=True`, keys starting with `_` and `quantization_config` dropped). Detects a profile "
        "used with a different architecture; quantization and adapters do not change it.")
    stack: list[str] = _f("[str]", "The block lists whose residual is cached, e.g. "
                          "`[transformer_blocks, single_transformer_blocks]`. May be empty for imported profiles.",
                          factory=list)
    components: dict[str, str] = _f("{str}", "Extra components loaded next to the weights (`--component "
                                    "NAME=ID_OR_DIR`), e.g. `{controlnet: ./flux-canny}`. Left out when empty.",
                                    factory=dict, omit_empty=True)
    adapters: list[AdapterInfo] = _f(
        "[adapter]", "LoRA adapters active (or fused) while the curves were measured (fields below). A run with "
        "other adapters or scales gets a warning naming the difference, never a refusal. Left out when empty.",
        factory=list, omit_empty=True)
    quantization: list[Quantization] = _f(
        "[quant]", "Quantized components (fields below): the `--quantize` spec or the config the weights came "
        "with. Not part of `config_fingerprint`: a quantized run of the same architecture gets a warning, never a "
        "refusal. Left out when empty.", factory=list, omit_empty=True)
    transformer_file: TransformerFile | None = _f(
        "tfile?", "The single `.safetensors` or `.gguf` file the transformer was loaded from (`--transformer-file`; "
        "fields below). Left out when the transformer came from the pipeline's folder.", omit_empty=True)


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
    threshold: float = field(default=SKIP_DEFAULTS["threshold"], metadata={
        "kind": "num0", "required": True, "key": None,
        "doc": "Accumulated error allowed before a step must be computed. `0` disables skipping."})
    max_skip_steps: int = field(default=SKIP_DEFAULTS["max_skip_steps"], metadata={
        "kind": "int0", "required": True, "key": None, "doc": "Most consecutive skipped steps (K)."})
    retention_ratio: float = field(default=SKIP_DEFAULTS["retention_ratio"], metadata={
        "kind": "retention", "required": True, "key": None,
        "doc": "Fraction of leading steps always computed: the first `int(retention_ratio · steps + 0.5)`."})
    forecast: float = field(default=0.0, metadata={
        "kind": "forecast", "required": False, "key": None, "omit_empty": True,
        "doc": "A of the residual forecast a skipped step replays, `r_c + A·(t−c)/(c−p)·(r_c−r_p)` from the "
               "branch's last two computed residuals (docs/quality.md). Omitted: `0`, MagCache's plain reuse; "
               "left out of the file when 0, so profiles from before it keep their text."})
    tuned: dict[str, Any] | None = _f("map?", "Evidence written by `tune` / `calibrate --tune`: the target, the "
                                      "measured quality, passes, the fewer-steps baseline, prompts, seeds and, from "
                                      "the search, `chosen_on` and `held_out` (the runs that chose the setting and "
                                      "those that confirmed it, each with its fewer-steps baseline) and "
                                      "`pipeline_runs`. Free-form otherwise.")


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
    """First 16 hex chars of sha256 over the config as sorted JSON, private (`_`-prefixed) keys dropped.

    Keys that describe how the weights are stored rather than the architecture (`quantization_config`) are
    dropped too: a quantized transformer has the fingerprint of its full-precision original."""
    public = {k: v for k, v in dict(config).items() if not str(k).startswith("_") and k not in STORAGE_KEYS}
    text = json.dumps(public, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_valid_label(label: object) -> bool:
    """Branch labels: non-empty, letters, digits and `_ . : -` (e.g. `cond`, `transformer_2.uncond`)."""
    return isinstance(label, str) and LABEL_RE.fullmatch(label) is not None


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
            elif dataclasses.is_dataclass(v):
                v = plain(v)
            out[f.metadata.get("key") or f.name] = copy.deepcopy(v)
        return out

    out = plain(p)  # the sections (and the entries nested in them) are dataclasses too
    out["branches"] = {label: {k: list(v) for k, v in plain(b).items() if v is not None}
                       for label, b in p.branches.items()}
    return out




