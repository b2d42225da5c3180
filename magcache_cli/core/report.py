"""What happened in a cached or recording pipeline call: per-branch computed and skipped steps."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CallReport:
    """What happened in one pipeline call: per branch the computed and skipped steps, and denoiser passes."""

    steps: int
    computed: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    calls: int = 0
    computed_calls: int = 0

    def note(self, labels: tuple[str, ...], step: int, computed: bool) -> None:
        self.calls += 1
        self.computed_calls += computed
        for label in labels:
            bucket = self.computed if computed else self.skipped
            bucket.setdefault(label, []).append(step)
            (self.skipped if computed else self.computed).setdefault(label, [])


def merge_reports(reports) -> CallReport:
    """One CallReport for a pipeline call served by several denoisers (their labels are distinct)."""
    merged = CallReport(max(r.steps for r in reports))
    for r in reports:
        merged.computed.update(r.computed)
        merged.skipped.update(r.skipped)
        merged.calls += r.calls
        merged.computed_calls += r.computed_calls
    return merged
