"""Wall time you can trust: warm-up, interleaved repeats, medians, and a verdict on the spread.

A single timed run per configuration measures the machine as much as the configuration: a neighbour's
burst during the cached run turns a 1.5x speedup into a "slowdown". Here every configuration is warmed up
once, then timed `repeats` times in turn (uncached, cached, fewer steps, uncached, ...), so a disturbance
hits all of them alike; the median of each is reported. When the repeats of any configuration spread by
more than `SPREAD_LIMIT` of their median, or the wall-time speedup contradicts the pass counts (faster than
the passes allow, or slower although passes were skipped), the timings are marked disturbed and callers
lead with the pass-count speedup.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SPREAD_LIMIT = 0.25  # (max - min) / median of one configuration's repeats
DEFAULT_REPEATS = 3


@dataclass
class Timing:
    samples: list[float]  # seconds per pipeline call, one per repeat

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0 for identical repeats."""
        m = self.median
        return (max(self.samples) - min(self.samples)) / m if m > 0 else 0.0


@dataclass
class Timings:
    """Interleaved timings of several configurations of the same work."""

    by_label: dict[str, Timing]
    repeats: int

    def median(self, label: str) -> float:
        return self.by_label[label].median

    def speedup(self, base: str, other: str) -> float:
        o = self.median(other)
        return self.median(base) / o if o > 0 else float("inf")

    def to_json(self) -> dict:
        return {"repeats": self.repeats,
                "median_s": {k: round(t.median, 4) for k, t in self.by_label.items()},
                "spread": {k: round(t.spread, 3) for k, t in self.by_label.items()}}

    @property
    def max_spread(self) -> float:
        return max((t.spread for t in self.by_label.values()), default=0.0)

    def verdict(self, speedup_passes: float, base: str = "uncached", other: str = "cached") -> str | None:
        """Why these wall times cannot be trusted, or None when they can."""
        wall = self.speedup(base, other)
        if self.max_spread > SPREAD_LIMIT:
            return (f"the {self.repeats} repeats of one configuration differ by {self.max_spread:.0%} of their median: "
                    f"the machine was busy while timing")
        if wall > 1.1 * speedup_passes:
            return "the wall-time speedup exceeds what the skipped passes allow: the machine was busy while timing"
        if speedup_passes > 1.05 and wall < 1.0:
            return "the cached run timed slower although it skipped passes: the machine was busy while timing"
        return None


def interleaved(calls: Mapping[str, Callable[[], float]], repeats: int = DEFAULT_REPEATS, warm_up: bool = True,
                on_call: Callable[[str], None] | None = None) -> Timings:
    """Time each call `repeats` times, in turn; each call returns the seconds it measured (pipeline time only).

    With `warm_up`, every call runs once untimed first (allocation, kernel selection, compilation). The
    order rotates each round, so no configuration always runs right after the same other one.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    labels = list(calls)
    if warm_up:
        for label in labels:
            if on_call:
                on_call(f"warm-up {label}")
            calls[label]()
    samples: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(repeats):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            if on_call:
                on_call(f"timing {label} ({r + 1}/{repeats})")
            samples[label].append(calls[label]())
    return Timings({label: Timing(s) for label, s in samples.items()}, repeats)
