"""Text charts of curves and schedules: sparklines, timelines, an ASCII plot. Pure functions, no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from magcache_cli.core.rule import resample

_SPARK_LEVELS = "▁▂▃▄▅▆▇█"


_COMPUTED, _SKIPPED = "█", "░"


def timeline(computed: Sequence[bool]) -> str:
    """One character per step: '█' computed, '░' skipped."""
    return "".join(_COMPUTED if flag else _SKIPPED for flag in computed)


def sparkline(values: Sequence[float]) -> str:
    """One of '▁▂▃▄▅▆▇█' per value, scaled between the min and the max; a constant curve is all '▄'."""
    vals = [float(v) for v in values]
    if not vals:
        return ""
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("sparkline values must be finite")
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return _SPARK_LEVELS[3] * len(vals)
    top = len(_SPARK_LEVELS) - 1
    return "".join(_SPARK_LEVELS[int((v - lo) / (hi - lo) * top + 0.5)] for v in vals)


_MARKS = "●×+o◆"


def ascii_chart(curves: Mapping[str, Sequence[float]], stds: Mapping[str, Sequence[float] | None] | None = None,
                height: int = 10, width: int = 72) -> list[str]:
    """A text chart of ratio curves: one column per step (resampled to `width` if longer), `height` rows.

    Branch k is drawn with `●×+o◆`[k], `*` where several branches meet, `·` the ±std band, `┈` the
    1.0 line. The y axis is labelled at the top (max), at 1.0 and at the bottom (min).
    """
    n = max(len(c) for c in curves.values())
    cols = min(n, width)
    series = {label: resample(c, cols) for label, c in curves.items()}
    bands = {label: resample(s, cols) for label, s in (stds or {}).items() if s is not None and label in series}
    lows = [v - bands.get(label, [0.0] * cols)[i] for label, c in series.items() for i, v in enumerate(c)]
    highs = [v + bands.get(label, [0.0] * cols)[i] for label, c in series.items() for i, v in enumerate(c)]
    lo, hi = min([*lows, 1.0]), max([*highs, 1.0])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.01, hi + 0.01

    def row(v: float) -> int:
        return min(height - 1, max(0, round((hi - v) / (hi - lo) * (height - 1))))

    grid = [[" "] * cols for _ in range(height)]
    grid[row(1.0)] = ["┈"] * cols
    for label, s in bands.items():
        for x, (v, e) in enumerate(zip(series[label], s)):
            for y in range(row(v + e), row(v - e) + 1):
                grid[y][x] = "·"
    owner: dict[tuple[int, int], str] = {}
    for k, (label, c) in enumerate(series.items()):
        for x, v in enumerate(c):
            y = row(v)
            grid[y][x] = "*" if owner.get((y, x), label) != label else _MARKS[k % len(_MARKS)]
            owner[(y, x)] = label
    labels = {0: f"{hi:.4f}", row(1.0): "1.0000", height - 1: f"{lo:.4f}"}
    lines = [f"{labels.get(y, ''):>7} {'┤' if y in labels else '│'}{''.join(r)}" for y, r in enumerate(grid)]
    lines.append(" " * 8 + "└" + "─" * cols)
    last = f"step {n - 1}"
    lines.append(" " * 9 + "0" + last.rjust(cols - 1))
    keys = [f"{_MARKS[k % len(_MARKS)]} {label}" for k, label in enumerate(series)]
    extra = ["* several"] if len(series) > 1 else []
    lines.append(" " * 9 + "  ".join(keys + extra + (["· ±ratio_std"] if bands else []) + ["┈ 1.0"]))
    return lines
