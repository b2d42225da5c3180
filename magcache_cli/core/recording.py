"""Calibration: hooks that run every step and record, per guidance branch and step, the magnitude-ratio
statistics of the stack's residual; and `branch_curves`, which turns the records of many runs into curves."""

from __future__ import annotations

import torch

from magcache_cli.core.branches import Assignment, assign_observed
from magcache_cli.core.distributed import sequence_group, sharded_residual_stats
from magcache_cli.core.hooks import StackHooks, StepCalls
from magcache_cli.core.proxies import branch_rows
from magcache_cli.core.report import CallReport
from magcache_cli.core.rule import residual_stats
from magcache_cli.errors import MagCacheError

# per pipeline call: label -> step -> (mean ratio, std of the per-token ratio, mean cosine distance)
Record = dict[str, dict[int, tuple[float, float, float]]]


class RecordingHooks(StackHooks):
    """Computes every step (outputs unchanged) and records residual statistics per branch in `records`."""

    def __init__(self, pipe, denoiser_name: str = "transformer", expected_batch: int | None = None,
                 prefix: str = "", calls: StepCalls | None = None, gated: bool = False):
        self.records: list[Record] = []
        self._prev: dict[str, torch.Tensor] = {}
        self._expected_batch = expected_batch
        super().__init__(pipe, denoiser_name, prefix, calls, gated)

    def _reset_branches(self) -> None:
        self._prev = {}

    def _start_call(self) -> None:
        self.records.append({})

    def _drop_call(self) -> None:
        self.records.pop()

    def _assign(self, batch: int) -> Assignment:
        # batched guidance doubles the batch the caller asked for; without that number, trust the pipeline's flag
        if self._expected_batch:
            batched = batch == 2 * self._expected_batch
        else:
            flagged = bool(getattr(self.pipe, "do_classifier_free_guidance", False)) and not self._context
            batched = batch % 2 == 0 and (flagged or self._context == "cond_uncond")
        return assign_observed(self._context, batch, self.state.call_in_step, batched)

    def _on_residual(self, residual: torch.Tensor) -> None:
        a = self.state.current
        record = self.records[-1]
        # under context parallelism this rank holds a slice of the sequence: the statistics are those of all
        # tokens, from every rank's per-token moments (the same numbers on every rank)
        group = sequence_group(self.denoiser)
        for label, rows in zip(a.labels, a.rows):
            r = branch_rows(residual, rows, self.spec.batch_axis, self._batch)
            prev = self._prev.get(label)
            if prev is None or prev.shape != r.shape:
                stats = (1.0, 0.0, 0.0)
            elif group is not None:
                stats = sharded_residual_stats(prev, r, group)
            else:
                stats = residual_stats(prev, r)
            record.setdefault(self.prefix + label, {})[self.state.step] = stats
            self._prev[label] = r


def branch_curves(records: list[Record], reports: list[CallReport]) -> dict[str, dict]:
    """Calibration result per branch (provisional labels): ratios, ratio_std, cos_dist, run_std, and
    `active` = [start, stop) when the denoiser ran on part of the steps only (two-expert pipelines).

    Per step: `ratios` is the mean over runs (1.0 at the first step of the window), `run_std` the population
    std over runs, `ratio_std` and `cos_dist` means over runs."""
    measured = [step for rec in records for r in rec.values() for step in r]
    steps = max([r.steps for r in reports if r.calls] + [max(measured, default=-1) + 1])
    labels = list(dict.fromkeys(label for rec in records for label in rec))
    out: dict[str, dict] = {}
    for label in labels:
        runs = [rec[label] for rec in records if label in rec]
        seen = sorted({step for run in runs for step in run})
        start, stop = seen[0], seen[-1] + 1
        cols: dict = {"ratios": [], "ratio_std": [], "cos_dist": [], "run_std": []}
        for step in range(steps):
            vals = [run[step] for run in runs if step in run]
            if not vals and start <= step < stop:
                raise MagCacheError(f"branch {label} has no measurement at step {step}",
                                    hint="the pipeline skipped this branch on some steps; calibrate with a fixed guidance setup")
            vals = vals or [(1.0, 0.0, 0.0)]  # outside the denoiser's window: placeholders
            r = torch.tensor([v[0] for v in vals], dtype=torch.float64)
            cols["ratios"].append(1.0 if step == start else float(r.mean()))
            cols["run_std"].append(float(r.std(unbiased=False)) if len(vals) > 1 else 0.0)
            cols["ratio_std"].append(sum(v[1] for v in vals) / len(vals))
            cols["cos_dist"].append(sum(v[2] for v in vals) / len(vals))
        if (start, stop) != (0, steps):
            cols["active"] = [start, stop]
        out[label] = cols
    return out
