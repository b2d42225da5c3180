"""Every fixed choice of the library, as `str` enums: compare equal to their values, so profiles (plain YAML
strings), JSON output and Typer's `--help` all use the same words."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A `str` enum whose `str()` is its value, with a helper that parses user input with a clear error."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    @classmethod
    def parse(cls, value: "str | Choice", what: str):
        """`cls(value)`, or ValueError naming `what` and the allowed values."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what} must be one of {', '.join(cls.values())}, got {value!r}") from None


class GuidanceMode(Choice):
    """How a pipeline runs classifier-free guidance (see core/branches.py)."""

    NONE = "none"  # one denoiser call per step
    SEQUENTIAL = "sequential"  # one call per branch and step
    BATCHED = "batched"  # one call whose batch stacks the branches


class BranchPolicy(Choice):
    """How branches decide to skip: together (default) or each on its own (sequential guidance only)."""

    JOINT = "joint"
    INDEPENDENT = "independent"


class CompileMode(Choice):
    NONE = "none"
    REPEATED = "repeated"  # transformer.compile_repeated_blocks(fullgraph=True)
    FULL = "full"  # torch.compile of the whole transformer
    AUTO = "auto"  # the best that works: repeated where the transformer declares repeated blocks, else full


class Offload(Choice):
    NONE = "none"
    MODEL = "model"  # enable_model_cpu_offload
    SEQUENTIAL = "sequential"  # enable_sequential_cpu_offload


class Dtype(Choice):
    AUTO = "auto"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class ExportFormat(Choice):
    DIFFUSERS = "diffusers"
    JSON = "json"


class PadMode(Choice):
    """Whether imported ratio lists carry the leading 1.0 of step 0."""

    AUTO = "auto"
    ADD = "add"
    PRESENT = "present"
