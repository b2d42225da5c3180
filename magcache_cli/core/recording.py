"""Calibration: the strategy of hooks that run every step and record, per guidance branch and step, the magnitude-ratio
statistics of the stack's residual; and `branch_curves`, which turns the records of many runs into curves."""

from __future__ import annotations

import torch

from magcache_cli.core.branches import Assignment, assign_observed
from magcache_cli.core.calls import CallPlan, CallState, StepCalls
from magcache_cli.core.distributed import sequence_group, sharded_residual_stats
from magcache_cli.core.hooks import HookConfig, StackHooks
from magcache_cli.core.proxies import Tap, branch_rows
from magcache_cli.core.report import CallReport
from magcache_cli.core.rule import residual_stats
from magcache_cli.core.stacks import StackSpec, unwrap_compiled
from magcache_cli.errors import MagCacheError
from magcache_cli.types import GuidanceMode

# per pipeline call: label -> step -> (mean ratio, std of the per-token ratio, mean cosine distance)
Record = dict[str, dict[int, tuple[float, float, float]]]


class Recording:
    """The calibration strategy (`Strategy` in hooks.py): computes every step (outputs unchanged) and records
    residual statistics per branch, one `Record` per pipeline call in `records` (beside the hooks' reports).

    Batched guidance is labelled by batch half, `[uncond | cond]` (`cat([negative, positive])`). Some pipelines
    batch `[positive, negative]` (Z-Image, Lumina-Next): `cond_first` says so, read off the guidance itself
    (`guidance_order`), and the profile's branches are then named and ordered `[cond | uncond]`."""

    forecasting = False
    default_steps = None

    def __init__(self, expected_batch: int | None = None, prefix: str = "", denoiser=None):
        self.expected_batch = expected_batch  # images per call: a denoiser batch of twice that is batched guidance
        self.prefix = prefix  # of the record's labels (those of the hooks' reports)
        self.denoiser = denoiser  # whose sequence diffusers' context parallelism may split
        self.records: list[Record] = []
        self.last_mode = GuidanceMode.SEQUENTIAL  # of the last labelled call
        self._prev: dict[str, torch.Tensor] = {}
        self._halves: tuple[torch.Tensor, torch.Tensor] | None = None
        self._votes: list[bool] = []

    @property
    def cond_first(self) -> bool:
        """Batched guidance put the conditional half first (a majority of the steps that could tell)."""
        return 2 * sum(self._votes) > len(self._votes)

    def clear(self) -> None:
        self._prev = {}

    def opened(self, report: CallReport) -> None:
        self.records.append({})

    def plan(self, steps: int | None, begin: int) -> CallPlan:
        return CallPlan(steps, begin)  # every call computes

    def assign(self, pipe, context: str | None, batch: int, call_index: int) -> Assignment:
        # batched guidance doubles the batch the caller asked for; without that number, trust the pipeline's flag
        if self.expected_batch:
            batched = batch == 2 * self.expected_batch
        else:
            flagged = bool(getattr(pipe, "do_classifier_free_guidance", False)) and not context
            batched = batch % 2 == 0 and (flagged or context == "cond_uncond")
        a = assign_observed(context, batch, call_index, batched)
        self.last_mode = a.mode
        return a

    def decide(self, plan: CallPlan, call: CallState) -> bool:
        return True

    def prepare(self, call: CallState, tap: Tap) -> None:
        pass

    def residual(self, call: CallState, residual: torch.Tensor, spec: StackSpec) -> None:
        a, record = call.current, self.records[-1]
        # under context parallelism this rank holds a slice of the sequence: the statistics are those of all
        # tokens, from every rank's per-token moments (the same numbers on every rank)
        group = sequence_group(self.denoiser)
        for label, rows in zip(a.labels, a.rows):
            r = branch_rows(residual, rows, spec.batch_axis, call.batch)
            prev = self._prev.get(label)
            if prev is None or prev.shape != r.shape:
                stats = (1.0, 0.0, 0.0)
            elif group is not None:
                stats = sharded_residual_stats(prev, r, group)
            else:
                stats = residual_stats(prev, r)
            record.setdefault(self.prefix + label, {})[call.step] = stats
            self._prev[label] = r

    def output(self, call: CallState, output) -> None:
        batched = call.current is not None and call.current.mode == GuidanceMode.BATCHED
        self._halves = _output_halves(output) if batched else None

    def stepping(self, args: tuple, kwargs: dict) -> None:
        halves, self._halves = self._halves, None
        pred = args[0] if args else kwargs.get("model_output")
        if halves is not None and torch.is_tensor(pred):
            vote = guidance_order(halves[0], halves[1], pred)
            if vote is not None:
                self._votes.append(vote == "cond_first")

    def held_bytes(self) -> dict[str, int]:
        return {}

    def skip_warnings(self, who: str) -> list[str]:
        return []


def RecordingHooks(pipe, denoiser_name: str = "transformer", expected_batch: int | None = None, prefix: str = "",
                   calls: StepCalls | None = None, gated: bool = False) -> StackHooks:
    """Calibration hooks on `pipe`'s `denoiser_name`: `StackHooks` with a `Recording` strategy."""
    strategy = Recording(expected_batch, prefix, unwrap_compiled(getattr(pipe, denoiser_name)))
    return StackHooks(pipe, strategy, HookConfig(denoiser_name, prefix, gated), calls)


def _output_halves(output) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The two batch halves of a denoiser's prediction (a tensor, a per-sample list, or either in a tuple /
    output dataclass), or None."""
    if isinstance(output, tuple) and output:  # return_dict=False: (sample, ...)
        output = output[0]
    if not torch.is_tensor(output) and not isinstance(output, list):
        output = getattr(output, "sample", None)
    if isinstance(output, list) and len(output) % 2 == 0 and all(torch.is_tensor(o) for o in output):
        half = len(output) // 2
        return torch.cat([o.flatten() for o in output[:half]]), torch.cat([o.flatten() for o in output[half:]])
    if torch.is_tensor(output) and output.dim() >= 2 and output.shape[0] % 2 == 0:
        first, second = output.chunk(2, dim=0)
        return first, second
    return None


def guidance_order(first: torch.Tensor, second: torch.Tensor, pred: torch.Tensor) -> str | None:
    """Which batch half is the conditional pass, from the guided prediction the scheduler steps with.

    Guidance extrapolates from the unconditional prediction u past the conditional one c:
    u + s (c - u) with s > 1. Along the line from `first` to `second`, `pred` then sits beyond `second` when
    `second` is c (`"uncond_first"`), and before `first` when `first` is c (`"cond_first"`). Pipelines negate
    the prediction (both signs are tried, the nearer to the line wins) or keep its first half of channels
    (learned variance). None when the shapes do not fit or the position says nothing (inside the segment)."""
    f, s, p = (t.detach().double().flatten() for t in (first, second, pred))
    if p.numel() * 2 == f.numel() and first.dim() >= 2:  # learned variance: guidance on the first channels
        c = first.shape[1] // 2
        f, s = (t.detach().double()[:, :c].flatten() for t in (first, second))
    if p.numel() != f.numel() or p.numel() == 0:
        return None
    d = s - f
    dd = float(d @ d)
    if dd == 0.0:
        return None
    best = None
    for q in (p, -p):
        t = float((q - f) @ d) / dd
        off = float((q - f - t * d).norm())
        if best is None or off < best[1]:
            best = (t, off)
    t = best[0]
    return "cond_first" if t < 0 else "uncond_first" if t > 1 else None


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
