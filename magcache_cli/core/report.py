"""What happened in a cached or recording pipeline call: per-branch computed and skipped steps."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CallReport:
    """What happened in one pipeline call: per branch the computed and skipped steps, as positions in the
    scheduler's full schedule of `steps` steps (each listed once, however many passes it took); the
    [begin, stop) `window` of positions the denoiser ran; the positions it ran that the profile's curves do
    not cover (`uncovered`, always computed); and denoiser passes."""

    steps: int
    computed: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    calls: int = 0
    computed_calls: int = 0
    window: tuple[int, int] | None = None
    uncovered: list[int] = field(default_factory=list)

    def note(self, labels: tuple[str, ...], step: int, computed: bool) -> None:
        self.calls += 1
        self.computed_calls += computed
        begin, stop = self.window or (step, step + 1)
        self.window = (min(begin, step), max(stop, step + 1))
        for label in labels:
            bucket = (self.computed if computed else self.skipped).setdefault(label, [])
            if step not in bucket:
                bucket.append(step)
            (self.skipped if computed else self.computed).setdefault(label, [])


def merge_reports(reports) -> CallReport:
    """One CallReport for a pipeline call served by several denoisers (their labels are distinct)."""
    merged = CallReport(max(r.steps for r in reports))
    for r in reports:
        merged.computed.update(r.computed)
        merged.skipped.update(r.skipped)
        merged.calls += r.calls
        merged.computed_calls += r.computed_calls
        merged.uncovered = sorted({*merged.uncovered, *r.uncovered})
        if r.window is not None:
            w = merged.window or r.window
            merged.window = (min(w[0], r.window[0]), max(w[1], r.window[1]))
    return merged
