"""Handwritten-digit helpers for the bundled demo model.

The demo model (``magcache_cli/demo_model``) is a tiny Stable-Diffusion-3 style pipeline trained on
scikit-learn's 8x8 handwritten digits, upsampled to 32x32. This module gives the same data to the
training script and a small scikit-learn classifier that measures *prompt adherence*: the fraction of
generated images that are recognised as the digit their prompt asked for.

scikit-learn is only needed for the data and the classifier (``pip install scikit-learn``); it is
imported lazily so importing this module costs nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

DEMO_MODEL_DIR: Path = Path(__file__).resolve().parents[1] / "demo_model"

DIGIT_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)

DIGIT_PROMPTS: tuple[str, ...] = tuple(f"a handwritten digit {w}" for w in DIGIT_WORDS)

#: Side length (pixels) the classifier works at. Inputs of any size are resized to it.
CLASSIFIER_SIZE: int = 16

#: Fraction of the real digits held out from classifier training (for its own accuracy check).
HELDOUT_FRACTION: float = 0.2


def prompt_for(digit: int) -> str:
    """The training prompt for ``digit`` (0-9), e.g. ``"a handwritten digit seven"``."""
    d = int(digit)
    if not 0 <= d <= 9:
        raise ValueError(f"digit must be in 0..9, got {digit!r}")
    return DIGIT_PROMPTS[d]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize float images [N,H,W] to [N,size,size] (bilinear upsampling, antialiased area downsampling)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        out = x
    elif h < size or w < size:
        out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].clamp(0.0, 1.0).numpy().astype(np.float32)


@functools.lru_cache(maxsize=4)
def _load_digits_cached(size: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    raw = (data.images.astype(np.float32) / 16.0).clip(0.0, 1.0)  # [N,8,8], ink = 1
    images = _resize(raw, size)
    labels = data.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digit_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 scikit-learn digits as float32 images ``[N,size,size]`` in [0,1] (white ink on black), and labels.

    The 8x8 originals are upsampled bilinearly; the training script uses exactly these images.
    Returned arrays are read-only (they are cached); copy them before modifying.
    """
    return _load_digits_cached(int(size))


def _to_gray_array(images: Any) -> np.ndarray:
    """PIL image(s) or arrays [H,W], [H,W,C], [N,H,W] or [N,H,W,C] in [0,1] → float32 [N,H,W]."""
    if isinstance(images, np.ndarray) or hasattr(images, "numpy"):
        arr = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images)
        arr = arr.astype(np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = arr[None]  # a single [H,W,C] image
        if arr.ndim == 4:
            arr = arr[..., :3].mean(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
        if arr.ndim != 3:
            raise ValueError(f"expected images shaped [N,H,W] or [N,H,W,C], got {arr.shape}")
        return arr
    if not isinstance(images, (list, tuple)):
        images = [images]
    out = []
    for im in images:
        if hasattr(im, "convert"):  # PIL
            out.append(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
        else:
            out.append(_to_gray_array(im)[0])
    return np.stack(out)


def _features(images: Any) -> np.ndarray:
    gray = _to_gray_array(images)
    return _resize(gray.clip(0.0, 1.0), CLASSIFIER_SIZE).reshape(len(gray), -1)


def heldout_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) into :func:`load_digit_images`, stratified by label, deterministic."""
    from sklearn.model_selection import train_test_split

    _, labels = load_digit_images()
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=HELDOUT_FRACTION, random_state=seed, stratify=labels
    )
    return np.sort(train_idx), np.sort(test_idx)


@functools.lru_cache(maxsize=4)
def train_classifier(seed: int = 0):
    """An RBF-SVM digit classifier trained on the real digits (minus a held-out 20%), cached in-process.

    Images are processed exactly like :func:`classify` processes model outputs: 32x32 grayscale in [0,1],
    resized to ``CLASSIFIER_SIZE``. The fitted estimator gets ``heldout_idx_`` and ``heldout_accuracy_``.
    """
    from sklearn.svm import SVC

    images, labels = load_digit_images(32)
    train_idx, test_idx = heldout_split(seed)
    feats = _features(images)
    clf = SVC(C=10.0, gamma="scale", kernel="rbf", random_state=seed)
    clf.fit(feats[train_idx], labels[train_idx])
    clf.heldout_idx_ = test_idx
    clf.heldout_accuracy_ = float((clf.predict(feats[test_idx]) == labels[test_idx]).mean())
    return clf


def classify(images: Any, seed: int = 0) -> np.ndarray:
    """Predicted digit (int64 array [N]) for PIL images or arrays [N,H,W(,C)] with values in [0,1]."""
    feats = _features(images)
    if len(feats) == 0:
        return np.zeros((0,), dtype=np.int64)
    return train_classifier(seed).predict(feats).astype(np.int64)


def adherence(images: Any, target_digits: Sequence[int] | Iterable[int] | int) -> float:
    """Fraction of ``images`` that the classifier recognises as the prompted digit."""
    preds = classify(images)
    if isinstance(target_digits, (int, np.integer)):
        targets = np.full(len(preds), int(target_digits), dtype=np.int64)
    else:
        targets = np.asarray(list(target_digits), dtype=np.int64)
    if targets.shape != preds.shape:
        raise ValueError(f"{len(preds)} images but {targets.size} target digits")
    if len(preds) == 0:
        return float("nan")
    return float((preds == targets).mean())
