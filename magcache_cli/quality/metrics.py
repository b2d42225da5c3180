"""Image and video quality of a cached output against the uncached one: PSNR, SSIM and (when possible) LPIPS.

Metrics come from torchmetrics (a core dependency: `tune` and `run --compare` work after a plain install). Inputs are float arrays in
[0, 1] shaped [H, W, C] (image) or [F, H, W, C] (video; every metric is the mean over frames), as returned
by `outputs.as_array`.

PSNR of identical outputs is infinite; it is capped at `PSNR_CAP` dB so that reports, JSON and the
profile's evidence block stay finite numbers ("100 dB" reads as "identical").

LPIPS needs pretrained backbone weights that torchmetrics would download; it is only used when torchvision
and the AlexNet weights are already in the local torch hub cache. Otherwise `lpips_scorer()` says why and
every LPIPS value is None: nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from magcache_cli.errors import MagCacheError

PSNR_CAP = 100.0
LPIPS_SKIPPED = "LPIPS skipped: weights not available offline"
_INSTALL_HINT = "reinstall magcache-cli, or pip install torchmetrics (a dependency it lost)"


def _require_torchmetrics():
    try:
        import torchmetrics.functional.image as tmi
    except ImportError as e:
        raise MagCacheError("quality metrics need torchmetrics, which is not installed", hint=_INSTALL_HINT) from e
    return tmi


def _nchw(a: np.ndarray):
    """[H, W, C] or [F, H, W, C] float array -> float64 torch tensor [N, C, H, W]."""
    import torch

    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected an image [H, W, C] or video [F, H, W, C], got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)


def _pair(test: np.ndarray, ref: np.ndarray):
    if np.shape(test) != np.shape(ref):
        raise ValueError(f"outputs differ in shape: {np.shape(test)} vs {np.shape(ref)}")
    return _nchw(test), _nchw(ref)


def psnr(test: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB on [0, 1] data (per frame, then the mean), capped at PSNR_CAP for identical outputs."""
    tmi = _require_torchmetrics()
    t, r = _pair(test, ref)
    if bool((t == r).all()):
        return PSNR_CAP
    per = tmi.peak_signal_noise_ratio(t, r, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return float(min(PSNR_CAP, per.clamp(max=PSNR_CAP).mean().item()))


def ssim(test: np.ndarray, ref: np.ndarray) -> float:
    """SSIM on [0, 1] data with an 11-pixel Gaussian window (smaller for tiny outputs), mean over frames."""
    tmi = _require_torchmetrics()
    t, r = _pair(test, ref)
    side = min(t.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    if kernel < 3:
        raise ValueError(f"outputs of {side} pixels are too small for SSIM")
    per = tmi.structural_similarity_index_measure(t, r, data_range=1.0, kernel_size=kernel, reduction="none")
    return float(per.mean().item())


def _alexnet_weights_path() -> str | None:
    """Where torchvision keeps the AlexNet weights LPIPS uses, if they are already there."""
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    weights = torchvision.models.AlexNet_Weights.DEFAULT
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return path if os.path.isfile(path) else None


def lpips_scorer() -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str | None]:
    """`(score(test, ref) -> float, None)` when LPIPS can run offline, else `(None, reason)`.

    Outputs smaller than 64 px are upsampled (bilinear) to 64 px first: AlexNet's pooling needs that much.
    """
    try:
        _require_torchmetrics()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except (MagCacheError, ImportError):
        return None, LPIPS_SKIPPED
    if _alexnet_weights_path() is None:
        return None, LPIPS_SKIPPED
    try:
        model = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).eval()
    except Exception:  # a broken local cache: still never fatal, never a download
        return None, LPIPS_SKIPPED

    def score(test: np.ndarray, ref: np.ndarray) -> float:
        import torch
        import torch.nn.functional as F

        t, r = (x.float() for x in _pair(test, ref))
        side = min(t.shape[-2:])
        if side < 64:
            size = [round(s * 64 / side) for s in t.shape[-2:]]
            t, r = (F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (t, r))
        with torch.no_grad():
            vals = [model(t[i:i + 1].clamp(0, 1), r[i:i + 1].clamp(0, 1)).item() for i in range(t.shape[0])]
        return float(sum(vals) / len(vals))

    return score, None


@dataclass
class Quality:
    """Quality of several outputs against their references: means over outputs, and the worst output."""

    psnr: float
    ssim: float
    lpips: float | None
    psnr_min: float
    ssim_min: float
    lpips_max: float | None
    per_output: list[dict[str, float | None]] = field(default_factory=list)

    def meets(self, min_psnr: float | None = None, min_ssim: float | None = None,
              max_lpips: float | None = None) -> bool:
        """True when every given target holds for the mean over outputs."""
        if min_psnr is not None and self.psnr < min_psnr:
            return False
        if min_ssim is not None and self.ssim < min_ssim:
            return False
        if max_lpips is not None and (self.lpips is None or self.lpips > max_lpips):
            return False
        return True

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, digits)  # noqa: E731
        return {"psnr": r(self.psnr), "ssim": r(self.ssim), "lpips": r(self.lpips), "psnr_min": r(self.psnr_min),
                "ssim_min": r(self.ssim_min), "lpips_max": r(self.lpips_max)}


def measure(tests: Sequence[np.ndarray], refs: Sequence[np.ndarray],
            lpips: Callable[[np.ndarray, np.ndarray], float] | None = None) -> Quality:
    """PSNR, SSIM (and LPIPS with a scorer from `lpips_scorer`) of each test output against its reference."""
    if len(tests) != len(refs) or not tests:
        raise ValueError(f"need as many outputs as references (got {len(tests)} and {len(refs)})")
    per = []
    for t, r in zip(tests, refs):
        per.append({"psnr": psnr(t, r), "ssim": ssim(t, r), "lpips": lpips(t, r) if lpips else None})
    mean = lambda k: sum(p[k] for p in per) / len(per)  # noqa: E731
    return Quality(
        psnr=mean("psnr"), ssim=mean("ssim"), lpips=mean("lpips") if lpips else None,
        psnr_min=min(p["psnr"] for p in per), ssim_min=min(p["ssim"] for p in per),
        lpips_max=max(p["lpips"] for p in per) if lpips else None, per_output=per,
    )
