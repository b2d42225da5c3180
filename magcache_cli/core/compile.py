"""`torch.compile` for a pipeline's transformer(s), in the two ways users do it, composed with skipping.

    from magcache_cli.core.compile import compile_pipeline
    compile_pipeline(pipe, mode="repeated")   # transformer.compile_repeated_blocks(fullgraph=True)
    compile_pipeline(pipe, mode="full")       # transformer.compile(fullgraph=True): the whole forward

Where the per-step work happens in each mode (the hooks are in `hooks.py`):

* ``repeated`` (diffusers' regional compilation, the usual choice): every block whose class is listed in the
  model's ``_repeated_blocks`` is compiled on its own; the transformer's top-level forward (embeddings, final
  norm and projection), magcache's hooks and the proxies around the first/last block stay eager. The skip
  decision and the replay (stack input + cached residual) therefore never enter a compiled region, and the
  compiled graphs are exactly the block graphs, whichever steps are skipped.
* ``full``: the whole forward is one compiled frame. It uses ``transformer.compile()`` (in place) rather than
  ``pipe.transformer = torch.compile(pipe.transformer)``: the pipeline keeps its real model class, so the
  profile's transformer-class check, ``save_pretrained`` and offloading keep working. magcache's hooks are
  ``torch.compiler.disable``d, so they run as plain Python on every call instead of being traced (and
  re-specialised on the step counter); the proxies they put in the block lists hold only constants and
  exchange tensors through one object, so the forward compiles to one graph per layout — computed (stack
  with probes) and skipped (stack replaced by the replay) — and never again as steps advance. The one call
  that discovers the stack runs eagerly (`gate_eager`), so the recording proxies are never compiled.
  An ``OptimizedModule`` made by ``torch.compile(pipe.transformer)`` is accepted the same way: magcache
  hooks its ``_orig_mod`` and gates its compiled ``forward``.
"""

from __future__ import annotations

from typing import Any, Callable

from magcache_cli.core.stacks import find_denoisers, unwrap_compiled
from magcache_cli.errors import MagCacheError, UsageError
from magcache_cli.types import CompileMode

MODES = (CompileMode.REPEATED, CompileMode.FULL, CompileMode.AUTO)  # `none` is not compiling at all


def compile_pipeline(pipe, mode: CompileMode | str = CompileMode.REPEATED, fullgraph: bool = True,
                     **torch_compile_kwargs: Any) -> list[str]:
    """Compile every transformer of `pipe` in place; return the names compiled (e.g. ``["transformer"]``).

    `mode` is ``"repeated"`` (``compile_repeated_blocks``), ``"full"`` (``transformer.compile()``) or
    ``"auto"``: repeated blocks where the transformer declares them (``_repeated_blocks``), else the whole model;
    other keyword arguments (``backend``, ``mode``, ``dynamic``, ...) go to ``torch.compile`` as they are —
    pass the compile mode as ``compile_mode=`` since ``mode`` names magcache's choice.
    Compiling is lazy: the first pipeline call pays for it.
    """
    if mode not in MODES:
        raise UsageError(f"unknown compile mode {mode!r}",
                         hint="use `mode=repeated` (the transformer's repeated blocks), `mode=full` or `mode=auto`")
    mode = CompileMode(mode)
    if "compile_mode" in torch_compile_kwargs:
        torch_compile_kwargs["mode"] = torch_compile_kwargs.pop("compile_mode")
    names = []
    for name, model in find_denoisers(pipe):
        refuse_gguf(name, model)
        if mode == CompileMode.AUTO and has_repeated_blocks(model):
            try:
                _compile_repeated(model, fullgraph, torch_compile_kwargs)
            except MagCacheError:  # the declared block classes are not in this model: compile all of it
                model.compile(fullgraph=fullgraph, **torch_compile_kwargs)
        elif mode == CompileMode.REPEATED:
            _compile_repeated(model, fullgraph, torch_compile_kwargs)
        else:
            model.compile(fullgraph=fullgraph, **torch_compile_kwargs)
        if getattr(pipe, name) is not model:  # an OptimizedModule around it: call the model itself from now on
            setattr(pipe, name, model)
        names.append(name)
    return names


def refuse_gguf(name: str, model) -> None:
    """torch.compile cannot trace diffusers' `GGUFParameter` weights (dynamo 2.13: "Unsupported tensor subclass
    overridden attribute access" with fullgraph, a KeyError without): say so before the first call fails."""
    params = model.parameters() if callable(getattr(model, "parameters", None)) else ()
    if any(type(p).__name__ == "GGUFParameter" for p in params):
        raise UsageError(f"{name} has GGUF weights, which torch.compile cannot trace",
                         hint="drop --compile, or load a .safetensors transformer (optionally --quantize torchao:int8wo)")


def has_repeated_blocks(model) -> bool:
    """Whether `model` declares repeated blocks that `compile_repeated_blocks` can compile one by one."""
    return bool(getattr(model, "_repeated_blocks", None)) and hasattr(model, "compile_repeated_blocks")


def _compile_repeated(model, fullgraph: bool, kwargs: dict) -> None:
    cls = type(model).__name__
    if not has_repeated_blocks(model):
        raise MagCacheError(f"{cls} declares no repeated blocks (`_repeated_blocks`), so they cannot be compiled alone",
                            hint="compile the whole transformer instead (`mode=full`)")
    try:
        model.compile_repeated_blocks(fullgraph=fullgraph, **kwargs)
    except ValueError as e:  # diffusers: the listed classes are not found in the model
        raise MagCacheError(f"{cls}: {e}",
                            hint="compile the whole transformer instead (`mode=full`)") from None


def compiled_entry(top) -> tuple[Any, str, Callable] | None:
    """Where a whole-model compile enters, as (owner, attribute, eager equivalent), or None if not compiled.

    `top` is what the pipeline calls: ``transformer.compile()`` sets ``_compiled_call_impl`` on the model;
    ``torch.compile(model)`` returns an ``OptimizedModule`` whose ``forward`` is the compiled call.
    Blocks compiled by ``compile_repeated_blocks`` are not an entry: the top-level call is eager then.
    """
    inner = unwrap_compiled(top)
    if inner is not top and callable(vars(top).get("forward")):
        return top, "forward", inner._call_impl
    if vars(top).get("_compiled_call_impl") is not None:
        return top, "_compiled_call_impl", top._call_impl
    return None


def gate_eager(compiled: Callable, eager: Callable, predicate: Callable[[], bool]) -> Callable:
    """A stand-in for a compiled call that runs `eager` instead while `predicate()` is true.

    magcache's first call discovers the block stack with recording proxies; running it eagerly keeps them
    out of the compiled graphs (they would be traced once and never used again).
    """

    def call(*args, **kwargs):
        return (eager if predicate() else compiled)(*args, **kwargs)

    return call


def graph_count() -> int:
    """Graphs dynamo has compiled in this process so far (``counters["stats"]["unique_graphs"]``)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
