"""Every fixed choice of the library, as `str` enums: compare equal to their values, so profiles (plain YAML
strings), JSON output and Typer's `--help` all use the same words."""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType


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


class Device(Choice):
    AUTO = "auto"  # cuda if torch sees a GPU, else mps, else cpu
    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"


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


class Interval:
    """A range of numbers, `[low, high]`, `[low, high)` or `(low, ...` (`high` None: no upper bound). Every layer
    that takes such a value (the skip rule, the forecast, the speedup, the profile schema, the CLI's preflight)
    asks the same one."""

    def __init__(self, low: float, high: float | None = None, *, high_open: bool = False, low_open: bool = False):
        self.low, self.high, self.high_open, self.low_open = low, high, high_open, low_open

    def __contains__(self, v: float) -> bool:  # False for nan
        above = self.low < v if self.low_open else self.low <= v
        return above and (self.high is None or (v < self.high if self.high_open else v <= self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


THRESHOLD_RANGE = Interval(0)
RETENTION_RANGE = Interval(0, 1, high_open=True)
SPEEDUP_RANGE = Interval(1, low_open=True)  # --speedup X: at most 1/X of the full run's passes
FORECAST_RANGE = Interval(0, 1)  # A of the residual forecast (core/forecast.py); 0 is MagCache's plain reuse

# The skip settings a new profile's `defaults` get unless calibrate is told otherwise; declared here only.
SKIP_DEFAULTS = MappingProxyType({"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2})
