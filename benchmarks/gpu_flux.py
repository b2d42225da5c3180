"""GPU benchmark: magcache vs diffusers' MagCacheConfig on a Flux-dev-sized transformer, eager and compiled.

    python benchmarks/gpu_flux.py                      # one H100/H200; writes $OUT/gpu_flux.json if OUT is set
    python benchmarks/gpu_flux.py --tiny --device cpu --dtype float32 --backend aot_eager --repeats 1   # smoke test

What runs: a `FluxTransformer2DModel` with FLUX.1-dev's config (19 double + 38 single blocks, 24 heads x 128,
~11.9 B parameters) and random bf16 weights, called by a minimal Flux sampling loop (random prompt embeddings
of the right shapes: 512 T5 tokens x 4096, pooled 768; `FlowMatchEulerDiscreteScheduler` with Flux's shift;
1024x1024 = 4,096 image tokens; 28 steps; distilled guidance, so one transformer call per step). The skip
schedule depends only on the profile, so diffusers' FLUX.1-dev curve (`FLUX_MAG_RATIOS`) gives the same
schedule and step cost as the real checkpoint would. No text encoder or VAE runs.

Configurations, each timed as the median of `--repeats` full 28-step loops (after one warm-up loop, CUDA
synchronised), interleaved round by round:

* eager: no cache; magcache calibrate mode; magcache cached at 0.06/K3, 0.12/K4, 0.24/K5 (R 0.2);
  diffusers `MagCacheConfig` calibrate mode and cached at the same settings, in the same process;
* compiled (`transformer.compile_repeated_blocks(fullgraph=True)`, `--backend`, default inductor): no cache and
  magcache cached at the three settings; diffusers' hook on the same compiled model is tried too and its error
  (if any) recorded; `--diffusers-fullgraph-false` also times diffusers with `fullgraph=False` (one more compile).

Figures: calibration overhead = calibrate / no-cache - 1; efficiency = (no-cache / cached) / (28 / computed),
against the eager no-cache loop for eager rows and the compiled no-cache loop for compiled rows; peak memory =
`torch.cuda.max_memory_allocated` during the loop. Targets (ANCHORS.md, diffusers on an H200): eager
efficiency >= 0.995, calibration overhead <= 0.3%, compiled cached >= 0.97 of (compiled step x computed steps).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

SETTINGS = [(0.06, 3), (0.12, 4), (0.24, 5)]
RETENTION = 0.2
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
TINY = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=32,
            num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(8, 12, 12))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--size", type=int, default=1024, help="image side in pixels (tokens = (size/16)^2)")
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--backend", default="inductor", help="torch.compile backend for the compiled rows")
    p.add_argument("--tiny", action="store_true", help="a 3-block transformer (smoke test of this script)")
    p.add_argument("--no-compile", action="store_true", help="eager rows only")
    p.add_argument("--no-diffusers", action="store_true", help="leave out diffusers' MagCacheConfig rows")
    p.add_argument("--diffusers-fullgraph-false", action="store_true",
                   help="also time diffusers' hook under compile_repeated_blocks(fullgraph=False)")
    p.add_argument("--json-out", type=Path, default=None, help="default: $OUT/gpu_flux.json when OUT is set")
    return p.parse_args(argv)


# ---- the model and a minimal sampling loop ------------------------------------------------------------------

def build_transformer(args):
    from diffusers import FluxTransformer2DModel

    dtype = getattr(torch, args.dtype)
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)  # parameters are created in the target dtype directly on the device
    try:
        with torch.device(args.device):
            model = FluxTransformer2DModel(**(TINY if args.tiny else FLUX_DEV))
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


class MiniFlux:
    """What FluxPipeline does per step, with random prompt embeddings; `transformer` and `scheduler` are the
    attributes magcache hooks (and `__call__(prompt=, generator=, num_inference_steps=)` what it calls)."""

    def __init__(self, transformer, args):
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.flux.pipeline_flux import FluxPipeline, calculate_shift

        self.transformer = transformer
        self.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                         max_shift=1.15, base_image_seq_len=256,
                                                         max_image_seq_len=4096)
        cfg = transformer.config
        dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
        self.device, self.dtype = dev, dtype
        side = args.size // 16  # VAE /8, then 2x2 packing
        self.tokens = side * side
        self.channels = cfg.in_channels
        g = torch.Generator().manual_seed(1)
        self.prompt_embeds = torch.randn(1, args.text_tokens, cfg.joint_attention_dim, generator=g).to(dev, dtype)
        self.pooled = torch.randn(1, cfg.pooled_projection_dim, generator=g).to(dev, dtype)
        self.txt_ids = torch.zeros(args.text_tokens, 3, device=dev, dtype=dtype)
        self.img_ids = FluxPipeline._prepare_latent_image_ids(1, side, side, dev, dtype)
        self.guidance = torch.full([1], 3.5, device=dev, dtype=torch.float32)
        self.mu = calculate_shift(self.tokens, 256, 4096, 0.5, 1.15)

    @torch.no_grad()
    def __call__(self, prompt=None, generator=None, num_inference_steps=28, **_):
        n = int(num_inference_steps)
        gen = generator or torch.Generator().manual_seed(0)
        latents = torch.randn(1, self.tokens, self.channels, generator=gen).to(self.device, self.dtype)
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=self.mu, device=self.device)
        for t in self.scheduler.timesteps:
            timestep = t.expand(1).to(self.dtype)
            noise = self.transformer(hidden_states=latents, timestep=timestep / 1000, guidance=self.guidance,
                                     pooled_projections=self.pooled, encoder_hidden_states=self.prompt_embeds,
                                     txt_ids=self.txt_ids, img_ids=self.img_ids, return_dict=False)[0]
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
        return latents


# ---- configurations -----------------------------------------------------------------------------------------

class Row:
    """One configuration: `enter()` before each timed loop, `leave()` after it (returns computed passes)."""

    def __init__(self, name, group, enter=None, leave=None, computed=None):
        self.name, self.group, self._enter, self._leave = name, group, enter, leave
        self.times: list[float] = []
        self.peaks: list[int] = []
        self.computed = computed
        self.error: str | None = None

    def run(self, pipe, steps: int) -> None:
        cuda = pipe.device.type == "cuda"
        if self._enter:
            self._enter()
        try:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # diffusers' calibrate mode prints its ratios
                pipe(prompt="", generator=torch.Generator().manual_seed(0), num_inference_steps=steps)
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - t0)
            if cuda:
                self.peaks.append(torch.cuda.max_memory_allocated())
        finally:
            if self._leave:
                got = self._leave()
                if got is not None:
                    self.computed = got

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def magcache_profile(pipe, steps: int):
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    from magcache_cli.profile.schema import BranchCurves
    from magcache_cli.runner.calibrate import calibrate

    profile = calibrate(pipe, ["random embeddings"], [0], {"num_inference_steps": 2}, model_id="flux-dev-sized-random").profile
    curve = [float(v) for v in FLUX_MAG_RATIOS.tolist()]
    profile.branches = {"main": BranchCurves(ratios=curve)}
    profile.calibration.steps = len(curve)
    return profile


def magcache_rows(pipe, profile, steps, group, calibrate=True):
    from magcache_cli import api
    from magcache_cli.core.recording import RecordingHooks

    rows = []
    if calibrate:
        hooks = RecordingHooks(pipe, "transformer", expected_batch=1)

        def enter():
            hooks.install()
            hooks.start_call(steps)

        rows.append(Row("magcache calibrate", group, enter, lambda: (hooks.remove(), hooks.reports[-1].computed_calls)[1]))
    for thr, k in SETTINGS:
        cache = api.apply(pipe, profile, threshold=thr, max_skip_steps=k, retention_ratio=RETENTION)
        cache.remove()

        def leave(cache=cache):
            computed = cache.report.computed_calls
            cache.remove()
            return computed

        rows.append(Row(f"magcache {thr:.2f} K{k}", group, cache.apply, leave))
    return rows


def diffusers_rows(pipe, steps, group, calibrate=True):
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS, MagCacheConfig

    from magcache_cli.core import rule as ratios

    t = pipe.transformer
    curve = [float(v) for v in FLUX_MAG_RATIOS.tolist()]
    rows = []

    def make(config, computed):
        return Row(("diffusers calibrate" if config.calibrate else f"diffusers {config.threshold:.2f} K{config.max_skip_steps}"),
                   group, lambda: t.enable_cache(config), t.disable_cache, computed)

    if calibrate:
        rows.append(make(MagCacheConfig(calibrate=True, num_inference_steps=steps), steps))
    for thr, k in SETTINGS:
        # same rule as diffusers' hook (retention, accumulated error, K); counted, not observed, so that no
        # counting hook enters compiled code
        sched = ratios.simulate({"main": curve}, steps, ratios.SkipSettings(thr, k, RETENTION))["main"]
        rows.append(make(MagCacheConfig(threshold=thr, max_skip_steps=k, retention_ratio=RETENTION,
                                        num_inference_steps=steps, mag_ratios=FLUX_MAG_RATIOS), sum(sched)))
    return rows


def measure(rows, pipe, steps, repeats, log):
    live = []
    for row in rows:  # warm-up (and compilation): a row that raises is recorded and left out
        t0 = time.perf_counter()
        try:
            row.run(pipe, steps)
            row.times.clear()
            row.peaks.clear()
            live.append(row)
            log(f"warm-up {row.group}/{row.name}: {time.perf_counter() - t0:.1f}s")
        except Exception as e:  # noqa: BLE001 - the error is a result (diffusers + fullgraph)
            row.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            log(f"{row.group}/{row.name}: {row.error}")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
    for rnd in range(repeats):
        for row in live:
            row.run(pipe, steps)
        log(f"round {rnd + 1}/{repeats}: " + ", ".join(f"{r.name} {r.times[-1]:.3f}s" for r in live))


def summarise(rows, steps):
    out = []
    base = {}
    for r in rows:
        if r.name == "no cache" and r.times:
            base[r.group] = r.median
    for r in rows:
        d = {"group": r.group, "config": r.name, "computed": r.computed or steps, "total": steps}
        if r.error:
            d["error"] = r.error
            out.append(d)
            continue
        d.update(median_s=round(r.median, 4), times_s=[round(x, 4) for x in r.times],
                 peak_mem_gib=round(max(r.peaks) / 2**30, 3) if r.peaks else None)
        b = base.get(r.group)
        if b and r.name != "no cache":
            if "calibrate" in r.name:
                d["overhead"] = round(r.median / b - 1, 5)
            elif r.computed:
                speedup, ideal = b / r.median, steps / r.computed
                d.update(speedup=round(speedup, 4), ideal=round(ideal, 4), efficiency=round(speedup / ideal, 4))
        out.append(d)
    return out


def print_table(rows, file=sys.stdout):
    print(f"{'group':<34} {'configuration':<22} {'time':>8} {'computed':>9} {'speedup':>8} {'efficiency':>10} {'peak GiB':>9}",
          file=file)
    for d in rows:
        if "error" in d:
            print(f"{d['group']:<34} {d['config']:<22} error: {d['error'][:90]}", file=file)
            continue
        extra = f"{d['speedup']:>7.3f}x {d['efficiency']:>10.4f}" if "efficiency" in d else (
            f"{'overhead':>8} {d['overhead'] * 100:>+9.2f}%" if "overhead" in d else f"{'':>8} {'':>10}")
        peak = f"{d['peak_mem_gib']:>9.2f}" if d.get("peak_mem_gib") is not None else ""
        print(f"{d['group']:<34} {d['config']:<22} {d['median_s']:>7.3f}s {d['computed'] or '':>4}/{d['total']:<4} {extra} {peak}",
              file=file)


def main(argv=None):
    args = parse_args(argv)

    def log(msg):
        print(f"# {msg}", file=sys.stderr, flush=True)

    import diffusers

    from magcache_cli.core.compile import compile_pipeline, graph_count

    t0 = time.perf_counter()
    transformer = build_transformer(args)
    pipe = MiniFlux(transformer, args)
    n_params = sum(p.numel() for p in transformer.parameters())
    log(f"built {n_params / 1e9:.2f} B params in {time.perf_counter() - t0:.1f}s; {pipe.tokens}+{args.text_tokens} tokens")
    profile = magcache_profile(pipe, args.steps)
    steps = args.steps

    eager = [Row("no cache", "eager")] + magcache_rows(pipe, profile, steps, "eager")
    if not args.no_diffusers:
        eager += diffusers_rows(pipe, steps, "eager")
    measure(eager, pipe, steps, args.repeats, log)
    rows = eager

    graphs = {}
    if not args.no_compile:
        group = f"compiled ({args.backend}, fullgraph)"
        compile_pipeline(pipe, "repeated", fullgraph=True, backend=args.backend)
        compiled = [Row("no cache", group)] + magcache_rows(pipe, profile, steps, group, calibrate=True)
        measure(compiled, pipe, steps, args.repeats, log)
        graphs["after magcache rows"] = graph_count()
        rows += compiled
        if not args.no_diffusers:
            tried = diffusers_rows(pipe, steps, group, calibrate=False)[:1]
            measure(tried, pipe, steps, args.repeats, log)
            rows += tried
        if args.diffusers_fullgraph_false and not args.no_diffusers:
            torch._dynamo.reset()
            group = f"compiled ({args.backend}, fullgraph=False)"
            compile_pipeline(pipe, "repeated", fullgraph=False, backend=args.backend)
            loose = [Row("no cache", group)] + diffusers_rows(pipe, steps, group, calibrate=False)[:1]
            measure(loose, pipe, steps, args.repeats, log)
            rows += loose

    table = summarise(rows, steps)
    print_table(table)
    dev = torch.cuda.get_device_name() if pipe.device.type == "cuda" else "cpu"
    result = {"benchmark": "gpu_flux", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "command": " ".join(["python", *sys.argv]), "device": dev, "torch": torch.__version__,
              "diffusers": diffusers.__version__, "params": n_params, "image_tokens": pipe.tokens,
              "text_tokens": args.text_tokens, "steps": steps, "dtype": args.dtype, "repeats": args.repeats,
              "profile": "diffusers FLUX_MAG_RATIOS", "retention_ratio": RETENTION, "graphs": graphs, "rows": table}
    out = args.json_out or (Path(os.environ["OUT"]) / "gpu_flux.json" if os.environ.get("OUT") else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
