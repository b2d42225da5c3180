"""One calibration: full inference with recording hooks over prompts × seeds, returned as a Profile."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from magcache_cli.core.branches import denoiser_prefix, finalize_labels
from magcache_cli.core.distributed import Exchange, local_exchange
from magcache_cli.core.calls import StepCalls
from magcache_cli.core.hooks import StackHooks
from magcache_cli.core.recording import RecordingHooks, branch_curves
from magcache_cli.core.rule import few_step_note
from magcache_cli.core.stacks import StackSpec, find_denoisers
from magcache_cli.errors import MagCacheError
from magcache_cli.profile.schema import (
    BranchCurves,
    Calibration,
    Defaults,
    InputFile,
    ModelInfo,
    Profile,
    SchedulerInfo,
    config_fingerprint,
)
from magcache_cli.profile.validate import validated
from magcache_cli.runner.inputs import prompt_seed_pairs, split_call_args
from magcache_cli.runner.provenance import provenance as setup_provenance
from magcache_cli.runner.shard import CalibrationRuns
from magcache_cli.types import SKIP_DEFAULTS, GuidanceMode
from magcache_cli.version import __version__

# Scheduler config keys that shape the timesteps (kept in the profile's provenance).
TIMESTEP_KEYS = (
    "num_train_timesteps", "shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len",
    "max_image_seq_len", "time_shift_type", "invert_sigmas", "shift_terminal", "use_karras_sigmas",
    "use_exponential_sigmas", "use_beta_sigmas", "beta_schedule", "beta_start", "beta_end", "prediction_type",
    "timestep_spacing", "steps_offset", "flow_shift", "final_sigmas_type", "solver_order", "stochastic_sampling",
)
DEFAULTS = SKIP_DEFAULTS  # a new profile's skip settings (types.py declares them)
CALL_KEYS = ("num_inference_steps", "guidance_scale", "negative_prompt", "height", "width", "num_frames")


@dataclass
class CalibrationResult:
    profile: Profile
    stack: StackSpec
    wall_s: float
    runs: int
    denoiser_calls: int
    outputs: list[Any] = field(default_factory=list)

    @property
    def window(self) -> tuple[int, int]:
        """The [begin, stop) steps the calibration ran: all of them, unless the pipeline began mid-schedule
        (img2img with strength < 1) or a second expert took over."""
        actives = [b.active or [0, self.profile.calibration.steps] for b in self.profile.branches.values()]
        return min(a[0] for a in actives), max(a[1] for a in actives)

    @property
    def notes(self) -> list[str]:
        """What to know about this calibration: a window that began mid-schedule, few steps."""
        (begin, stop), n = self.window, self.profile.calibration.steps
        out = [f"calibrated on steps {begin}–{stop - 1} of {n}: the pipeline began mid-schedule (e.g. strength < 1). "
               f"Runs that begin earlier compute the steps before {begin}; calibrate on the full schedule (strength 1 "
               "or text-to-image) to serve any strength."] if begin > 0 else []
        few = few_step_note(n)
        return out + ([few] if few else [])


class CalibrationInterrupted(MagCacheError):
    """Ctrl-C during `calibrate(..., keep_partial=True)`: `result` holds the profile of the finished runs."""

    def __init__(self, result: CalibrationResult, finished: int, total: int):
        super().__init__(f"interrupted after {finished} of {total} runs",
                         hint="the finished runs are in `result`; calibrate again to measure all of them")
        self.result, self.finished, self.total = result, finished, total
        self.saved_to = None  # where a caller wrote `result`, for its message


def scheduler_info(scheduler) -> SchedulerInfo:
    config = dict(getattr(scheduler, "config", {}) or {})
    return SchedulerInfo(class_name=type(scheduler).__name__,
                         config={k: _plain(config[k]) for k in TIMESTEP_KEYS if k in config and config[k] is not None})


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float):
        return round(v, 6)
    return v


def versions() -> dict[str, str]:
    import diffusers

    return {"magcache": __version__, "diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0]}


def generator_for(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _branches(used: list[StackHooks]) -> tuple[dict[str, BranchCurves], list[str], GuidanceMode]:
    """Profile branches, stack paths and guidance mode from the hooks of the models that denoised.

    A model whose provisional labels repeat an earlier model's is an expert that takes over for part of the
    steps (Wan 2.2's `transformer_2`): its branches are `<name>.<branch>`, with their own window. A model with
    labels of its own ran other passes of the same steps (Ideogram 4's `unconditional_transformer` makes the
    second call of every step): its branches join the first model's, named by the shared call order."""
    shared: list[tuple[StackHooks, dict]] = []
    experts: list[tuple[StackHooks, dict]] = []
    seen: set[str] = set()
    for h in used:
        curves = branch_curves(h.strategy.records, h.reports)
        (experts if shared and seen & set(curves) else shared).append((h, curves))
        seen |= set(curves)
    groups = [("", shared)] + [(denoiser_prefix(used.index(h), h.denoiser_name), [(h, c)]) for h, c in experts]
    branches, stack_paths, guidance_mode = {}, [], GuidanceMode.NONE
    for k, (prefix, members) in enumerate(groups):
        curves = {label: c for _, cs in members for label, c in cs.items()}
        local = list(curves)
        recording = members[0][0].strategy
        renames, mode = finalize_labels(local, recording.last_mode)
        if k == 0:
            guidance_mode = mode
        batched = mode == GuidanceMode.BATCHED
        order = [x for x in ("uncond", "cond") if x in local] if batched else local
        if batched and recording.cond_first and set(order) == {"uncond", "cond"}:
            renames = {"uncond": "cond", "cond": "uncond"}  # the halves were named by position: [cond | uncond]
        for label in order:
            branches[prefix + renames[label]] = BranchCurves(**curves[label])
        stack_paths += [denoiser_prefix(used.index(h), h.denoiser_name) + p for h, _ in members for p in h.spec.paths]
    return branches, stack_paths, guidance_mode


def calibrate(
    pipe,
    prompts: list[str],
    seeds: list[int],
    call_kwargs: dict[str, Any],
    *,
    model_id: str,
    revision: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    defaults: dict[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
    on_run: Callable[[int, str, int], None] | None = None,
    keep_outputs: bool = False,
    inputs: list[InputFile] | None = None,
    components: dict[str, str] | None = None,
    exchange: Exchange | None = None,
    keep_partial: bool = False,
) -> CalibrationResult:
    """Run the pipeline on every prompt × seed with recording hooks (no skipping) and build a Profile.

    Each call gets one prompt, so a denoiser batch of twice the images per prompt means batched guidance,
    `cat([negative, positive])`. `inputs` names the call arguments read from files (recorded as path,
    sha256 and size); an in-memory image gets a provenance without a path; any other call argument a profile
    cannot hold is an InputError before anything runs. `components` (name -> id or folder) are recorded too.
    Steps are positions in the scheduler's full schedule: a pipeline that begins mid-schedule records its
    curves on [begin, steps) as each branch's `active` window.

    With an `exchange` over several ranks (torchrun), this rank runs its share of the prompt × seed runs and
    every rank gets the profile of all runs, equal to the one-process profile (see runner/shard.py).

    On Ctrl-C the KeyboardInterrupt goes through as it is, unless `keep_partial` (one process): then, if at
    least one run finished, `CalibrationInterrupted` carries the profile of the finished runs.
    """
    plain_args, provenance = split_call_args(call_kwargs, inputs)
    if not prompts:
        raise MagCacheError("no prompt given", hint="pass at least one prompt (`prompts`)")
    if not seeds:
        raise MagCacheError("no seed given", hint="pass at least one seed (`seeds`)")
    job = _Job(pipe, call_kwargs, plain_args, provenance, components, model_id, revision, dtype, device, defaults)
    all_hooks = recording_hooks(pipe, call_kwargs)
    all_hooks[0].on_step = on_step
    shares = CalibrationRuns(exchange or local_exchange(), all_hooks)
    done = _Done(all_hooks)
    total = len(prompts) * len(seeds)
    try:
        with ExitStack() as stack:
            for h in all_hooks:
                stack.enter_context(h)
            for _, pair, out, wall in each_call(pipe, shares.runs(prompt_seed_pairs(prompts, seeds)), call_kwargs,
                                                on_run, lambda: [h.start_call(job.steps) for h in all_hooks]):
                done.add(pair, out if keep_outputs else None, wall)
    except KeyboardInterrupt:
        if not keep_partial or not done.pairs or (exchange is not None and exchange.info.distributed):
            raise
        done.forget_interrupted()
        result = _result(job, all_hooks, list(dict.fromkeys(p for p, _ in done.pairs)),
                         list(dict.fromkeys(s for _, s in done.pairs)), done.wall, len(done.pairs), done.outputs,
                         source=f"interrupted calibration: {len(done.pairs)} of {total} runs (prompt × seed, "
                                "prompt-major) finished; the curves are their means")
        raise CalibrationInterrupted(result, len(done.pairs), total) from None
    return _result(job, all_hooks, prompts, seeds, shares.merge(done.wall), total, done.outputs)


def recording_hooks(pipe, call_kwargs: dict[str, Any]) -> list[StackHooks]:
    """One set of recording hooks per model that may denoise, sharing the per-step call order (`_branches`)."""
    per_prompt = call_kwargs.get("num_images_per_prompt") or call_kwargs.get("num_videos_per_prompt") or 1
    calls = StepCalls()
    return [RecordingHooks(pipe, n, expected_batch=int(per_prompt), calls=calls, gated=k > 0)
            for k, (n, _) in enumerate(find_denoisers(pipe))]


def each_call(pipe, runs: Iterable[tuple[int, tuple[str, int]]], call_kwargs: dict[str, Any],
              on_run: Callable[[int, str, int], None] | None, start_call: Callable[[], Any] | None = None,
              ) -> Iterator[tuple[int, tuple[str, int], Any, float]]:
    """Call the pipeline once per `(index, (prompt, seed))` of `runs`: `on_run` first, then `start_call()` (the
    hooks' call start), and yield `(index, (prompt, seed), output, seconds the pipeline call took)`."""
    for i, (prompt, seed) in runs:
        if on_run:
            on_run(i, prompt, seed)
        if start_call:
            start_call()
        t0 = time.perf_counter()
        out = pipe(prompt=prompt, generator=generator_for(seed), **call_kwargs)
        yield i, (prompt, seed), out, time.perf_counter() - t0


@dataclass
class _Job:
    """What a calibration records besides its curves."""

    pipe: Any
    call_kwargs: dict[str, Any]
    plain_args: dict[str, Any]
    provenance: list[InputFile]
    components: dict[str, str] | None
    model_id: str
    revision: str | None
    dtype: str | None
    device: str | None
    defaults: dict[str, Any] | None

    @property
    def steps(self) -> int | None:
        return self.call_kwargs.get("num_inference_steps")


class _Done:
    """The finished runs of a calibration: their pairs, outputs, pipeline time, and each hook's records and
    reports after the last of them (to forget an interrupted run)."""

    def __init__(self, hooks: list[StackHooks]):
        self.hooks, self.pairs, self.outputs, self.wall = hooks, [], [], 0.0
        self._sizes = [(0, 0)] * len(hooks)

    def add(self, pair: tuple[str, int], output: Any, wall: float) -> None:
        self.wall += wall
        if output is not None:
            self.outputs.append(output)
        self.pairs.append(pair)
        self._sizes = [(len(h.strategy.records), len(h.reports)) for h in self.hooks]

    def forget_interrupted(self) -> None:
        for h, (n_records, n_reports) in zip(self.hooks, self._sizes):
            del h.strategy.records[n_records:], h.reports[n_reports:]


def _result(job: _Job, all_hooks, prompts, seeds, wall, runs, outputs, source: str | None = None) -> CalibrationResult:
    """The profile (and summary) from the hooks' records of the runs that finished."""
    used = [h for h in all_hooks if any(r.calls for r in h.reports)]
    pipe, kw, denoiser = job.pipe, job.call_kwargs, all_hooks[0].denoiser
    if not used:
        raise MagCacheError(f"{type(pipe).__name__} never called its transformer",
                            hint="check the call arguments (e.g. `num_inference_steps`) and that the pipeline denoises")
    branches, stack_paths, guidance_mode = _branches(used)
    steps = len(next(iter(branches.values())).ratios)
    config = dict(getattr(denoiser, "config", {}) or {})
    profile = validated(Profile(
        model=ModelInfo(id=job.model_id, revision=job.revision, pipeline_class=type(pipe).__name__,
                        transformer_class=type(denoiser).__name__, config_fingerprint=config_fingerprint(config),
                        stack=stack_paths, components=dict(job.components or {}),
                        **setup_provenance(pipe)),
        scheduler=scheduler_info(pipe.scheduler),
        calibration=Calibration(
            steps=steps, guidance_mode=guidance_mode.value, guidance_scale=kw.get("guidance_scale"),
            height=kw.get("height"), width=kw.get("width"),
            num_frames=kw.get("num_frames"), negative_prompt=kw.get("negative_prompt"),
            call_args={k: v for k, v in job.plain_args.items() if k not in CALL_KEYS},
            inputs=job.provenance,
            prompts=list(prompts), seeds=[int(s) for s in seeds], dtype=job.dtype, device=job.device,
            created=datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            versions=versions()),
        branches=branches,
        defaults=Defaults(**{**DEFAULTS, **(job.defaults or {})}),
        source=source,
    ))
    calls = sum(r.calls for h in used for r in h.reports)
    return CalibrationResult(profile, used[0].spec, wall, runs, calls, outputs)
