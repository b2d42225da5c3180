"""Say which classifier-free-guidance branch a denoiser call (or a batch slice of it) belongs to.

Three ways a pipeline runs guidance, and how each call is labelled:

* ``sequential``: one call per branch and step. The label is the pipeline's ``cache_context`` name where it
  sets one (``cond`` / ``uncond``), otherwise the call's position within the denoising step (diffusers'
  pipelines call the conditional pass first). The scheduler's ``step()`` marks step boundaries.
* ``batched``: one call whose batch stacks the branches, ``cat([negative, positive])``: the first half is
  ``uncond``, the second ``cond``.
* ``none``: one call per step, label ``main``.

diffusers' guider objects (``pipe.guider``: CFG, APG, PAG, skip-layer guidance, ...) name each pass
``pred_<branch>`` in ``cache_context``; `context_label` maps those names onto the same contract:
``pred_cond`` -> ``cond``, ``pred_uncond`` -> ``uncond``, and a guider's further passes keep stable labels of
their own (``pred_cond_skip`` -> ``cond_skip``, ``pred_cond_seg`` -> ``cond_seg``), each with its own curve
and state.

A call is never split into branches other than by whole batch rows, so no state ever mixes two branches.
"""

from __future__ import annotations

from dataclasses import dataclass

from magcache_cli.errors import BranchError
from magcache_cli.types import GuidanceMode

BATCHED_ORDER = ("uncond", "cond")
GUIDER_PREFIX = "pred_"


def context_label(name: str | None) -> str | None:
    """The branch label for a `cache_context` name: a guider's ``pred_<branch>`` is ``<branch>``."""
    if name and name.startswith(GUIDER_PREFIX) and len(name) > len(GUIDER_PREFIX):
        return name[len(GUIDER_PREFIX):]
    return name


@dataclass(frozen=True)
class Assignment:
    """The branches one denoiser call serves: labels, and the batch rows of each (None: the whole batch)."""

    labels: tuple[str, ...]
    rows: tuple[slice | None, ...]
    mode: GuidanceMode

    @property
    def key(self) -> str:
        return "+".join(self.labels)


def _halves(batch: int, labels: tuple[str, ...]) -> tuple[slice, ...]:
    n = len(labels)
    if batch % n:
        raise BranchError(
            f"a batched-guidance call has batch {batch}, not divisible into {n} branches {list(labels)}",
            hint="run with one prompt per call, or recalibrate with the guidance setup you use",
        )
    part = batch // n
    return tuple(slice(i * part, (i + 1) * part) for i in range(n))


def assign_observed(context: str | None, batch: int, call_index: int, batched: bool) -> Assignment:
    """Calibration: label a call from what the pipeline shows (names, batch layout, call order)."""
    if batched:  # checked first: some pipelines name their batched call too (CogVideoX: "cond_uncond")
        return Assignment(BATCHED_ORDER, _halves(batch, BATCHED_ORDER), GuidanceMode.BATCHED)
    if context:
        return Assignment((context,), (None,), GuidanceMode.SEQUENTIAL)
    return Assignment((f"call{call_index}",), (None,), GuidanceMode.SEQUENTIAL)


def assign_profiled(
    context: str | None, batch: int, call_index: int, mode: GuidanceMode, labels: tuple[str, ...]
) -> Assignment:
    """Run: label a call with the branches of the profile, or say why the call does not fit it."""
    mode = GuidanceMode(mode)
    if mode == GuidanceMode.NONE:
        if call_index > 0:
            raise BranchError(
                f"the pipeline made {call_index + 1} denoiser calls in one step, but the profile has one branch",
                hint="the profile was calibrated without guidance: recalibrate with the guidance settings you run",
            )
        return Assignment(labels, (None,), mode)
    if mode == GuidanceMode.BATCHED:
        return Assignment(labels, _halves(batch, labels), mode)
    if context and context in labels:
        return Assignment((context,), (None,), mode)
    if call_index < len(labels):
        return Assignment((labels[call_index],), (None,), mode)
    raise BranchError(
        f"call {call_index + 1} of a step has no branch in the profile (branches: {', '.join(labels)})",
        hint="recalibrate with the guidance settings you run",
    )


def finalize_labels(seen: list[str], mode: GuidanceMode) -> tuple[dict[str, str], GuidanceMode]:
    """Rename provisional labels after calibration; returns (old -> new, guidance mode).

    One branch only means the pipeline ran without guidance (``main``); two unnamed calls per step are the
    conditional then the unconditional pass.
    """
    if mode == GuidanceMode.BATCHED:
        return {s: s for s in seen}, GuidanceMode.BATCHED
    if len(seen) == 1:
        return {seen[0]: "main"}, GuidanceMode.NONE
    if all(s.startswith("call") for s in seen) and len(seen) == 2:
        return {"call0": "cond", "call1": "uncond"}, GuidanceMode.SEQUENTIAL
    return {s: s for s in seen}, GuidanceMode.SEQUENTIAL


def denoiser_prefix(index: int, name: str) -> str:
    """The label prefix of a pipeline's `index`-th denoiser: none for the first (`cond`), its attribute name for
    the others (`transformer_2.cond`), so one profile holds every expert's branches."""
    return "" if index == 0 else f"{name}."


def split_label(label: str) -> tuple[str, str]:
    """`"transformer_2.cond"` -> `("transformer_2", "cond")`; a first-denoiser label `"cond"` -> `("", "cond")`."""
    owner, _, local = label.rpartition(".")
    return owner, local
