"""The runners over several processes: each rank's share of the prompt × seed runs, results merged into what
one process would have produced, and diffusers' context parallelism applied to the denoisers.

`calibrate` and `run` take an `Exchange` (core/distributed.py); with one process they behave exactly as
before and nothing here is used beyond a plain loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from magcache_cli.core.distributed import Exchange, RankInfo
from magcache_cli.core.recording import Record, RecordingHooks
from magcache_cli.core.report import CallReport
from magcache_cli.errors import DistributedError

T = TypeVar("T")


class CalibrationRuns:
    """This rank's calibration runs, and the merge of every rank's records into single-process order.

    Recording hooks keep one record and one report per pipeline call. After each run the new entries that
    saw denoiser calls are set aside with the run's global index (entries without calls carry no data: the
    hooks drop them themselves at the next call). `merge` gathers all ranks' entries and puts them back into
    every hook in global run order, so `branch_curves` averages exactly the same numbers in the same order as
    one process would: the profile is the single-process profile, not a mean of per-rank means.
    """

    def __init__(self, exchange: Exchange, hooks: Sequence[RecordingHooks]):
        self.exchange = exchange
        self.hooks = list(hooks)
        self._sharded = exchange.split.distributed
        self._kept: list[list[tuple[int, Record, CallReport]]] = [[] for _ in self.hooks]
        self._done = [0 for _ in self.hooks]

    def runs(self, pairs: Sequence[T]) -> Iterator[tuple[int, T]]:
        for i, pair in self.exchange.sharded(pairs):
            yield i, pair
            if self._sharded:
                self._keep(i)

    def _keep(self, index: int) -> None:
        for k, h in enumerate(self.hooks):
            start = self._done[k]
            for rec, rep in zip(h.records[start:], h.reports[start:]):
                if rep.calls:
                    self._kept[k].append((index, rec, rep))
            # a trailing entry without calls is dropped by the hooks at the next call: look at its slot again
            self._done[k] = len(h.reports) - (1 if h.reports and not h.reports[-1].calls else 0)

    def merge(self, wall_s: float) -> float:
        """Every rank's runs into every hook (global order); returns the job's pipeline time (slowest rank)."""
        if not self._sharded:
            return wall_s
        found = [(h.spec, h.last_mode) if any(r.calls for r in h.reports) else None for h in self.hooks]
        parts = self.exchange.gather((self._kept, wall_s, found))
        for k, h in enumerate(self.hooks):
            entries = sorted((e for kept, _, _ in parts for e in kept[k]), key=lambda e: e[0])  # stable per run
            h.records[:] = [rec for _, rec, _ in entries]
            h.reports[:] = [rep for _, _, rep in entries]
            seen = next((f[k] for _, _, f in parts if f[k] is not None), None)
            if seen is not None and h.spec is None:  # a rank without runs learns the stack from one with
                h.spec, h.last_mode = seen
        return max(w for _, w, _ in parts)


def merge_run(exchange: Exchange, result: Any, paths: list[tuple[int, str]]) -> tuple[Any, list[str]]:
    """The whole job's view of a sharded `run` (for rank 0 to report): pass counts summed, the slowest rank's
    time, every rank's prompt × seed pairs and output paths in global order, warnings of all ranks (`outputs`
    stay this rank's). The skip schedule is checked to be the same on
    every rank that ran something: it depends on the profile and the step only. `paths` are this rank's
    written files with their global prompt × seed index."""
    if not exchange.info.distributed:
        return result, [path for _, path in paths]
    mine = {"schedule": result.schedule if result.prompts_seeds else None, "paths": paths,
            "transformer_calls": result.transformer_calls, "total_calls": result.total_calls,
            "wall_s": result.wall_s, "warnings": result.warnings, "stack": result.stack,
            "pairs": list(zip(result.indices, result.prompts_seeds))}
    parts = exchange.gather(mine)
    schedules = [p["schedule"] for p in parts if p["schedule"] is not None]
    if any(s != schedules[0] for s in schedules):
        raise DistributedError("ranks took different skip decisions for the same profile and steps",
                               hint="report this as a bug, with the profile and the command")
    if not exchange.split.distributed:  # context parallelism: every rank ran every sample, rank 0 wrote them
        return result, [path for _, path in paths]
    merged = dict(result.__dict__)
    merged.update(schedule=schedules[0] if schedules else {},
                  transformer_calls=sum(p["transformer_calls"] for p in parts),
                  total_calls=sum(p["total_calls"] for p in parts),
                  wall_s=max(p["wall_s"] for p in parts),
                  warnings=list(dict.fromkeys(w for p in parts for w in p["warnings"])),
                  stack=result.stack or next((p["stack"] for p in parts if p["stack"] is not None), None))
    pairs = sorted((e for p in parts for e in p["pairs"]), key=lambda e: e[0])
    merged.update(prompts_seeds=[pair for _, pair in pairs], indices=[i for i, _ in pairs])
    all_paths = sorted(((i, path) for p in parts for i, path in p["paths"]), key=lambda e: e[0])
    return type(result)(**merged), [path for _, path in all_paths]


# ------------------------------------------------------------------------------------ context parallelism


@dataclass(frozen=True)
class ContextParallel:
    """Degrees of diffusers' context parallelism: ring and Ulysses (their product is the ranks used)."""

    ring: int = 1
    ulysses: int = 1

    @property
    def degree(self) -> int:
        return self.ring * self.ulysses

    @classmethod
    def parse(cls, text: str) -> "ContextParallel":
        """`ulysses=2`, `ring=4` or both, comma-separated (`ring=2,ulysses=2`)."""
        degrees = {"ring": 1, "ulysses": 1}
        for part in (p.strip() for p in text.split(",")):
            name, sep, value = part.partition("=")
            if not sep or name.strip() not in degrees or not value.strip().isdigit() or int(value) < 1:
                raise ValueError(f"context_parallel {text!r}: expected ring=N and/or ulysses=N with N >= 1")
            degrees[name.strip()] = int(value)
        if degrees["ring"] * degrees["ulysses"] < 2:
            raise ValueError(f"context_parallel {text!r}: a degree of at least 2 is needed to split anything")
        return cls(**degrees)


def check_context_parallel(cp: ContextParallel, info: RankInfo, accelerator: bool) -> None:
    """Refuse what diffusers cannot run, before loading: no accelerator, or degrees that are not the ranks."""
    if not accelerator:
        raise DistributedError(
            "context parallelism needs GPUs: diffusers' enable_parallelism divides by the accelerator count, "
            "which is 0 on CPU", hint="run on GPUs, or split prompts and seeds across CPU processes instead")
    if cp.degree != info.world_size:
        raise DistributedError(f"context parallelism over {cp.degree} ranks (ring {cp.ring} × ulysses "
                               f"{cp.ulysses}) needs exactly {cp.degree} processes, got {info.world_size}",
                               hint=f"launch with torchrun --nproc-per-node {cp.degree}")


def enable_context_parallel(pipe: Any, cp: ContextParallel, denoisers: Sequence[tuple[str, Any]]) -> None:
    """Apply diffusers' `ContextParallelConfig` to every denoiser (`enable_parallelism`): each rank then
    holds a slice of the sequence between the model's split and gather points, which is where the block
    stack, and so the residual MagCache measures and caches, lives."""
    from diffusers import ContextParallelConfig

    for _, module in denoisers:
        if getattr(module, "_cp_plan", None) is None:
            raise DistributedError(f"{type(module).__name__} has no context-parallel plan in diffusers",
                                   hint="run it without context parallelism (prompts and seeds still split)")
        module.enable_parallelism(config=ContextParallelConfig(ring_degree=cp.ring, ulysses_degree=cp.ulysses))
