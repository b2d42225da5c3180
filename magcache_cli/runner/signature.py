"""Call arguments checked against a pipeline class's `__call__` signature, before its weights load.

`check_call` refuses a key the class does not take (the same words `build_call_kwargs` uses after loading)
and a `--set` value that cannot be of the parameter's annotated type (`num_inference_steps=abc`). A type is
judged only where it is plainly understood (int, float, bool, str, lists, dicts, unions and Optional of
them); anything else (tensors, images, custom classes, missing annotations) is left to the pipeline.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from magcache_cli.errors import UsageError

_UNKNOWN = object()


def refuse_unknown(cls_name: str, accepted: Iterable[str], keys: Iterable[str]) -> None:
    """UsageError naming the call arguments in `keys` that are not among `accepted`."""
    accepted = set(accepted)
    unknown = sorted(k for k in keys if k not in accepted)
    if unknown:
        raise UsageError(
            f"{cls_name} does not take {', '.join(unknown)}",
            hint=f"it takes: {', '.join(sorted(a for a in accepted if a not in ('self', 'kwargs')))}",
        )


def annotations(cls: type) -> dict[str, Any]:
    """The annotated types of `cls.__call__`'s parameters; those that cannot be resolved are left out."""
    try:
        hints = typing.get_type_hints(cls.__call__)
    except Exception:  # a forward reference the class's module cannot resolve: judge nothing by type
        return {}
    return {k: v for k, v in hints.items() if k != "return"}


def fits(value: Any, kind: Any) -> bool:
    """False only when `kind` is understood and `value` (plain YAML data) cannot be of it; None always fits
    (`--set KEY=null` turns a pipeline default off)."""
    if value is None or kind is Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return False  # value is not None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind in (list, tuple) or origin in (list, tuple):
        items = typing.get_args(kind)
        inner = items[0] if items and (origin is list or (len(items) == 2 and items[1] is Ellipsis)) else Any
        return isinstance(value, (list, tuple)) and all(fits(x, inner) for x in value)
    if kind is dict or origin is dict:
        return isinstance(value, dict)
    return True  # a class we do not judge


def describe(kind: Any) -> str:
    text = getattr(kind, "__name__", None) if isinstance(kind, type) else None
    return text or str(kind).replace("typing.", "").replace("NoneType", "None")


def check_call(cls: type | None, keys: Iterable[str], typed: Mapping[str, Any]) -> None:
    """Refuse, before loading, call arguments `cls` does not take (`keys`: every argument given now) and
    `--set` values (`typed`) that cannot be of their parameter's type. Nothing is checked without a class."""
    if cls is None or cls.__name__.startswith("AutoPipeline"):
        return
    accepted = set(inspect.signature(cls.__call__).parameters) - {"self", "kwargs", "args"}
    refuse_unknown(cls.__name__, accepted, keys)
    hints = annotations(cls)
    for key, value in typed.items():
        kind = hints.get(key, _UNKNOWN)
        if kind is not _UNKNOWN and not fits(value, kind):
            raise UsageError(f"--set {key}: {cls.__name__} takes {describe(kind)} for {key}, got {value!r}",
                             hint="pass a value of that type (YAML: 4, 0.5, true, 'text', [1, 2])")
