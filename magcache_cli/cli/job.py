"""The one set-up path of `calibrate`, `run` and `tune`: from their option groups (cli/options.py) to a loaded
pipeline with its prompts, seeds and call arguments.

Two steps, so a command can check more between them: `settle` decides everything that needs no weights
(model, prompts, seeds, call values, sizes) and fails on bad input in seconds; `load` starts the ranks,
reads the input files, loads the pipeline, applies context parallelism and `--compile`, and builds the call
arguments against the pipeline's signature. A new option in a group is read here, in one of the two.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from magcache_cli.cli import options as o
from magcache_cli.cli import preflight
from magcache_cli.cli import render as console
from magcache_cli.cli.common import enable_context_parallel, start_ranks
from magcache_cli.cli.inputs import CallInputs, gather, split_set
from magcache_cli.errors import UsageError

DEMO_MODEL = "builtin:demo"
DEMO_PROMPTS = ["a handwritten digit three", "a handwritten digit seven"]
NAMED = ("guidance_scale", "negative_prompt", "height", "width", "num_frames")  # o.Call's named arguments


@dataclass
class Asked:
    """What the command line asked for, read once: the groups, the prompts given (-p, --prompts-file), the
    parsed --set and its KEY=@PATH files."""

    load: o.Load
    call: o.Call
    inputs: o.Inputs
    prompts: list[str]
    seeds: list[int] | None
    call_args: dict[str, Any]
    set_files: list = field(default_factory=list)


def read(load: o.Load, prompts: o.Prompts, call: o.Call, inputs: o.Inputs) -> Asked:
    """Read `--prompts-file` and parse `--set` (its KEY=@PATH items are files, read by `load`)."""
    plain, set_files = split_set(call.set_)
    got = preflight.read(prompts.prompt, prompts.prompts_file, plain)
    return Asked(load, call, inputs, got.prompts, prompts.seed, got.call_args, set_files)


@dataclass
class Settled:
    """Everything decided before any weights load."""

    asked: Asked
    model: str
    revision: str | None
    prompts: list[str]
    seeds: list[int]
    call: o.Call  # with the demo model's settings filled in
    prof: Any = None  # the profile (run, tune): call values and inputs default to its calibration
    profile_path: str | None = None

    def calibration(self) -> dict[str, Any]:
        """The values a new profile's `calibration` would record (for `preflight.storable`)."""
        c = self.call
        return {"steps": c.steps, **{k: getattr(c, k) for k in NAMED}, "call_args": self.asked.call_args,
                "prompts": self.prompts, "seeds": self.seeds}


def settle(asked: Asked, *, prof=None, profile_path: str | None = None, all_prompts: bool = False) -> Settled:
    """The model (the profile's unless --model), prompts (given, else the profile's first or `all_prompts`,
    else the demo's), seeds (0) and the sizes the model accepts; nothing is loaded."""
    load, call = asked.load, asked.call
    if prof is None:
        model, rev = load.model or DEMO_MODEL, load.revision
        fallback = DEMO_PROMPTS if model == DEMO_MODEL else []
        if model == DEMO_MODEL:
            call = demo_defaults(call)
    else:
        model, rev = load.model or prof.model.id, load.revision or (None if load.model else prof.model.revision)
        fallback = prof.calibration.prompts if all_prompts else prof.calibration.prompts[:1]
    prompts = asked.prompts or fallback
    if not prompts:
        raise UsageError("no prompt given", hint="pass --prompt (repeatable) or --prompts-file")
    cal = prof.calibration if prof is not None else call
    preflight.sizes(model, rev, cal.height if call.height is None else call.height,
                    cal.width if call.width is None else call.width)
    return Settled(asked, model, rev, list(prompts), list(asked.seeds or [0]), call, prof, profile_path)


def demo_defaults(call: o.Call) -> o.Call:
    """The bundled demo model's call settings for the values not given."""
    from magcache_cli.runner.loading import DEMO_CALL

    keys = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale", "height": "height", "width": "width"}
    return dataclasses.replace(call, **{k: DEMO_CALL[d] for k, d in keys.items() if getattr(call, k) is None})


@dataclass
class Job:
    """A loaded pipeline and what to call it with; `ranks` is this command's exchange (core/distributed)."""

    pipe: Any
    device: Any
    dtype: Any
    ranks: Any
    files: CallInputs
    prompts: list[str]
    seeds: list[int]
    kwargs: dict[str, Any]
    model: str
    revision: str | None

    @property
    def runs(self) -> int:
        return len(self.prompts) * len(self.seeds)

    @property
    def steps(self) -> int:
        return self.kwargs.get("num_inference_steps") or 50

    @contextmanager
    def progress(self, label: str, total: int | None = None):
        """One progress bar (runs × steps unless `total`), also advanced by the other ranks' steps."""
        with console.progress(self.runs * max(1, self.steps) if total is None else total, label) as bar:
            self.ranks.on_remote = bar.advance
            yield bar

    def on_step(self, bar):
        return lambda _: (bar.advance(), self.ranks.tick())


def load(s: Settled, *, one_process: str | None = None) -> Job:
    """Start the ranks, read the input files, load the pipeline (context parallelism, --compile) and build
    its call arguments. `one_process`: the option that refuses a job of several processes."""
    opts = s.asked.load
    ranks = start_ranks(opts.device, opts.context_parallel)
    if one_process and ranks.info.distributed:
        raise UsageError(f"{one_process} runs in one process", hint="start it without torchrun or accelerate launch")
    i = s.asked.inputs
    files = gather(image=i.image, mask_image=i.mask_image, control_image=i.control_image, video=i.video,
                   strength=i.strength, set_files=s.asked.set_files, pipeline=i.pipeline, component=i.component,
                   model=s.model, revision=opts.revision,
                   profile=s.prof, profile_path=s.profile_path)
    pipe, device, dtype = load_pipe(s.model, s.revision, opts, files)
    enable_context_parallel(pipe, ranks)
    apply_compile(pipe, opts.compile_)
    kwargs = call_kwargs(pipe, s, files)
    for note in files.notes:
        console.notice(note)
    return Job(pipe, device, dtype, ranks, files, s.prompts, s.seeds, kwargs, s.model, s.revision)


def load_pipe(model: str, revision: str | None, opts: o.Load, files: CallInputs | None = None):
    """Load the pipeline under a status line; `files` names another class and extra components."""
    from magcache_cli.runner.loading import LoadOptions, load_pipeline, quiet_libraries

    quiet_libraries()
    with console.console().status(f"Loading {model} …"):
        return load_pipeline(LoadOptions(
            model, revision, opts.variant, opts.dtype, opts.device, opts.offload, opts.allow_pickle,
            opts.trust_remote_code, vae_tiling=opts.vae_tiling, vae_slicing=opts.vae_slicing,
            pipeline=files.pipeline if files else None, components=files.components if files else None))


def apply_compile(pipe, mode: str) -> None:
    """`--compile`: none, repeated, full, or auto (bare `--compile`: repeated blocks where declared, else full)."""
    if mode != "none":
        from magcache_cli.core.compile import compile_pipeline

        compile_pipeline(pipe, mode=mode)


def call_kwargs(pipe, s: Settled, files: CallInputs) -> dict[str, Any]:
    """The call arguments: those given now (named options, --set, input files), over the profile's
    calibration (run, tune). Arguments given now must fit the pipeline; inherited ones it does not take
    are dropped with a note in `files.notes`."""
    from magcache_cli.runner.classes import call_arguments
    from magcache_cli.runner.inputs import drop_unaccepted
    from magcache_cli.runner.loading import build_call_kwargs

    c = s.call
    now = {**{k: getattr(c, k) for k in NAMED if getattr(c, k) is not None}, **s.asked.call_args,
           **files.values}  # a --set value of None is passed (--set KEY=null)
    inherited, steps = {}, c.steps
    if s.prof is not None:
        cal = s.prof.calibration
        steps = cal.steps if steps is None else steps
        inherited = {k: getattr(cal, k) for k in NAMED if getattr(cal, k) is not None}
        inherited, notes = drop_unaccepted({k: v for k, v in {**inherited, **cal.call_args}.items() if k not in now},
                                           call_arguments(pipe), "calibration")
        files.notes += notes
    return build_call_kwargs(pipe, steps=steps, extra={**inherited, **now})
