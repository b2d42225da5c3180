#!/usr/bin/env python
"""`--speedup X` and `tune` as a search, measured on the bundled demo model (issue 18).

    .venv/bin/python benchmarks/speedup_study.py             # writes benchmarks/results/speedup_study.{json,md}
    .venv/bin/python benchmarks/speedup_study.py --with-grid # also re-runs today's exhaustive grid tune (870 runs)

1. Calibrate the demo model (`magcache calibrate`, defaults: two digit prompts, seed 0).
2. **The speedup criterion.** For X in 1.5, 2, 2.5, 3: `profile.speedup.choose` (prediction only) picks a
   setting; then every distinct schedule of its grid at the same pass count is measured (with the chosen A) on
   the validation runs, to see where the choice ranks and how well the spread and the predicted error order them (Spearman);
   the chosen schedule is also measured with A in {0, 0.25, 0.5, 0.75}, and the uncached pipeline at the same
   passes (fewer steps).
3. **`--speedup` on held-out runs**: each choice on the ten digits × seeds 100–104 (50 runs), against fewer
   steps at equal passes.
4. **tune: search vs grid.** The search (`quality.tuning.search_tune`) with `--min-psnr 35` over the grid of
   the documented grid run (E 0.06…0.48 × K 2,3,4,6,8 × R 0.1 × A 0…0.75, 100 settings), and with the default
   target (beat fewer steps by 0.5 dB) over the default 360-setting grid, on the ten digits × seed 0 (as the
   grid run), each choice re-measured on the 50 held-out runs. `--with-grid` re-runs the exhaustive grid
   (`quality.tune.tune`, what `tune --grid` runs) for the run count and its choice's held-out numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from magcache_cli.core.rule import SkipSettings  # noqa: E402
from magcache_cli.profile import speedup as sp  # noqa: E402
from magcache_cli.profile.io import load_profile  # noqa: E402
from magcache_cli.profile.plan import equal_pass_steps  # noqa: E402
from magcache_cli.quality import compare as quality  # noqa: E402
from magcache_cli.quality.metrics import measure  # noqa: E402
from magcache_cli.quality.search import Goal  # noqa: E402
from magcache_cli.quality.tune import Grid, Target  # noqa: E402
from magcache_cli.quality.tune import tune as grid_tune  # noqa: E402
from magcache_cli.quality.tuning import search_tune  # noqa: E402

SPEEDUPS = (1.5, 2.0, 2.5, 3.0)
STUDY_GRID = Grid(thresholds=(0.06, 0.12, 0.24, 0.32, 0.48), max_skip_steps=(2, 3, 4, 6, 8), retention_ratios=(0.1,))


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def spearman(xs, ys) -> float | None:
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    if len(xs) < 3:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / den if den else None


class Held:
    """Uncached reference outputs of a fixed set of runs, and measurements against them."""

    def __init__(self, pipe, prof, prompts, seeds, call):
        self.pipe, self.prof, self.prompts, self.seeds, self.call = pipe, prof, prompts, seeds, call
        self.ref = quality.reference(pipe, prompts, seeds, call)
        self.runs = len(prompts) * len(seeds)

    def cached(self, s: SkipSettings):
        return quality.cached(self.pipe, self.prof, self.ref, self.prompts, self.seeds, self.call, s)[0]

    def fewer(self, passes: float):
        k = min(self.ref.steps, equal_pass_steps(passes, self.ref.per_step))
        return k, quality.fewer_steps(self.pipe, self.ref, self.prompts, self.seeds, self.call, k)[0]


def criterion(prof, val: Held, steps: int) -> tuple[list, list[str]]:
    from magcache_cli.quality.search import _schedule_key

    data = []
    lines = ["### The speedup criterion: where the predicted choice ranks among all schedules at its pass count", "",
             f"Validation runs: {val.runs} ({len(val.prompts)} digits × seed {val.seeds[0]}, not calibrated on). "
             "Every distinct schedule of the speedup grid at the chosen pass count measured with the chosen A.", "",
             row(["asked", "chosen (E, K, R, A)", "passes", "its PSNR", "best at same passes (E, K, R)", "best PSNR",
                  "rank", "schedules", "Spearman(−spread, PSNR)", "Spearman(−error, PSNR)", "A 0", "A 0.25", "A 0.5", "A 0.75", "fewer steps PSNR"]),
             row(["---"] * 15)]
    for x in SPEEDUPS:
        ch = sp.choose(prof, steps, x)
        a, passes = ch.settings.forecast, ch.prediction.passes
        same = {}
        for c in sp.candidates(prof, steps, a):
            if c.prediction.passes == passes:
                key = _schedule_key(c.prediction.flags)
                if key not in same or c.rank() < same[key].rank():
                    same[key] = c
        measured = [(c, val.cached(c.settings).quality.psnr) for c in same.values()]
        mine = next(q for c, q in measured if _schedule_key(c.prediction.flags) == _schedule_key(ch.prediction.flags))
        best_c, best_q = max(measured, key=lambda t: t[1])
        rank = 1 + sum(q > mine + 1e-9 for _, q in measured)
        rho = spearman([-c.spread for c, _ in measured], [q for _, q in measured])
        rho_err = spearman([-c.error for c, _ in measured], [q for _, q in measured])
        by_a = {aa: (mine if aa == a else val.cached(SkipSettings(ch.settings.threshold, ch.settings.max_skip_steps,
                                                                  ch.settings.retention_ratio, aa)).quality.psnr)
                for aa in (0.0, 0.25, 0.5, 0.75)}
        k, fq = val.fewer(passes)
        s = ch.settings
        data.append({"asked": x, "chosen": ch.to_json(), "psnr": mine, "best": {"settings": best_c.settings.__dict__,
                     "psnr": best_q}, "rank": rank, "schedules": len(measured), "spearman": rho, "spearman_error": rho_err,
                     "by_forecast": by_a, "fewer_steps": {"steps": k, "psnr": fq.quality.psnr},
                     "all": [{"settings": c.settings.__dict__, "spread": c.spread, "error": c.error, "psnr": q}
                             for c, q in measured]})
        b = best_c.settings
        lines.append(row([f"{x:g}×", f"{s.threshold:g}, {s.max_skip_steps}, {s.retention_ratio:g}, {s.forecast:g}",
                          f"{passes}/{ch.prediction.total}", f"{mine:.2f}",
                          f"{b.threshold:g}, {b.max_skip_steps}, {b.retention_ratio:g}", f"{best_q:.2f}", rank,
                          len(measured), "—" if rho is None else f"{rho:.2f}",
                          "—" if rho_err is None else f"{rho_err:.2f}",
                          *[f"{by_a[aa]:.2f}" for aa in (0.0, 0.25, 0.5, 0.75)], f"{fq.quality.psnr:.2f} ({k})"]))
    return data, lines + [""]


def heldout_speedups(prof, held: Held, steps: int) -> tuple[list, list[str]]:
    data = []
    lines = [f"### `--speedup X` on {held.runs} held-out runs (ten digits × seeds {held.seeds[0]}–{held.seeds[-1]})", "",
             row(["asked", "settings (E, K, R, A)", "passes", "× fewer", "PSNR", "worst", "fewer steps", "its PSNR",
                  "its worst", "closer"]), row(["---"] * 10)]
    for x in SPEEDUPS:
        ch = sp.choose(prof, steps, x)
        m = held.cached(ch.settings)
        k, f = held.fewer(m.passes)
        s = ch.settings
        win = quality.closer(m.quality, f.quality)
        data.append({"asked": x, "chosen": ch.to_json(), "passes": m.passes, "quality": m.quality.to_json(),
                     "fewer_steps": {"steps": k, **f.quality.to_json()}, "closer": win})
        lines.append(row([f"{x:g}×", f"{s.threshold:g}, {s.max_skip_steps}, {s.retention_ratio:g}, {s.forecast:g}",
                          f"{m.passes:g}/{held.ref.passes:g}", f"{held.ref.passes / m.passes:.2f}",
                          f"{m.quality.psnr:.2f}", f"{m.quality.psnr_min:.2f}", k, f"{f.quality.psnr:.2f}",
                          f"{f.quality.psnr_min:.2f}", win]))
    return data, lines + [""]


def tune_rows(pipe, prof, prompts, call, held: Held, with_grid: bool) -> tuple[list, list[str]]:
    runs = [("search, --min-psnr 35, study grid", lambda: search_tune(pipe, prof, prompts, [0], call, Goal(min_psnr=35),
                                                                       STUDY_GRID, repeats=0)),
            ("search, default target (beat fewer steps by 0.5 dB), default grid",
             lambda: search_tune(pipe, prof, prompts, [0], call, Goal(beat_margin=0.5), Grid(), repeats=0)),
            ("search, --speedup 2, default grid",
             lambda: search_tune(pipe, prof, prompts, [0], call, Goal(speedup=2.0), Grid(), repeats=0))]
    if with_grid:
        runs.insert(0, ("grid (today), --min-psnr 35, study grid",
                        lambda: grid_tune(pipe, prof, prompts, [0], call, Target(min_psnr=35), STUDY_GRID, repeats=0)))
    data = []
    lines = ["### tune: search vs grid", "",
             f"Tuned on the ten digits × seed 0; held-out: {held.runs} runs (seeds {held.seeds[0]}–{held.seeds[-1]}).", "",
             row(["tune", "pipeline runs", "chosen (E, K, R, A)", "passes", "PSNR on its runs", "held-out PSNR",
                  "held-out worst", "fewer steps held-out", "elapsed"]), row(["---"] * 9)]
    for name, fn in runs:
        t0 = time.perf_counter()
        r = fn()
        el = time.perf_counter() - t0
        c = r.chosen
        if c is None:
            data.append({"tune": name, "runs": r.runs, "chosen": None})
            lines.append(row([name, r.runs, "none", "", "", "", "", "", f"{el:.0f} s"]))
            continue
        m = held.cached(c.settings)
        k, f = held.fewer(m.passes)
        s = c.settings
        data.append({"tune": name, "runs": r.runs, "elapsed_s": el, "chosen": s.__dict__, "passes": c.measured.passes,
                     "tune_quality": c.measured.quality.to_json(), "heldout": m.quality.to_json(),
                     "heldout_fewer_steps": {"steps": k, **f.quality.to_json()},
                     "evidence": r.evidence() if hasattr(r, "goal") else None})
        lines.append(row([name, r.runs, f"{s.threshold:g}, {s.max_skip_steps}, {s.retention_ratio:g}, {s.forecast:g}",
                          f"{c.measured.passes:g}/28", f"{c.measured.quality.psnr:.2f}", f"{m.quality.psnr:.2f}",
                          f"{m.quality.psnr_min:.2f}", f"{f.quality.psnr:.2f} ({k})", f"{el:.0f} s"]))
    return data, lines + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--with-grid", action="store_true")
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--val-seed", type=int, default=105, help="seed of the criterion's validation runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from magcache_cli.runner.loading import DEMO_CALL, LoadOptions, load_pipeline, quiet_libraries
    from magcache_cli.testing import digits

    quiet_libraries()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    prof_path = out / "speedup-demo.yaml"
    cmd = [sys.executable, "-m", "magcache_cli", "calibrate", "--out", str(prof_path), "--force"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    prof = load_profile(prof_path)
    pipe, _, _ = load_pipeline(LoadOptions("builtin:demo"))
    call, steps = dict(DEMO_CALL), DEMO_CALL["num_inference_steps"]
    prompts = [digits.prompt_for(d) for d in range(10)]
    t0 = time.perf_counter()
    report, md = {"call": call}, []
    val = Held(pipe, prof, [digits.prompt_for(d) for d in (0, 2, 5, 8)], [args.val_seed], call)
    report["criterion"], lines = criterion(prof, val, steps)
    md += lines
    held = Held(pipe, prof, prompts, args.eval_seeds, call)
    report["speedup_heldout"], lines = heldout_speedups(prof, held, steps)
    md += lines
    report["tune"], lines = tune_rows(pipe, prof, prompts, call, held, args.with_grid)
    md += lines
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    md += [f"Total: {report['elapsed_s']:.0f} s on a shared CPU, one torch thread."]
    (out / "speedup_study.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "speedup_study.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
