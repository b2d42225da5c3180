"""Write pipeline outputs to disk: PNG for images; MP4 for video when a writer is installed, else GIF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


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


def first_item(out: Any) -> tuple[str, Any]:
    """('image', PIL) or ('video', [PIL...]) from a diffusers pipeline output."""
    frames = getattr(out, "frames", None)
    if frames is not None:
        video = frames[0]
        return "video", [_to_pil(f) for f in video]
    images = getattr(out, "images", None)
    if images is None:
        raise ValueError(f"pipeline output {type(out).__name__} has neither images nor frames")
    return "image", _to_pil(images[0])


def as_array(out: Any) -> np.ndarray:
    """The first output as a float array in [0, 1]: [H, W, C] for images, [F, H, W, C] for video."""
    kind, item = first_item(out)
    frames = item if kind == "video" else [item]
    arr = np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) / 255.0 for f in frames])
    return arr if kind == "video" else arr[0]


def save(out: Any, path: Path, fps: int = 8) -> Path:
    """Save the first item of a pipeline output; returns the path written (its suffix may change for video)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind, item = first_item(out)
    if kind == "image":
        path = path if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") else path.with_suffix(".png")
        item.save(path)
        return path
    try:
        import imageio.v3 as iio  # optional extra: magcache-cli[video]

        mp4 = path.with_suffix(".mp4")
        iio.imwrite(mp4, np.stack([np.asarray(f.convert("RGB")) for f in item]), fps=fps)
        return mp4
    except Exception:  # no imageio or no ffmpeg backend: GIF needs nothing beyond Pillow
        gif = path.with_suffix(".gif")
        item[0].save(gif, save_all=True, append_images=item[1:], duration=int(1000 / fps), loop=0)
        return gif
