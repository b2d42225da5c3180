"""Methods wrapped on instances and hooks registered on modules, undone exactly: `remove()` of the hooks puts
back every attribute that was there before (or none), in reverse order, so two hook sets sharing a scheduler
unwind cleanly."""

from __future__ import annotations

import copy
import functools

_MISSING = object()


class _Patched:
    """A wrapped method set on one instance. A deep copy of that instance gets the method it had before the
    hooks, never the wrapper: LTX-2 copies its scheduler for the audio stream with `copy.deepcopy` after the
    hooks are installed, and a copied wrapper would step (and count) the original scheduler a second time."""

    def __init__(self, owner, name: str, previous, wrapped):
        # name and docstring only: merging `wrapped.__dict__` (which `functools.wraps` filled from an earlier
        # hook's `_Patched`) would overwrite `_wrapped` and skip this wrapper when two hook sets share a scheduler
        functools.update_wrapper(self, wrapped, updated=())
        self._owner_id, self._name, self._previous, self._wrapped = id(owner), name, previous, wrapped

    def __call__(self, *args, **kwargs):
        return self._wrapped(*args, **kwargs)

    def __deepcopy__(self, memo):
        if self._previous is not _MISSING:
            return copy.deepcopy(self._previous, memo)
        twin = memo.get(self._owner_id)
        if twin is None:  # copied without its owner: nothing to rebind to
            return self
        return getattr(type(twin), self._name).__get__(twin)


class Patches:
    """What one set of hooks changed on other objects: wrapped methods and registered hook handles."""

    def __init__(self) -> None:
        self._wrapped: list[tuple[object, str, object]] = []
        self._handles: list = []

    def wrap(self, obj, name: str, wrapper) -> None:
        """Replace bound method `name` of `obj` by `wrapper(original)`, as an instance attribute."""
        previous = vars(obj).get(name, _MISSING)
        self._wrapped.append((obj, name, previous))
        setattr(obj, name, _Patched(obj, name, previous, wrapper(getattr(obj, name))))

    def hooked(self, *handles) -> None:
        """Keep `torch` hook handles to remove them with the rest."""
        self._handles.extend(handles)

    def holds(self, obj) -> bool:
        """Whether a method of `obj` is wrapped."""
        return any(o is obj for o, _, _ in self._wrapped)

    def undo(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for obj, name, previous in reversed(self._wrapped):
            if previous is _MISSING:
                vars(obj).pop(name, None)
            else:
                setattr(obj, name, previous)
        self._wrapped = []
