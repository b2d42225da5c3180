"""CPU benchmark: what skipping saves on a compute-bound Flux pipeline, and what calibration costs.

    .venv/bin/python benchmarks/cpu_bench.py --repeats 5 --json-out benchmarks/results/cpu.json

The pipeline is a real diffusers `FluxPipeline` (tiny CLIP/T5 text encoders and VAE from
`magcache_cli.tiny`) whose transformer is replaced by a `FluxTransformer2DModel` big enough that the block
stack dominates a step on CPU (default: width 512 = 8 heads x 64, 3 double-stream + 6 single-stream blocks,
53.2 M parameters of which 52.0 M in the blocks, 128x128 pixels = 1,024 image tokens + 12 text tokens; random
weights, float32). With fewer blocks the layers outside the stack (embeddings, rotary tables, final norm and
projection, ~6 ms a step here) and the text encoders + VAE (~0.13 s a call) weigh several percent, and the
efficiency measures the pipeline rather than the skipping. The profile is
diffusers' FLUX.1-dev curve (`FLUX_MAG_RATIOS`, 28 steps, one branch: no true CFG), so the skip schedule is
fixed and known: 14 / 12 / 10 computed steps of 28 at thresholds 0.06 / 0.12 / 0.24 (K 3 / 4 / 5, R 0.2).

Every figure is the median over `--repeats` timed pipeline calls (after one warm-up call per configuration),
with the configurations interleaved in each round (in a shuffled order) so that drift on a shared machine
hits all of them alike. Each call also records how many cores other processes kept busy meanwhile (from
/proc/stat); calls with more than 0.25 such cores are left out of the medians when at least 3 calls remain.

* glibc malloc is told to keep freed memory (`keep_freed_memory`; `--default-malloc` to compare): otherwise
  page faults on re-allocated activations cost ~8% of a call on this VM and dominate the noise
* wall = median wall time of a call; cpu = median process CPU time of the same calls (with one torch thread
  this leaves out the time the process waits while a neighbour holds the core; both are reported)
* calibration overhead = median(calibrate-mode call) / median(no-cache call) - 1
* speedup = median(no-cache call) / median(cached call); ideal = total passes / computed passes
* efficiency = speedup / ideal (1.0: a skipped step costs nothing)
* memory: peak bytes held by torch tensors during one call (torch profiler, allocations made during the call),
  cached vs no-cache, next to the size of one residual and of the residual cache per branch.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

THRESHOLDS = [(0.06, 3), (0.12, 4), (0.24, 5)]
FORECAST = 0.5  # one more configuration: the last threshold with the residual forecast (same schedule)
RETENTION = 0.2
PROMPT = "a cat playing chess"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on shared cores a busy neighbour stalls OpenMP barriers, "
                        "which made small ops 10-20x slower with 2 threads here)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per configuration (median reported)")
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--width", type=int, default=512, help="transformer hidden size (multiple of 64)")
    p.add_argument("--double", type=int, default=3, help="double-stream blocks")
    p.add_argument("--single", type=int, default=6, help="single-stream blocks")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (tokens = (size/4)^2)")
    p.add_argument("--no-memory", action="store_true", help="skip the profiler memory measurement")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc as it is (by default freed memory stays in the process, see keep_freed_memory)")
    p.add_argument("--json-out", type=Path, default=None)
    return p.parse_args(argv)


def machine() -> dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    import diffusers

    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "torch": torch.__version__, "diffusers": diffusers.__version__, "threads": torch.get_num_threads()}


def keep_freed_memory() -> bool:
    """Keep freed memory in the process (glibc `mallopt`), so that timings measure compute, not page faults.

    With glibc's defaults the ~170 MB of activations of a step go back to the OS when freed and are faulted in
    again at the next step: 1.2 M minor page faults per no-cache call here, ~8% of the call on this VM and a
    large source of run-to-run noise. It applies to every configuration alike. False if not glibc.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def build_pipeline(args, workdir: Path):
    """The tiny offline Flux pipeline with a compute-bound transformer swapped in."""
    from diffusers import FluxTransformer2DModel

    from magcache_cli.runner.loading import LoadOptions, load_pipeline
    from magcache_cli.testing.tiny import build_tiny_pipeline

    build_tiny_pipeline("flux-nocfg", workdir / "flux", seed=0)
    pipe, _, _ = load_pipeline(LoadOptions(str(workdir / "flux"), dtype="float32", device="cpu"))
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=args.double, num_single_layers=args.single,
        attention_head_dim=64, num_attention_heads=args.width // 64, joint_attention_dim=32,
        pooled_projection_dim=32, guidance_embeds=False, axes_dims_rope=(16, 24, 24),
    ).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised gates/outputs would make the blocks identities
        for prm in transformer.parameters():
            if not prm.any():
                prm.normal_(0.0, 0.02, generator=gen)
    pipe.register_modules(transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(args) -> dict:
    return dict(num_inference_steps=args.steps, height=args.size, width=args.size, guidance_scale=3.5,
                max_sequence_length=12, output_type="np")


def fixed_profile(pipe, args):
    """A profile of this pipeline whose curve is diffusers' FLUX.1-dev curve (fixed, not measured here)."""
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    from magcache_cli.profile.schema import BranchCurves
    from magcache_cli.runner.calibrate import calibrate

    short = {**call_kwargs(args), "num_inference_steps": 2}
    profile = calibrate(pipe, [PROMPT], [0], short, model_id="cpu-bench").profile
    assert list(profile.branches) == ["main"], profile.branches
    curve = [float(v) for v in FLUX_MAG_RATIOS.tolist()]
    profile.branches = {"main": BranchCurves(ratios=curve)}
    profile.calibration.steps = len(curve)
    return profile


class Config:
    """One way of calling the pipeline; `enter`/`leave` install and remove its hooks around each call."""

    def __init__(self, name, enter=None, leave=None):
        self.name, self._enter, self._leave = name, enter, leave
        self.times: list[float] = []  # wall seconds
        self.cpu: list[float] = []  # process CPU seconds (one torch thread: immune to being descheduled)
        self.others: list[float] = []  # cores busy with other processes during the call (from /proc/stat)
        self.faults: list[int] = []  # minor page faults during the call
        self.passes: tuple[int, int] | None = None  # (computed, total) denoiser passes
        self.residual_bytes: dict[str, int] = {}

    def call(self, pipe, kwargs) -> tuple[float, float, float]:
        if self._enter:
            self._enter()
        try:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            b0, t0, c0 = _busy_seconds(), time.perf_counter(), time.process_time()
            pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **kwargs)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            self.last_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            return wall, cpu, max(0.0, (_busy_seconds() - b0 - cpu) / wall)
        finally:
            if self._leave:
                self._leave(self)

    def quiet(self, values: list[float]) -> list[float]:
        """The calls during which other processes kept less than QUIET cores busy (all, if fewer than 3)."""
        kept = [v for v, o in zip(values, self.others) if o < QUIET]
        return kept if len(kept) >= 3 else values

    @property
    def median(self) -> float:
        return statistics.median(self.quiet(self.times))

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.quiet(self.cpu))


QUIET = 0.25  # cores used by other processes; above it a call is left out of the medians (if 3 remain)


def _busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (user+nice+system+irq+softirq), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:8]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def make_configs(pipe, profile, args) -> list[Config]:
    from magcache_cli import api
    from magcache_cli.core.recording import RecordingHooks

    configs = [Config("no cache")]
    calib = RecordingHooks(pipe, "transformer", expected_batch=1)

    def calib_enter():
        calib.install()
        calib.start_call(args.steps)

    def calib_leave(cfg):
        r = calib.reports[-1]
        cfg.passes = (r.computed_calls, r.calls)
        calib.remove()

    configs.append(Config("calibrate mode", calib_enter, calib_leave))
    for thr, k, a in [(thr, k, 0.0) for thr, k in THRESHOLDS] + [(*THRESHOLDS[-1], FORECAST)]:
        cache = api.apply(pipe, profile, threshold=thr, max_skip_steps=k, retention_ratio=RETENTION, forecast=a)
        cache.remove()

        def leave(cfg, cache=cache):
            r = cache.report
            cfg.passes = (r.computed_calls, r.calls)
            cfg.residual_bytes = cache.hooks.held_bytes()
            cache.remove()

        configs.append(Config(f"cached {thr:.2f} K{k}" + (f" A{a:g}" if a else ""), cache.apply, leave))
    return configs


def peak_torch_bytes(fn) -> int:
    """Peak bytes of torch CPU tensors allocated during `fn()` and alive at once (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        events = json.load(open(f.name))["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    return max([0, *totals])


def main(argv=None) -> dict:
    args = parse_args(argv)
    malloc = "glibc default" if args.default_malloc else ("freed memory kept (mallopt)" if keep_freed_memory()
                                                           else "default (mallopt unavailable)")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline(args, Path(tmp))
    t = pipe.transformer
    tokens = (args.size // 4) ** 2
    model = {"class": type(t).__name__, "params": sum(p.numel() for p in t.parameters()), "width": args.width,
             "double_blocks": args.double, "single_blocks": args.single, "image_tokens": tokens, "text_tokens": 12,
             "size": args.size, "steps": args.steps, "dtype": "float32"}
    print(f"# {model['class']}: {model['params'] / 1e6:.1f} M params, width {args.width}, {args.double}+{args.single} "
          f"blocks, {tokens}+12 tokens, {args.steps} steps, {args.threads} threads", file=sys.stderr)
    profile = fixed_profile(pipe, args)
    kwargs = call_kwargs(args)
    configs = make_configs(pipe, profile, args)
    for cfg in configs:  # warm-up: first calls, stack discovery of each hooks set
        cfg.call(pipe, kwargs)
    order = random.Random(0)
    for rnd in range(args.repeats):
        shuffled = configs[:]
        order.shuffle(shuffled)  # no configuration always follows the same one
        for cfg in shuffled:
            wall, cpu, others = cfg.call(pipe, kwargs)
            cfg.times.append(wall)
            cfg.cpu.append(cpu)
            cfg.others.append(others)
            cfg.faults.append(cfg.last_faults)
        print(f"# round {rnd + 1}/{args.repeats}: " + ", ".join(
            f"{c.name} {c.times[-1]:.2f}s (others {c.others[-1]:.2f})" for c in shuffled), file=sys.stderr)

    base, base_cpu = configs[0].median, configs[0].cpu_median
    rows = []
    for cfg in configs:
        computed, total = cfg.passes or (args.steps, args.steps)
        row = {"config": cfg.name, "median_s": round(cfg.median, 4), "min_s": round(min(cfg.times), 4),
               "cpu_median_s": round(cfg.cpu_median, 4), "times_s": [round(x, 4) for x in cfg.times],
               "cpu_s": [round(x, 4) for x in cfg.cpu], "others_cores": [round(x, 3) for x in cfg.others],
               "quiet_calls": len(cfg.quiet(cfg.times)), "minor_faults": cfg.faults, "computed": computed,
               "total": total}
        if cfg.name == "calibrate mode":
            row["overhead"] = round(cfg.median / base - 1, 4)
            row["overhead_cpu"] = round(cfg.cpu_median / base_cpu - 1, 4)
        elif cfg.name.startswith("cached"):
            speedup, ideal = base / cfg.median, total / computed
            row.update(speedup=round(speedup, 4), ideal=round(ideal, 4), efficiency=round(speedup / ideal, 4),
                       efficiency_cpu=round(base_cpu / cfg.cpu_median / ideal, 4), residual_bytes=cfg.residual_bytes)
        rows.append(row)

    memory = None
    if not args.no_memory:
        residual = tokens * args.width * 4
        cached, forecast = configs[-2], configs[-1]
        nocache_peak = peak_torch_bytes(lambda: configs[0].call(pipe, kwargs))
        cached_peak = peak_torch_bytes(lambda: cached.call(pipe, kwargs))
        forecast_peak = peak_torch_bytes(lambda: forecast.call(pipe, kwargs))
        from magcache_cli import api

        fresh = api.apply(pipe, profile, threshold=THRESHOLDS[-1][0], max_skip_steps=THRESHOLDS[-1][1],
                          retention_ratio=RETENTION)
        fresh.remove()
        first = Config("first call", fresh.apply, lambda cfg: fresh.remove())
        first_peak = peak_torch_bytes(lambda: first.call(pipe, kwargs))
        memory = {"residual_bytes": residual, "branches": len(cached.residual_bytes),
                  "cache_bytes_per_branch": cached.residual_bytes,
                  "peak_nocache_bytes": nocache_peak, "peak_cached_bytes": cached_peak,
                  "peak_delta_bytes": cached_peak - nocache_peak,
                  "forecast_bytes_per_branch": forecast.residual_bytes, "peak_forecast_bytes": forecast_peak,
                  "peak_forecast_delta_bytes": forecast_peak - nocache_peak,
                  "peak_first_call_bytes": first_peak}

    result = {"benchmark": "cpu_bench", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), "model": model,
              "profile": "diffusers FLUX_MAG_RATIOS (28 steps, branch main)", "retention_ratio": RETENTION,
              "repeats": args.repeats, "malloc": malloc, "quiet_threshold_cores": QUIET, "rows": rows, "memory": memory}
    print_table(result)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def print_table(result: dict) -> None:
    print(f"{'configuration':<18} {'wall':>8} {'cpu':>8} {'computed':>9} {'speedup':>8} {'ideal':>6} "
          f"{'efficiency':>10} {'(cpu)':>6}")
    for r in result["rows"]:
        extra = ""
        if "efficiency" in r:
            extra = f"{r['speedup']:>7.3f}x {r['ideal']:>5.2f}x {r['efficiency']:>10.3f} {r['efficiency_cpu']:>6.3f}"
        elif "overhead" in r:
            extra = f"{'overhead':>8} {'':>6} {r['overhead'] * 100:>+9.2f}% {r['overhead_cpu'] * 100:>+5.2f}%"
        print(f"{r['config']:<18} {r['median_s']:>7.3f}s {r['cpu_median_s']:>7.3f}s {r['computed']:>4}/{r['total']:<4} {extra}")
    m = result["memory"]
    if m:
        mb = 1 / 2**20
        print(f"memory: peak no-cache {m['peak_nocache_bytes'] * mb:.1f} MiB, cached {m['peak_cached_bytes'] * mb:.1f} MiB "
              f"(delta {m['peak_delta_bytes'] * mb:+.2f} MiB); one residual {m['residual_bytes'] * mb:.2f} MiB; "
              f"cache per branch {', '.join(f'{k}: {v * mb:.2f} MiB' for k, v in m['cache_bytes_per_branch'].items())}; "
              f"with the forecast: peak {m['peak_forecast_bytes'] * mb:.1f} MiB (delta {m['peak_forecast_delta_bytes'] * mb:+.2f} MiB), "
              f"per branch {', '.join(f'{k}: {v * mb:.2f} MiB' for k, v in m['forecast_bytes_per_branch'].items())}; "
              f"first call of a fresh cache (stack discovery) {m['peak_first_call_bytes'] * mb:.1f} MiB")


if __name__ == "__main__":
    main()
