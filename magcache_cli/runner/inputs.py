"""File inputs of a pipeline call (images, masks, control images, videos): read, identify, and checked storable.

A profile records inputs as provenance, never pixels: the path given, its sha256 and its size (width x height,
and frames for a video), so it stays small and diffable and a team sees what it was calibrated on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from magcache_cli.errors import InputError
from magcache_cli.profile.schema import InputFile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")
KINDS = ("image", "video")


def sha256_file(path: Path) -> str:
    """sha256 of a file, or of a frame folder's files in name order (names and bytes)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in _frame_files(path):
            h.update(f.name.encode() + b"\0")
            h.update(f.read_bytes())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _frame_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def _open_image(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def _read_video(path: Path) -> list:
    from PIL import Image

    if path.is_dir():
        frames = [_open_image(f) for f in _frame_files(path)]
        if not frames:
            raise ValueError("the folder holds no image frames")
        return frames
    if path.suffix.lower() == ".gif":
        out = []
        with Image.open(path) as gif:
            for i in range(getattr(gif, "n_frames", 1)):
                gif.seek(i)
                out.append(gif.convert("RGB"))
        return out
    try:
        import imageio  # noqa: F401
    except ImportError:
        raise ValueError("reading MP4 and other movie files needs imageio and imageio-ffmpeg "
                         "(pip install 'magcache-cli[video]'), or pass a GIF or a folder of frames") from None
    from diffusers.utils import load_video

    return load_video(str(path))


def guess_kind(path: str | Path) -> str:
    p = Path(path)
    return "video" if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES else "image"


def read_input(arg: str, path: str | Path, kind: str | None = None) -> tuple[Any, InputFile]:
    """The value to pass as call argument `arg` (a PIL image, or a list of frames) and its provenance.

    A file that cannot be read raises InputError in one line, before any model is loaded."""
    p = Path(path).expanduser()
    kind = kind or guess_kind(p)
    if not p.exists():
        raise InputError(f"{arg}: {path} does not exist", arg=arg)
    try:
        if kind == "video":
            value = _read_video(p)
            w, h = value[0].size
            info = InputFile(arg=arg, path=str(path), sha256=sha256_file(p), kind="video", width=w, height=h,
                             frames=len(value))
        else:
            if p.is_dir():
                raise ValueError("it is a folder, not an image file")
            value = _open_image(p)
            info = InputFile(arg=arg, path=str(path), sha256=sha256_file(p), kind="image", width=value.size[0],
                             height=value.size[1])
    except InputError:
        raise
    except Exception as e:  # PIL/imageio raise many types; all mean "not a readable image/video"
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{arg}: cannot read {path} as {'a video' if kind == 'video' else 'an image'} ({text})",
                         arg=arg) from None
    return value, info


def read_inputs(specs: list[tuple[str, str, str | None]]) -> tuple[dict[str, Any], list[InputFile]]:
    """(arg, path, kind) triples -> call arguments and their provenance. An argument given several files
    (`--image a.png --image b.png`) gets a list."""
    values: dict[str, list] = {}
    infos = []
    for arg, path, kind in specs:
        value, info = read_input(arg, path, kind)
        values.setdefault(arg, []).append(value)
        infos.append(info)
    return {k: v[0] if len(v) == 1 else v for k, v in values.items()}, infos


def image_provenance(arg: str, value: Any) -> list[InputFile] | None:
    """Provenance of an in-memory image, or list of images / frames, handed to the Python API (no path:
    sha256 of mode, size and pixels). None when `value` is not one."""
    from PIL import Image

    items = value if isinstance(value, (list, tuple)) and value else [value]
    if not all(isinstance(v, Image.Image) for v in items):
        return None

    def digest(im):
        h = hashlib.sha256(f"{im.mode}:{im.size[0]}x{im.size[1]}:".encode())
        h.update(im.tobytes())
        return h.hexdigest()

    if isinstance(value, Image.Image):
        return [InputFile(arg=arg, path=None, sha256=digest(value), kind="image", width=value.size[0],
                          height=value.size[1])]
    h = hashlib.sha256("".join(digest(v) for v in items).encode()).hexdigest()
    return [InputFile(arg=arg, path=None, sha256=h, kind="video", width=items[0].size[0],
                      height=items[0].size[1], frames=len(items))]


def is_storable(v: Any) -> bool:
    """Plain YAML data: what a profile's `call_args` can hold."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return not isinstance(v, float) or v == v and abs(v) != float("inf")
    if isinstance(v, (list, tuple)):
        return all(is_storable(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and is_storable(x) for k, x in v.items())
    return False


def split_call_args(call_kwargs: dict[str, Any], inputs: list[InputFile] | None = None
                    ) -> tuple[dict[str, Any], list[InputFile]]:
    """(storable call args, input provenance) for a profile, checked BEFORE anything runs.

    File inputs given as `inputs` are recorded as such; an in-memory PIL image (Python API) gets a provenance
    without a path; any other value that YAML cannot hold (a tensor, an array, a callable) is an InputError
    naming the argument."""
    inputs = list(inputs or [])
    from_files = {i.arg for i in inputs}
    plain = {}
    for key, value in call_kwargs.items():
        if key in from_files:
            continue
        if is_storable(value):
            plain[key] = value
            continue
        made = image_provenance(key, value)
        if made is None:
            raise InputError(
                f"call argument {key} is a {type(value).__name__}, which a profile cannot record",
                hint="pass images and videos as files (or PIL images in Python); other arguments as plain "
                     "numbers, strings or lists", arg=key)
        inputs += made
    return plain, inputs


def recorded_inputs(entries: list[InputFile], given: set[str], accepted: set[str] | None,
                    profile_dir: Path | None = None) -> tuple[dict[str, Any], list[InputFile], list[str]]:
    """The profile's recorded file inputs for the call arguments not `given` now: each file read again when it
    is still there with the recorded sha256 (tried as given, then next to the profile); otherwise an
    InputError naming the argument. Arguments the pipeline does not take (`accepted`) are dropped with a note.
    Returns (call arguments, provenance, notes)."""
    by_arg: dict[str, list[InputFile]] = {}
    for e in entries:
        if e.arg not in given:
            by_arg.setdefault(e.arg, []).append(e)
    specs, notes = [], []
    for arg, files in by_arg.items():
        if accepted is not None and arg not in accepted:
            notes.append(f"calibration.inputs: {arg} dropped (this pipeline does not take it)")
            continue
        for e in files:
            specs.append((arg, _find_recorded(e, profile_dir), e.kind))
    values, infos = read_inputs(specs)
    return values, infos, notes


def _find_recorded(e: InputFile, profile_dir: Path | None) -> str:
    arg, path, sha = e.arg, e.path, e.sha256
    if path is None:
        raise InputError(f"{arg}: the profile was calibrated on an in-memory {e.kind} (sha256 {sha[:12]}…), "
                         "which it cannot reload", hint=f"pass the {e.kind} for {arg} again", arg=arg)
    tried = [Path(path).expanduser()]
    if profile_dir is not None and not tried[0].is_absolute():
        tried.append(profile_dir / path)
    found = [p for p in tried if p.exists()]
    for p in found:
        if sha256_file(p) == sha:
            return str(p)
    what = "changed since calibration (sha256 differs)" if found else "is not there"
    raise InputError(f"{arg}: the profile's {e.kind} {path} {what}",
                     hint=f"pass the {e.kind} for {arg} again, or restore the file", arg=arg)


def drop_unaccepted(args: dict[str, Any], accepted: set[str] | None, source: str) -> tuple[dict[str, Any], list[str]]:
    """Call arguments inherited from a profile (`source`, e.g. `calibration.call_args`) that this pipeline
    does not take (a text-to-video profile's `num_frames` on a video-to-video class): dropped, with a note."""
    if accepted is None:
        return dict(args), []
    kept = {k: v for k, v in args.items() if k in accepted}
    notes = [f"{source}: {k} dropped (this pipeline does not take it)" for k in args if k not in accepted]
    return kept, notes


def prompt_seed_pairs(prompts: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """The runs of prompts × seeds, prompt-major (every seed of the first prompt, then of the next): the one
    order calibration, runs, comparisons and output names follow."""
    return [(p, s) for p in prompts for s in seeds]
