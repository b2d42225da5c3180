"""Find the block stack whose residual MagCache caches, by observing one forward pass.

No table of attribute names: every top-level `nn.ModuleList` of the denoiser is wrapped for one call, the
calls of its children are recorded (inputs by parameter name, outputs by position), and the stack is read
off the data flow:

* a *segment* is a run of consecutive calls into one block list; a block maps each output to the input of the
  same shape (the streams it carries: image, text, joint);
* the stack ends with the last segment that carries streams, and grows backwards through every segment whose
  output *is* the next segment's main input, or is concatenated into it along the token axis (dual-stream
  blocks feeding single-stream blocks on ``cat([text, image])``);
* block lists whose outputs do not feed the main stream (text-only blocks, caption refiners, token refiners)
  are left out, because their outputs arrive as side inputs of the stack, not as its main stream.

The result, a `StackSpec`, is all the hooks need: where the stack's input enters, where its output leaves,
which tokens of that output are the image tokens, and how to pass a block's inputs through as its outputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import nn

from magcache_cli.errors import StackNotFoundError

# Names that say "the main hidden stream" when shapes alone cannot decide (tiny models, equal token counts).
_MAIN_NAMES = ("hidden_states", "x", "img", "visual_embed", "hidden_state", "sample")


@dataclass
class SegmentSpec:
    """One block list of the stack, in call order."""

    path: str  # attribute path of the nn.ModuleList inside the denoiser
    length: int  # blocks called per forward pass
    main_input: str  # parameter name of the main stream going into its blocks
    main_output: int | None  # index of the main stream in the block output tuple (None: a bare tensor)


@dataclass
class StackSpec:
    """Where the cached residual starts and ends inside one denoiser."""

    segments: list[SegmentSpec]
    param_names_first: list[str]  # forward parameters of the first block of the stack
    param_names_last: list[str]  # forward parameters of the last block of the stack
    out_spec: list[str | None]  # last block's outputs: input name passed through, "@main", or None
    out_single: bool  # the last block returns a bare tensor
    image_start: int  # first image token inside the last block's main output (at calibration)
    image_tail: int  # tokens after the image tokens inside that output (at calibration)
    # axis of the stack's main stream that holds the samples: 0 for [B, S, H] and for flattened (B*N, F, C)
    # or per-frame (B*F, N, C) rows, 1 for sequence-first [S, B, H] blocks (`batch_axis`, from the observed call)
    batch_axis: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def token_axis(self) -> int:
        """The axis a joint text+image stream concatenates along: the other of the first two axes."""
        return 0 if self.batch_axis == 1 else 1

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.segments]

    def describe(self) -> str:
        parts = [f"{s.path}[{s.length}]" for s in self.segments]
        joint = " (image tokens of a joint text+image stream)" if self.image_start or self.image_tail else ""
        return " → ".join(parts) + joint


def unwrap_compiled(module):
    """The module itself, also when `pipe.transformer = torch.compile(pipe.transformer)` wrapped it."""
    inner = getattr(module, "_orig_mod", None) if isinstance(module, nn.Module) else None
    return inner if isinstance(inner, nn.Module) else module


def batch_axis(shape: tuple[int, ...], batch: int) -> int:
    """The axis of a stream tensor that holds the denoiser's `batch` samples, read off the observed shapes:
    axis 0 when it has the batch size, else the first other non-feature axis that has it (sequence-first
    blocks, [S, B, H]), else 0 (batch-major flattening such as (B*N, F, C) has a multiple of it there)."""
    if not shape or shape[0] == batch:
        return 0
    return next((i for i in range(1, len(shape) - 1) if shape[i] == batch), 0)


def _could_denoise(module: nn.Module) -> bool:
    """A diffusers model (not a transformers text encoder) that is not an autoencoder, a UNet or a ControlNet."""
    kind = type(module).__name__
    diffusers_model = any(c.__name__ == "ModelMixin" and c.__module__.startswith("diffusers.")
                          for c in type(module).__mro__)
    return diffusers_model and not hasattr(module, "decode") and "UNet" not in kind and "ControlNet" not in kind


def find_denoisers(pipe) -> list[tuple[str, nn.Module]]:
    """The models that may denoise, `transformer` first, or a StackNotFoundError saying what the pipeline has.

    Candidates are the pipeline's diffusers models that are not autoencoders; the hooks keep only those the
    pipeline calls inside its denoising loop, so a second expert that takes over (Wan 2.2's `transformer_2`)
    and a second model for the unconditional pass (Ideogram 4's `unconditional_transformer`) are found the
    same way, by what the pipeline does."""
    first = unwrap_compiled(getattr(pipe, "transformer", None))
    if isinstance(first, nn.Module):
        found = [("transformer", first)]
        for name, value in (getattr(pipe, "components", None) or {}).items():
            module = unwrap_compiled(value)
            if isinstance(module, nn.Module) and _could_denoise(module) and all(module is not m for _, m in found):
                found.append((name, module))
        return found
    kind = type(pipe).__name__
    unet = getattr(pipe, "unet", None) or getattr(pipe, "prior", None)
    if isinstance(unet, nn.Module):
        raise StackNotFoundError(
            f"{kind} denoises with a UNet ({type(unet).__name__}), not a transformer",
            hint="MagCache caches a transformer (DiT) block stack; use a DiT pipeline such as Flux, SD3, Wan or Qwen-Image",
        )
    raise StackNotFoundError(
        f"{kind} has no `transformer` component",
        hint="magcache supports diffusers pipelines whose denoiser is a transformer (DiT)",
    )


def top_level_block_lists(denoiser: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """ModuleLists not nested inside another list's blocks (e.g. attention's `to_out` lists are excluded)."""
    lists = [(n, m) for n, m in denoiser.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    names = [n for n, _ in lists]
    return [(n, m) for n, m in lists if not any(n != o and n.startswith(o + ".") for o in names)]


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, module)


def param_names(block: nn.Module) -> list[str]:
    sig = inspect.signature(block.forward)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def bind_inputs(names: list[str], args: tuple, kwargs: dict) -> dict:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


@dataclass
class _Call:
    path: str
    index: int
    names: list[str]
    inputs: dict  # name -> tensor (token streams only)
    outputs: list  # tensors or None
    single: bool
    streams: dict[int, str] = field(default_factory=dict)  # output index -> input name
    conditioned: bool = False  # gets a per-sample vector (batch, dim): the timestep embedding of a denoised stream


class _Recorder(nn.Module):
    """Stands in for one block during the observed forward pass; records, then calls the real block."""

    def __init__(self, block: nn.Module, path: str, index: int, log: "Observation"):
        super().__init__()
        self.block = block
        self._path, self._index, self._log = path, index, log
        self._names = param_names(block)

    def forward(self, *args, **kwargs):
        log = self._log
        top = log.depth == 0
        log.depth += 1
        try:
            out = self.block(*args, **kwargs)
        finally:
            log.depth -= 1
        if top:
            bound = bind_inputs(self._names, args, kwargs)
            inputs = {k: v for k, v in bound.items() if _is_stream(v)}
            single = torch.is_tensor(out)
            outputs = [out] if single else list(out) if isinstance(out, (tuple, list)) else []
            conditioned = any(torch.is_tensor(v) and v.dim() == 2 and v.is_floating_point() for v in bound.values())
            log.record(_Call(self._path, self._index, self._names, inputs, outputs, single, conditioned=conditioned))
        return out


def _is_stream(v) -> bool:
    return torch.is_tensor(v) and v.dim() >= 3 and v.is_floating_point()


class Observation:
    """Wraps every top-level block list of a denoiser for one forward pass and records the block calls."""

    def __init__(self, denoiser: nn.Module):
        self.denoiser = denoiser
        self.calls: list[_Call] = []
        self.depth = 0
        self._originals = top_level_block_lists(denoiser)

    def __enter__(self) -> "Observation":
        for path, ml in self._originals:
            wrapped = nn.ModuleList([_Recorder(b, path, i, self) for i, b in enumerate(ml)])
            set_submodule(self.denoiser, path, wrapped)
        return self

    def __exit__(self, *exc) -> None:
        for path, ml in self._originals:
            set_submodule(self.denoiser, path, ml)

    def record(self, call: "_Call") -> None:
        """Keep what the analysis needs and no more: the stream map of every call, the inputs of the call
        that starts a run of calls into one list, the outputs of the run's latest call (on a large model
        every block's tensors would cost gigabytes)."""
        _map_streams(call)
        prev = self.calls[-1] if self.calls else None
        if prev is not None and prev.path == call.path and call.index == prev.index + 1:
            prev.outputs = [None if torch.is_tensor(o) else o for o in prev.outputs]
            call.inputs = {}
        self.calls.append(call)

    @property
    def list_paths(self) -> list[str]:
        return [p for p, _ in self._originals]


def _map_streams(call: _Call) -> None:
    """Output index -> the input it carries (same shape; ties broken by name, then by similarity)."""
    for i, out in enumerate(call.outputs):
        if not torch.is_tensor(out):
            continue
        cands = [k for k, v in call.inputs.items() if v.shape == out.shape]
        if len(cands) > 1:
            taken = set(call.streams.values())
            cands = [k for k in cands if k not in taken] or cands
        if len(cands) > 1:
            cands.sort(key=lambda k: -_cosine(call.inputs[k], out))
        if cands:
            call.streams[i] = cands[0]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().flatten(), b.detach().float().flatten()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def _main_of(call: _Call) -> tuple[str, int | None] | None:
    """The main stream of a block call: the carried input that comes first in the signature (names break ties)."""
    if not call.streams:
        return None
    carried = {name: idx for idx, name in call.streams.items()}
    order = sorted(carried, key=lambda n: (n not in _MAIN_NAMES, call.names.index(n) if n in call.names else 99))
    name = order[0]
    return name, (None if call.single else carried[name])


def _segments(calls: list[_Call]) -> list[list[_Call]]:
    segs: list[list[_Call]] = []
    for c in calls:
        if segs and segs[-1][-1].path == c.path and c.index == segs[-1][-1].index + 1:
            segs[-1].append(c)
        else:
            segs.append([c])
    return segs


def _feeds(prev: list[_Call], main_in: torch.Tensor) -> tuple[int, int] | None:
    """How `prev`'s last outputs become `main_in`: (output index, token offset), or None if they do not."""
    last = prev[-1]
    outs = [(i, o) for i, o in enumerate(last.outputs) if torch.is_tensor(o) and i in last.streams]
    for i, o in outs:
        if o.shape == main_in.shape and torch.equal(o, main_in):
            return i, 0
    # joined along the token axis: the output is the head or the tail of main_in, e.g. Chroma's
    # cat([text, image]) or HiDream's cat([image, text, llama]). The block's own main stream is preferred.
    main = _main_of(last)
    outs.sort(key=lambda io: not (main and last.streams.get(io[0]) == main[0]))
    n_in = main_in.shape[1]
    for i, o in outs:
        if o.dim() != main_in.dim() or o.shape[0] != main_in.shape[0] or o.shape[2:] != main_in.shape[2:]:
            continue
        n = o.shape[1]
        if n >= n_in:
            continue
        if torch.equal(main_in[:, :n], o):
            return i, 0
        if torch.equal(main_in[:, n_in - n:], o):
            return i, n_in - n
    return None


def _feeders(rest: list[list[_Call]], head: _Call, main_in: torch.Tensor) -> list[tuple[int, tuple[int, int]]]:
    """The segments right before `head` whose outputs make up its main input, best first.

    Usually one. Several when parallel block lists each refine one stream and the streams are then joined (Z-Image
    refines the image tokens, then the caption, and runs its main blocks on cat([image, caption]); Lumina2 does the
    same in the other order). The denoised stream is the one whose blocks get a per-sample conditioning vector (the
    timestep embedding); a caption refiner gets none. Ties go to the nearest segment.
    """
    found = []
    for k in range(len(rest) - 1, -1, -1):
        seg = rest[k]
        fed = None if seg[-1].path == head.path else _feeds(seg, main_in)
        if fed is None:
            break
        found.append((k, fed))
    found.sort(key=lambda kf: not all(c.conditioned for c in rest[kf[0]]))  # stable: nearest first among equals
    return found


def analyse(obs: Observation, denoiser_name: str = "transformer", batch: int = 1) -> StackSpec:
    """Read the stack off an observed forward pass of a denoiser call of `batch` samples (see the module
    docstring); the batch size locates the stack stream's batch axis, and so its token axis."""
    segs = [s for s in _segments(obs.calls) if all(c.streams for c in s)]
    if not segs:
        seen = ", ".join(obs.list_paths) or "none"
        raise StackNotFoundError(
            f"no transformer block stack found in {denoiser_name} (block lists seen: {seen})",
            hint="its blocks must be children of an nn.ModuleList and map hidden states to hidden states; "
            "please open an issue with the model id",
        )
    chain = [segs[-1]]
    main_name, _ = _main_of(segs[-1][0])  # type: ignore[misc]
    mains: list[tuple[str, int | None]] = [(main_name, None)]
    joins: list[int] = []
    rest = segs[:-1]
    while rest:
        head = chain[0][0]
        feeders = _feeders(rest, head, head.inputs[mains[0][0]])
        if not feeders:
            break
        k, (out_idx, offset) = feeders[0]
        prev, rest = rest[k], rest[:k]
        chain.insert(0, prev)
        mains.insert(0, (prev[-1].streams[out_idx], out_idx))
        joins.insert(0, offset)
    # main output index of every segment = the output carrying its main input
    specs = []
    for seg, (name, _) in zip(chain, mains):
        last = seg[-1]
        idx = None if last.single else next((i for i, n in last.streams.items() if n == name), None)
        if not last.single and idx is None:
            raise StackNotFoundError(f"block list {last.path} does not return its `{name}` input's stream",
                                     hint="please open an issue with the model id")
        specs.append(SegmentSpec(last.path, len(seg), name, idx))
    first, last = chain[0][0], chain[-1][-1]
    entry = first.inputs[specs[0].main_input]
    exit_ = last.outputs[specs[-1].main_output or 0]
    start = sum(joins)
    axis = batch_axis(tuple(entry.shape), batch)
    tokens = 0 if axis == 1 else 1
    tail = exit_.shape[tokens] - start - entry.shape[tokens]
    others = [d for d in range(entry.dim()) if d != tokens]
    if tail < 0 or exit_.dim() != entry.dim() or any(exit_.shape[d] != entry.shape[d] for d in others):
        raise StackNotFoundError(
            f"stack {' → '.join(s.path for s in specs)} changes the shape of its main stream "
            f"({tuple(entry.shape)} → {tuple(exit_.shape)})",
            hint="please open an issue with the model id",
        )
    out_spec: list[str | None] = []
    for i, o in enumerate(last.outputs):
        if o is None:
            out_spec.append(None)
        elif i == (specs[-1].main_output or 0) and (not last.single or i == 0):
            out_spec.append("@main")
        elif i in last.streams:
            out_spec.append(last.streams[i])
        else:
            raise StackNotFoundError(f"block {last.path}.{last.index} returns an output that is not a stream",
                                     hint="please open an issue with the model id")
    notes = list(dict.fromkeys(f"left out: {s[0].path} (does not feed the main stream)" for s in segs if s not in chain))
    if first.index != 0:  # Latte: spatial and temporal lists called in turns, with reshapes in between
        notes.append(f"{first.path} is called in turns with other block lists and its block {first.index} starts "
                     f"the stack found; the hooks wrap the list's first and last block, so the span cached runs "
                     f"from {first.path}[0]'s input to its last block's output")
    return StackSpec(specs, first.names, last.names, out_spec, last.single, start, tail, axis, notes)
