"""Ranks and exact reductions over torch.distributed: who am I, which share is mine, and how results merge.

Nothing here loads models or writes files. Three kinds of helpers:

* `rank_info` / `init_process_group`: the rank, world size and local rank come from the environment that
  `torchrun` and `accelerate launch` set (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`); the process group is
  initialised here, never by the launcher (accelerate on CPU may report a single process of its own).
* `Exchange`: every control-plane collective of a sharded command (progress, results, failures) is one
  `all_gather_object` of an envelope, so a rank that fails joins whatever exchange the others are in with an
  error envelope, and every rank learns of it in the same collective: no rank waits forever, and no rank goes
  on to write anything. The exchange group is gloo, whose collectives honour the timeout.
* Token moments (`token_moments`, `combine_moments`, `sharded_residual_stats`): the magnitude-ratio statistics
  of a residual whose sequence is split across ranks (context parallelism), merged exactly with Chan's
  parallel formula so the result is that of all tokens, not one shard's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from magcache_cli.errors import DistributedError

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0  # one exchange waits at most this long for the slowest rank's current run


@dataclass(frozen=True)
class RankInfo:
    """This process's place in the job: global rank, number of ranks, rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_info(environ: Mapping[str, str] | None = None) -> RankInfo:
    """The rank from `RANK` / `WORLD_SIZE` / `LOCAL_RANK` (set by torchrun and accelerate); 0 / 1 / 0 if unset."""
    env = os.environ if environ is None else environ

    def read(name: str, default: int) -> int:
        text = env.get(name, "")
        try:
            return int(text) if text.strip() else default
        except ValueError:
            raise DistributedError(f"{name}={text!r} is not an integer") from None

    info = RankInfo(read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", read("RANK", 0)))
    if info.world_size < 1 or not 0 <= info.rank < info.world_size or info.local_rank < 0:
        raise DistributedError(f"inconsistent rank environment: RANK={info.rank}, WORLD_SIZE={info.world_size}, "
                               f"LOCAL_RANK={info.local_rank}")
    return info


def timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a collective may wait: `MAGCACHE_DIST_TIMEOUT` or 30 minutes (longer than one run)."""
    text = (os.environ if environ is None else environ).get("MAGCACHE_DIST_TIMEOUT", "")
    try:
        value = float(text) if text.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        raise DistributedError(f"MAGCACHE_DIST_TIMEOUT={text!r} is not a number of seconds") from None
    if not value > 0:
        raise DistributedError(f"MAGCACHE_DIST_TIMEOUT must be > 0, got {text}")
    return value


def init_process_group(info: RankInfo, accelerator: bool, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Initialise the default process group for `info` (no-op for one rank or when already initialised).

    GPU ranks use NCCL on `cuda:LOCAL_RANK` (made the current device); CPU ranks use gloo. The rendezvous
    address comes from `MASTER_ADDR` / `MASTER_PORT`, which both launchers set.
    """
    if not info.distributed or dist.is_initialized():
        return
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise DistributedError(f"WORLD_SIZE={info.world_size} but {name} is not set",
                                   hint="start the command with torchrun or accelerate launch")
    if accelerator:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("nccl" if accelerator else "gloo", rank=info.rank, world_size=info.world_size,
                            timeout=timedelta(seconds=timeout))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def my_share(items: Sequence[T], info: RankInfo) -> list[tuple[int, T]]:
    """This rank's items with their global index: every `world_size`-th one from `rank` (round robin, so
    ranks differ by at most one item and rank 0 always has the first)."""
    return [(i, item) for i, item in enumerate(items) if i % info.world_size == info.rank]


def slots(n: int, info: RankInfo) -> int:
    """How many items the busiest rank gets: every rank makes this many exchanges in a sharded loop."""
    return -(-n // info.world_size) if n else 0


class Exchange:
    """All-gathers of small Python objects between every rank, each carrying an `ok` or `error` envelope.

    `gather(payload)` returns every rank's payload (by rank) or raises `DistributedError` naming the first
    rank that reported a failure. `fail(message)` is what a failing rank sends instead, once; it then makes no
    further collective call (the CLI's error boundary sends it: `cli/common.py: stop_ranks`). With one rank nothing is exchanged.

    `split` is how work items are shared (`sharded`): the whole job by default; a single share (every rank
    does every item) under context parallelism, where the ranks compute one output together. Progress: each
    rank counts the units it finished with `tick`; at every exchange the units the other data-parallel ranks
    finished are passed to `on_remote` (rank 0's progress bar), so the bar shows the whole job.
    """

    def __init__(self, info: RankInfo, split: RankInfo | None = None, group: Any = None):
        self.info = info
        self.split = split or info
        self.on_remote: Callable[[int], None] | None = None
        self.context_parallel: Any = None  # the runner's ContextParallel degrees, when the sequence is split
        self._units = 0
        self._group = group
        self._failed = False
        self._lost = False  # a collective failed: the other ranks cannot be waited for
        if info.distributed and group is None and dist.get_backend() != "gloo":
            self._group = dist.new_group(backend="gloo")  # objects travel on CPU, with timeouts, even under NCCL

    def close(self, wait_s: float = 60.0) -> None:
        """End the job on this rank: wait (at most `wait_s`) until every rank gets here, so rank 0 has printed
        the job's one error line before the launcher sees another rank exit, then leave the process group."""
        if not self.info.distributed or not dist.is_initialized():
            return
        if not self._lost:
            try:
                dist.monitored_barrier(self._group, timeout=timedelta(seconds=wait_s))
            except Exception:  # a rank is gone: nothing left to wait for
                pass
        shutdown()

    def tick(self, units: int = 1) -> None:
        self._units += units

    def _all_gather(self, envelope: tuple) -> list[tuple]:
        if not self.info.distributed:
            return [envelope]
        out: list[Any] = [None] * self.info.world_size
        try:
            dist.all_gather_object(out, envelope, group=self._group)
        except Exception as e:  # a rank died or the timeout passed: the job cannot go on
            self._failed = self._lost = True
            first = str(e).splitlines()[0] if str(e) else "no message"
            raise DistributedError(f"lost contact with the other ranks ({type(e).__name__}: {first})",
                                   hint="see the launcher's report for the rank that stopped") from None
        return out

    def gather(self, payload: Any) -> list[Any]:
        if self._failed:
            raise DistributedError("an earlier exchange between the ranks failed")
        units, self._units = self._units, 0
        envelopes = self._all_gather(("ok", payload, units))
        errors = [(r, env[1]) for r, env in enumerate(envelopes) if env[0] == "error"]
        if errors:
            self._failed = True
            rank, message = errors[0]
            raise DistributedError(f"rank {rank} failed: {message}", rank=rank, remote=True)
        if self.on_remote is not None and self.split.distributed:
            others = sum(env[2] for r, env in enumerate(envelopes) if r != self.info.rank)
            if others:
                self.on_remote(others)
        return [env[1] for env in envelopes]

    def finish(self) -> None:
        """The job's last exchange: every rank has done its part (rank 0 has written what it writes). A
        failure after this (rank 0 rendering, say) concerns this rank alone and is not sent."""
        self.gather(None)
        self._failed = True

    def fail(self, message: str) -> None:
        """Tell the other ranks this one failed (never raises; a no-op after any failed exchange or after
        `finish`)."""
        if self._failed:
            return
        self._failed = True
        try:
            self._all_gather(("error", message, 0))
        except DistributedError:
            pass

    def sharded(self, items: Sequence[T]) -> Iterator[tuple[int, T]]:
        """This rank's share of `items` with their global indices, one exchange before each slot and one at
        the end, so every rank makes the same number of exchanges whatever its share, and a failure elsewhere
        stops this loop before the next item. With one rank: `enumerate(items)`, no exchange."""
        if not self.info.distributed:
            yield from enumerate(items)
            return
        mine = my_share(items, self.split)
        for k in range(slots(len(items), self.split)):
            self.gather(None)
            if k < len(mine):
                yield mine[k]
        self.gather(None)

    def union(self, mine: Mapping[Any, T]) -> dict[Any, T]:
        """Every rank's entries of a mapping keyed by work item, merged (one rank: a copy)."""
        merged: dict[Any, T] = {}
        for part in self.gather(dict(mine)):
            merged.update(part)
        return merged


def local_exchange() -> Exchange:
    """The exchange of a one-process job: nothing is exchanged."""
    return Exchange(RankInfo())


# --------------------------------------------------------------------------------------- token moments


def token_moments(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Per-token statistics of two residuals shaped `[B, ..., D]` (tokens: the middle dims flattened), as
    float64 `[count, mean ratio, sum of squared deviations of the ratio, sum of (1 - cos)]`.

    ratio = ||cur|| / ||prev|| per token over D, computed in float32 like `core.rule.residual_stats`.
    """
    if prev.shape != cur.shape:
        raise ValueError(f"residual shapes differ: {tuple(prev.shape)} vs {tuple(cur.shape)}")
    if prev.ndim < 2:
        raise ValueError(f"residuals must be shaped [B, ..., D], got shape {tuple(prev.shape)}")
    b, d = prev.shape[0], prev.shape[-1]
    p = prev.detach().reshape(b, -1, d).float()
    c = cur.detach().reshape(b, -1, d).float()
    ratio = (torch.linalg.vector_norm(c, dim=-1) / torch.linalg.vector_norm(p, dim=-1)).double().flatten()
    cos = torch.nn.functional.cosine_similarity(c, p, dim=-1).double().flatten()
    n = ratio.numel()
    if n == 0:
        return torch.zeros(4, dtype=torch.float64, device=prev.device)
    mean = ratio.mean()
    return torch.stack([torch.tensor(float(n), dtype=torch.float64, device=prev.device), mean,
                        ((ratio - mean) ** 2).sum(), (1.0 - cos).sum()])


def combine_moments(parts: torch.Tensor) -> tuple[float, float, float]:
    """Merge `token_moments` rows of disjoint token sets exactly (Chan et al.'s pairwise update, in row
    order): returns (mean ratio, population std of the ratio, mean(1 - cos)) over all their tokens."""
    rows = [row for row in parts.detach().double().cpu().reshape(-1, 4).tolist() if row[0] > 0]
    if not rows:
        raise ValueError("no tokens selected")
    n, mean, m2, cos = rows[0]
    for nb, mb, m2b, cosb in rows[1:]:
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        cos += cosb
        n = total
    return mean, (m2 / n) ** 0.5, cos / n


def sharded_residual_stats(prev: torch.Tensor, cur: torch.Tensor, group: Any = None) -> tuple[float, float, float]:
    """`core.rule.residual_stats` of residuals whose tokens are split across the ranks of `group` (each rank
    passes its own shard): the moments of every shard are all-gathered and merged in rank order, so every
    rank gets the same numbers, those of all tokens. With `group=None` only the local tokens count."""
    local = token_moments(prev, cur)
    if group is None:
        return combine_moments(local)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    return combine_moments(torch.stack(parts))


def sequence_group(module: Any) -> Any:
    """The process group a denoiser's sequence is split over by diffusers' context parallelism
    (`enable_parallelism`), or None when it is not split."""
    config = getattr(module, "_parallel_config", None)
    cp = getattr(config, "context_parallel_config", None)
    mesh = getattr(cp, "_flattened_mesh", None)
    if mesh is None or mesh.size() < 2:
        return None
    return mesh.get_group()
