"""The modules that stand in the stack's block lists for one call, and the one object they share with the hooks.

* on a computed call, the first block of the stack is wrapped by a `Probe` that keeps a reference to the
  stack's input, and the last by one that subtracts it from the stack's output: one subtraction per call,
  nothing per block;
* on a skipped call, the block lists of the stack are replaced by a single `Replay` that returns the stack's
  input plus the branch's cached residual, in the last block's output structure; with a forecast (`forecast.py`),
  plus `weight · delta` as well, where the weight is a 0-dim tensor so that it changes without recompiling.

Under a whole-model `torch.compile` the forward pass (with these proxies in it) is one graph per layout: the
proxies exchange tensors with the hooks through one `Tap` and hold only constants.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

from magcache_cli.core.stacks import Observation, StackSpec, bind_inputs


class Layout(Enum):
    """Which block lists the stack holds during a denoiser call (`build_layouts`)."""

    ORIGINAL = "original"  # the model's own lists: between calls, and on the discovery call
    COMPUTE = "compute"  # the blocks, first and last wrapped by probes that take the residual
    SKIP = "skip"  # one replay module: stack input + cached residual


class Tap:
    """The only state the stack's proxies touch: the stack input, the residual out, the residual to replay.

    The hooks fill and empty it outside the forward pass; the proxies hold nothing else but constants, so a
    whole-model `torch.compile` traces them without guarding on per-step state (step, branch, caches).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.entry: torch.Tensor | None = None
        self.out: torch.Tensor | None = None  # residual of a computed call, read by the forward hook
        self.residual: torch.Tensor | None = None  # cached residual for a skipped call, set by the pre-hook
        self.delta: torch.Tensor | None = None  # forecast only: r_c − r_p of the branch
        self.weight: torch.Tensor | None = None  # forecast only: A·(t − c)/(c − p) as a 0-dim tensor


def _image_slice(total: int, n: int, image_start: int, image_tail: int) -> slice:
    if image_start == 0:
        return slice(0, n)
    end = total - image_tail
    return slice(end - n, end)


def residual_of(main: torch.Tensor, entry: torch.Tensor, image: tuple[int, int], tokens: int = 1) -> torch.Tensor:
    """Stack output minus stack input, over the image tokens when the output is a joint sequence (tokens along
    axis `tokens`: 1 for batch-first streams, 0 for sequence-first ones)."""
    if main.shape[tokens] != entry.shape[tokens]:
        part = _image_slice(main.shape[tokens], entry.shape[tokens], *image)
        main = main.narrow(tokens, part.start, part.stop - part.start)
    return main - entry


def branch_rows(residual: torch.Tensor, rows: slice | None, axis: int, batch: int) -> torch.Tensor:
    """The rows of one branch along the stream's batch axis, `rows` counted in the denoiser's batch: a stack
    that flattens more into that axis (B*N spatial or B*F per-frame rows, batch-major) keeps each sample's
    rows together."""
    if rows is None:
        return residual
    per = residual.shape[axis] // max(1, batch)
    return residual.narrow(axis, rows.start * per, (rows.stop - rows.start) * per)


class Probe(nn.Module):
    """Wraps the first and/or last block of the stack on computed calls."""

    def __init__(self, block: nn.Module, tap: Tap, spec: StackSpec, entry: bool, exit: bool):
        super().__init__()
        self.block = block
        self._tap, self._entry, self._exit = tap, entry, exit
        self._names, self._main_input = spec.param_names_first, spec.segments[0].main_input
        self._out_index = None if spec.out_single else spec.segments[-1].main_output
        self._image = (spec.image_start, spec.image_tail)
        self._tokens = spec.token_axis

    def forward(self, *args, **kwargs):
        tap = self._tap
        if self._entry:
            tap.entry = bind_inputs(self._names, args, kwargs)[self._main_input]
        out = self.block(*args, **kwargs)
        if self._exit:
            main = out if self._out_index is None else out[self._out_index]
            tap.out, tap.entry = residual_of(main, tap.entry, self._image, self._tokens), None
        return out


class Replay(nn.Module):
    """Stands in for the whole stack on a skipped call: stack input + cached residual (+ weight · delta when
    built with `forecast`: the layouts of a forecasting cache always add it, a weight of 0 meaning reuse)."""

    def __init__(self, tap: Tap, spec: StackSpec, forecast: bool = False):
        super().__init__()
        self._tap, self._forecast = tap, forecast
        self._names, self._main_input = spec.param_names_last, spec.segments[-1].main_input
        self._out_single, self._out_spec = spec.out_single, tuple(spec.out_spec)
        self._image = (spec.image_start, spec.image_tail)
        self._tokens = spec.token_axis

    def forward(self, *args, **kwargs):
        bound = bind_inputs(self._names, args, kwargs)
        x = bound[self._main_input]
        r = self._tap.residual
        if self._forecast:
            r = r + self._tap.weight * self._tap.delta
        if x.shape == r.shape:
            main = x + r
        else:
            main = x.clone()
            part = _image_slice(x.shape[self._tokens], r.shape[self._tokens], *self._image)
            main.narrow(self._tokens, part.start, part.stop - part.start).add_(r)
        if self._out_single:
            return main
        return tuple(main if k == "@main" else None if k is None else bound.get(k) for k in self._out_spec)


def build_layouts(denoiser: nn.Module, spec: StackSpec, tap: Tap, forecast: bool) -> dict[Layout, dict[str, nn.Module]]:
    """Per layout, the module each block list path of the stack holds: the originals; the originals with the
    first and last block wrapped by probes; empty lists with one replay in the last."""
    originals = {s.path: denoiser.get_submodule(s.path) for s in spec.segments}
    compute = {}
    for i, s in enumerate(spec.segments):
        blocks = list(originals[s.path])
        first, last = i == 0, i == len(spec.segments) - 1
        if first and last and len(blocks) == 1:
            blocks[0] = Probe(blocks[0], tap, spec, True, True)
        else:
            if first:
                blocks[0] = Probe(blocks[0], tap, spec, True, False)
            if last:
                blocks[-1] = Probe(blocks[-1], tap, spec, False, True)
        compute[s.path] = nn.ModuleList(blocks)
    skip = {s.path: nn.ModuleList() for s in spec.segments[:-1]}
    skip[spec.segments[-1].path] = nn.ModuleList([Replay(tap, spec, forecast)])
    return {Layout.ORIGINAL: originals, Layout.COMPUTE: compute, Layout.SKIP: skip}


def observed_residual(obs: Observation, spec: StackSpec) -> torch.Tensor:
    """The stack's residual on the observed (discovery) call, as a probe would have taken it."""
    first, last = spec.segments[0], spec.segments[-1]
    head = next(c for c in obs.calls if c.path == first.path)
    tail = [c for c in obs.calls if c.path == last.path][-1]
    main = tail.outputs[0 if last.main_output is None else last.main_output]
    return residual_of(main, head.inputs[first.main_input], (spec.image_start, spec.image_tail), spec.token_axis)
