"""Typed errors. Library code raises these; only the CLI turns them into `Error: ...` and exit codes."""

from __future__ import annotations


class MagCacheError(Exception):
    """Base class. `hint` says what to do next; the CLI prints `Error: <message> — <hint>`."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ProfileError(MagCacheError):
    """A profile file is missing, unreadable or does not match the schema. `field` is its dotted path."""

    def __init__(self, message: str, hint: str | None = None, field: str | None = None, path: str | None = None):
        super().__init__(message, hint)
        self.field = field
        self.path = path


class LoadError(MagCacheError):
    """The pipeline could not be loaded."""


class StackNotFoundError(MagCacheError):
    """No transformer block stack could be identified in the denoiser."""


class BranchError(MagCacheError):
    """Transformer calls could not be assigned to guidance branches consistently with the profile."""


class CompatibilityError(MagCacheError):
    """The profile was calibrated for another model."""


class UsageError(MagCacheError):
    """Bad command-line input (options that conflict, files that exist, ...)."""


class InputError(MagCacheError):
    """A call argument cannot be used or recorded: a file that cannot be read, a value a profile cannot hold.
    `arg` is the pipeline call argument it was meant for (`image`, `mask_image`, ...)."""

    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__(message, hint)
        self.arg = arg


class DistributedError(MagCacheError):
    """A job spread over several processes cannot go on: a rank failed (`rank`, `remote=True` on the ranks
    that learned of it from another), contact was lost, or the launch environment is inconsistent."""

    def __init__(self, message: str, hint: str | None = None, rank: int | None = None, remote: bool = False):
        super().__init__(message, hint)
        self.rank = rank
        self.remote = remote


class OutputError(MagCacheError):
    """A pipeline output holds nothing that can be saved as an image or a video."""
