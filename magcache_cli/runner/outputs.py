"""Write pipeline outputs to disk: PNG for images; MP4 for video when a writer is installed, else GIF."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from magcache_cli.errors import OutputError
from magcache_cli.runner.recovery import atomic_write


def output_paths(template: Path, pairs: list[tuple[str, int]], prompts: list[str]) -> list[Path]:
    """One path per prompt × seed: the template itself for a single output, else `<stem>-p<i>-s<seed><ext>`."""
    template = Path(template)
    if len(pairs) == 1:
        return [template]
    index = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    return [template.with_name(f"{template.stem}-p{index[p]}-s{s}{template.suffix}") for p, s in pairs]


def _to_pil(frame: Any) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr)


def _fields(out: Any) -> list[tuple[str, Any]]:
    """The fields of a pipeline output in declaration order: BaseOutput, any dataclass, a tuple, an object."""
    if isinstance(out, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(out)]
    if isinstance(out, Mapping):
        return list(out.items())
    if dataclasses.is_dataclass(out):
        return [(f.name, getattr(out, f.name, None)) for f in dataclasses.fields(out)]
    return list(vars(out).items()) if hasattr(out, "__dict__") else []


def _array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor (output_type="pt"): channels first
        arr = value.detach().float().cpu().numpy()
        return np.moveaxis(arr, -3, -1) if arr.ndim >= 3 and arr.shape[-3] in (1, 3, 4) else arr
    return None


def _is_picture(arr: np.ndarray) -> bool:
    return arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and min(arr.shape[:2]) > 4


def media(value: Any) -> tuple[str, Any] | None:
    """('image', first image) or ('video', first clip's frames) if `value` holds pictures, else None (audio,
    latents, text, ...). Batches: PIL lists, [B, H, W, C] arrays, lists of frame lists, [B, F, H, W, C] arrays."""
    if isinstance(value, Image.Image):
        return "image", value
    if isinstance(value, (list, tuple)) and value:
        head = value[0]
        if isinstance(head, Image.Image):
            return "image", head
        if isinstance(head, (list, tuple)) and head and isinstance(head[0], Image.Image):
            return "video", list(head)
        arr = _array(head)
        if arr is not None and _is_picture(arr):
            return "image", arr
        if arr is not None and arr.ndim == 4 and _is_picture(arr[0]):
            return "video", list(arr)
        return None
    arr = _array(value)
    if arr is None:
        return None
    if arr.ndim == 4 and _is_picture(arr[0]):
        return "image", arr[0]
    if arr.ndim == 5 and _is_picture(arr[0, 0]):
        return "video", list(arr[0])
    return None


def media_field(out: Any) -> tuple[str, Any]:
    """(name, value) of the first field of a pipeline output that holds pictures, whatever its name (`images`,
    `frames`, `image`, `video`, ...); audio and other fields are passed over. OutputError if there is none."""
    fields = _fields(out)
    for name, value in fields:
        if media(value) is not None:
            return name, value
    names = ", ".join(name for name, _ in fields) or "none"
    raise OutputError(f"pipeline output {type(out).__name__} holds no image or video (fields: {names})",
                      hint="nothing to save; check output_type (e.g. not 'latent')")


def first_item(out: Any) -> tuple[str, Any]:
    """('image', PIL) or ('video', [PIL...]): the first item of the output's first picture field."""
    kind, item = media(media_field(out)[1])
    return kind, (_to_pil(item) if kind == "image" else [_to_pil(f) for f in item])


def as_array(out: Any) -> np.ndarray:
    """The first output as a float array in [0, 1]: [H, W, C] for images, [F, H, W, C] for video."""
    kind, item = first_item(out)
    frames = item if kind == "video" else [item]
    arr = np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) / 255.0 for f in frames])
    return arr if kind == "video" else arr[0]


def save(out: Any, path: Path, fps: int = 8) -> Path:
    """Save the first item of a pipeline output; returns the path written (its suffix may change for video).

    Atomic: an interrupted or failed write leaves no partial file (and no stray `.mp4` when the MP4 writer
    is missing and the video falls back to GIF); an existing file is replaced only by a complete one.
    """
    path = Path(path)
    kind, item = first_item(out)
    if kind == "image":
        path = path if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") else path.with_suffix(".png")
        return atomic_write(path, lambda tmp: item.save(tmp))
    frames = np.stack([np.asarray(f.convert("RGB")) for f in item])
    try:
        import imageio.v3 as iio  # optional extra: magcache-cli[video]

        return atomic_write(path.with_suffix(".mp4"), lambda tmp: iio.imwrite(tmp, frames, fps=fps))
    except OSError as e:
        if e.errno is not None:  # a real I/O failure (disk full, permissions), not a missing writer
            raise
    except Exception:  # no imageio, or no ffmpeg backend: GIF needs nothing beyond Pillow
        pass
    return atomic_write(path.with_suffix(".gif"), lambda tmp: item[0].save(
        tmp, save_all=True, append_images=item[1:], duration=int(1000 / fps), loop=0))
