"""File inputs, another pipeline class and extra components from the command line, checked before the model
loads: `--image` (repeatable), `--mask-image`, `--control-image`, `--video`, `--set KEY=@PATH`, `--strength`,
`--pipeline CLASS`, `--component NAME=ID_OR_DIR`.

Each argument is checked against the pipeline class's call signature when the class is known without loading
(`--pipeline`, the profile's class, or the `model_index.json` of the weights); a file that cannot be read is a
one-line error naming its flag. `run` without file flags reuses the files its profile recorded, while they
still exist with the recorded sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magcache_cli.errors import InputError, LoadError, UsageError
from magcache_cli.profile.schema import InputFile

FLAGS = {"image": "--image", "mask_image": "--mask-image", "control_image": "--control-image", "video": "--video",
         "strength": "--strength"}


def flag_of(arg: str) -> str:
    return FLAGS.get(arg, f"--set {arg}=@PATH")


@dataclass
class CallInputs:
    """What the input flags resolved to: call arguments read from files (and `strength`), their provenance,
    the pipeline class and components to load, and notes to show."""

    values: dict[str, Any] = field(default_factory=dict)
    provenance: list[InputFile] = field(default_factory=list)
    pipeline: str | None = None
    components: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cls: type | None = None  # the pipeline class, when known before loading (its call signature is checked)


def split_set(items: list[str] | None) -> tuple[list[str] | None, list[tuple[str, str, None]]]:
    """`--set` items: (KEY=VALUE items, (key, path, None) for each KEY=@PATH file)."""
    plain, files = [], []
    for item in items or []:
        key, sep, value = item.partition("=")
        if sep and value.startswith("@"):
            if not key.strip().isidentifier() or not value[1:]:
                raise UsageError(f"--set {item!r} is not KEY=@PATH", hint="e.g. --set reference=@ref.png")
            files.append((key.strip(), value[1:], None))
        else:
            plain.append(item)
    return (plain if items is not None else None), files


def _known_class(pipeline: str | None) -> type | None:
    """The diffusers class named `pipeline`, if there is one."""
    import diffusers

    cls = getattr(diffusers, pipeline, None) if pipeline else None
    return cls if isinstance(cls, type) else None


def _check_taken(args: list[str], cls_name: str | None, accepted: set[str] | None) -> None:
    for arg in args:
        if accepted is not None and arg not in accepted:
            takes = sorted(a for a in accepted if a in ("image", "mask_image", "control_image", "video", "strength"))
            hint = (f"it takes {', '.join(FLAGS.get(a, a) for a in takes)}" if takes else
                    "load the weights with a class that does, e.g. --pipeline FluxImg2ImgPipeline")
            raise UsageError(f"{flag_of(arg)}: {cls_name} does not take `{arg}`", hint=hint)


def _read(specs: list[tuple[str, str, str | None]]):
    from magcache_cli.runner.inputs import read_inputs

    try:
        return read_inputs(specs)
    except InputError as e:
        text = e.message.split(": ", 1)[-1] if e.arg else e.message
        raise UsageError(f"{flag_of(e.arg) if e.arg else 'input'}: {text}", hint=e.hint or "pass a readable file") from None


def gather(*, image: list[Path] | None, mask_image: Path | None, control_image: Path | None, video: Path | None,
           strength: float | None, set_files: list[tuple[str, str, None]], pipeline: str | None,
           component: list[str] | None,
           model: str | None, revision: str | None, profile=None, profile_path: str | None = None) -> CallInputs:
    """Resolve and check every input flag; read the files. With a `profile` (run, tune), the pipeline class
    and components default to the profile's, and files it recorded are read back for the arguments no flag
    gives."""
    from magcache_cli.runner.classes import call_arguments, parse_components
    from magcache_cli.runner.loading import pipeline_class_name

    if strength is not None and not 0 < strength <= 1:
        raise UsageError(f"--strength must be in (0, 1], got {strength:g}", hint="e.g. --strength 0.6")
    specs = [*(("image", str(p), None) for p in image or []),
             *(("mask_image", str(p), None) for p in [mask_image] if p),
             *(("control_image", str(p), None) for p in [control_image] if p),
             *(("video", str(p), "video") for p in [video] if p), *set_files]
    try:
        components = parse_components(component)
    except LoadError as e:
        raise UsageError(e.message.replace("component", "--component", 1), hint=e.hint) from None
    out = CallInputs(pipeline=pipeline, components=components)
    if profile is not None:  # the profile's class and components, unless --pipeline / --component say otherwise
        out.pipeline = out.pipeline or profile.model.pipeline_class
        out.components = out.components or dict(profile.model.components)
    import diffusers

    if out.pipeline and not isinstance(getattr(diffusers, out.pipeline, None), type):
        if pipeline:
            raise UsageError(f"--pipeline {pipeline}: diffusers {diffusers.__version__} has no such class",
                             hint="e.g. FluxImg2ImgPipeline, FluxInpaintPipeline or AutoPipelineForImage2Image")
        out.notes.append(f"model.pipeline_class: {out.pipeline} is not in diffusers {diffusers.__version__}; "
                         "loading the class the weights name")
        out.pipeline = None
    cls_name = out.pipeline or pipeline_class_name(model or (profile.model.id if profile else ""), revision)
    out.cls = _known_class(cls_name)
    accepted = call_arguments(out.cls) if out.cls is not None else None
    given = list(dict.fromkeys(a for a, _, _ in specs))
    _check_taken(given + (["strength"] if strength is not None else []), cls_name, accepted)
    out.values, out.provenance = _read(specs)
    if strength is not None:
        out.values["strength"] = strength
    if profile is not None and profile.calibration.inputs:
        from magcache_cli.runner.inputs import recorded_inputs

        where = Path(profile_path).parent if profile_path else None
        try:
            values, infos, notes = recorded_inputs(profile.calibration.inputs, set(given), accepted, where)
        except InputError as e:
            raise UsageError(f"{e.message.split(': ', 1)[-1]} ({flag_of(e.arg)})", hint=e.hint) from None
        out.values.update(values)
        out.provenance += infos
        out.notes += notes
    return out


def profile_file(ref: str) -> str | None:
    """The file a profile reference (a path or a shipped profile's name) resolves to, for recorded inputs
    relative to it."""
    from magcache_cli.profile.resolve import resolve_profile

    try:
        return str(resolve_profile(str(ref)))
    except Exception:  # resolution errors surface when the profile itself is loaded
        return None
