"""Rendering of the quality commands: `run --compare`, `tune`, `schedule`."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from magcache_cli.cli.render.console import (
    _flags_of,
    _schedule_table,
    console,
    notice,
)
from magcache_cli.core.charts import timeline
from magcache_cli.core.rule import few_step_note


def _db(x: float | None) -> str:
    return "—" if x is None else ("identical" if x >= 100.0 else f"{x:.2f}")


def _dbu(x: float | None) -> str:
    return _db(x) + (" dB" if x is not None and x < 100.0 else "")


def _num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _passes(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.1f}"


def verdict(winner: str, passes: float, steps: int, cached_psnr: float, fewer_psnr: float) -> str:
    """The plain sentence that says whether caching beats running fewer steps at equal compute."""
    if winner == "cached":
        return (f"Caching wins: at {_passes(passes)} passes per run it is closer to the full uncached output than "
                f"running {steps} steps uncached (PSNR {_dbu(cached_psnr)} vs {_dbu(fewer_psnr)}).")
    if winner == "fewer_steps":
        return (f"Fewer steps win: {steps} uncached steps cost the same passes and are closer to the full output "
                f"than caching (PSNR {_dbu(fewer_psnr)} vs {_dbu(cached_psnr)}). Here, lowering --steps is the "
                f"better way to save compute.")
    return (f"A tie: caching and {steps} uncached steps are equally close to the full output at equal passes "
            f"(PSNR {_dbu(cached_psnr)} vs {_dbu(fewer_psnr)}).")


_WALL_NOTE = ("[yellow]Note:[/] a wall-time speedup above the pass speedup cannot come from skipping: the machine "
              "was busy while some runs were timed. Trust the pass counts; rerun on an idle machine for timings.")


def _speedup_line(passes: float, wall: float, note: str | None, timings) -> str:
    """The pass-count speedup first; the wall-time one only when the timings can be trusted, so a run that
    skips never reads as a slowdown because a neighbour was busy."""
    head = f"[bold]Speedup[/]: {passes:.2f}× fewer transformer passes"
    how = "" if timings is None else f" (median of {timings.repeats} interleaved repeats)"
    if note:
        return (f"{head}. [yellow]Wall time not reliable here[/]: {note}; rerun on an idle machine or with more "
                f"--repeats to measure it.")
    return f"{head}, {wall:.2f}× in wall time{how}"


def render_compare(cmp, paths: list[str], sheets: list[str]) -> None:
    c = console()
    ref, m, b = cmp.reference, cmp.cached, cmp.baseline
    s = cmp.settings
    c.print(f"[bold]Settings[/]: threshold {s.threshold}, max skips {s.max_skip_steps}, retention {s.retention_ratio}, "
            f"forecast {s.forecast:g}, branch policy {cmp.policy}")
    if m.schedule:
        c.print(_schedule_table(f"Schedule, {ref.steps} steps", ref.steps,
                                _flags_of(m.schedule, ref.steps)))
    lp = ref.lpips is not None
    c.print(f"[bold]Against the uncached output[/] ({len(cmp.prompts_seeds)} run(s); mean and worst over runs)")
    t = Table()
    cols = ["run", "steps", "passes", "wall/run", "PSNR dB", "worst", "SSIM"] + (["LPIPS"] if lp else [])
    for col in cols:
        t.add_column(col, justify="left" if col == "run" else "right")
    t.add_row("uncached", str(ref.steps), _passes(ref.passes), f"{ref.wall_s:.3f} s", "—", "—", "—", *(["—"] if lp else []))
    runs = [("cached", m)] if cmp.reuse is None else [(f"cached A={s.forecast:g}", m), ("cached A=0", cmp.reuse)]
    for name, x in (*runs, ("fewer steps", b)):  # A=0: the same schedule with plain reuse
        q = x.quality
        t.add_row(name, str(x.steps), _passes(x.passes), f"{x.wall_s:.3f} s", _db(q.psnr), _db(q.psnr_min),
                  _num(q.ssim), *([_num(q.lpips)] if lp else []))
    c.print(t)
    c.print(_speedup_line(cmp.speedup_passes, cmp.speedup_wall, cmp.wall_note, cmp.timings), soft_wrap=True)
    if ref.lpips_note:
        c.print(f"[dim]{ref.lpips_note}[/]")
    c.print(verdict(cmp.winner, m.passes, cmp.baseline_steps, m.quality.psnr, b.quality.psnr))
    for p in paths:
        c.print(f"Wrote [bold]{p}[/]")
    for p in sheets:
        c.print(f"Wrote [bold]{p}[/] (uncached | cached | fewer steps | |cached − uncached| × 4)")


def tune_table(result, rows) -> Table:
    ref = result.reference
    lp = ref.lpips is not None
    search = getattr(result, "goal", None) is not None
    head = ("[bold]Search[/], {} steps, up to {} run(s) per point (a point is dropped at its first miss); "
            if search else "[bold]Sweep[/], {} steps, {} run(s) per point; ")
    console().print(head.format(ref.steps, len(result.prompts) * len(result.seeds)) +
                    f"quality is the mean vs uncached; ★ chosen, ✓ meets "
                    f"{result.goal.describe() if search else result.target.describe()}; the last two "
                    f"columns: uncached at the steps that cost the same passes")
    t = Table()
    cols = ["", "E", "K", "R", "A", "passes", "×pass", "×wall", "PSNR", "SSIM"] + (["LPIPS"] if lp else [])
    cols += ["steps", "PSNR "] + (["runs"] if search else [])
    for col in cols:
        t.add_column(col, justify="right")
    from magcache_cli.profile.plan import equal_pass_steps

    for p in rows:
        q, s = p.measured.quality, p.settings
        ok = result.meets(p) if search else q.meets(**result.target.given())
        mark = "★" if p is result.chosen else "✓" if ok else ""
        k = min(ref.steps, equal_pass_steps(p.measured.passes, ref.per_step))
        base = result.baselines.get(k)
        cells = [mark, f"{s.threshold:g}", str(s.max_skip_steps), f"{s.retention_ratio:g}", f"{s.forecast:g}",
                 _passes(p.measured.passes), f"{p.speedup_passes:.2f}", f"{p.speedup_wall:.2f}", _db(q.psnr), _num(q.ssim)]
        cells += [_num(q.lpips)] if lp else []
        cells += [str(k), _db(base.quality.psnr)] if base else ["", ""]
        cells += [str(len(q.per_output))] if search else []
        t.add_row(*cells)
    return t


def render_tune(result, show_all: bool, written: str | None) -> None:
    from magcache_cli.quality.tune import distinct

    c = console()
    rows = [p for p in distinct(result.points) if show_all or p.pareto or p is result.chosen]
    n_distinct = len(distinct(result.points))
    c.print(tune_table(result, rows))
    if getattr(result, "goal", None) is not None:
        c.print(_search_line(result) + ("" if show_all else "; Pareto front shown (--all for every measured point)")
                + "[/]", soft_wrap=True)
    else:
        c.print(f"[dim]{len(result.points)} settings, {n_distinct} distinct (schedule, forecast) pairs, {result.runs} pipeline runs"
                + ("" if show_all else "; Pareto front shown (--all for every schedule)") + "[/]")
    if result.reference.lpips_note:
        c.print(f"[dim]{result.reference.lpips_note}[/]")
    if result.wall_note and result.timings is None:
        c.print(_WALL_NOTE, soft_wrap=True)
    ch = result.chosen
    if ch is None:
        return
    s, q = ch.settings, ch.measured.quality
    c.print(f"[bold]Chosen[/]: threshold {s.threshold:g}, max skips {s.max_skip_steps}, retention {s.retention_ratio:g}, "
            f"forecast {s.forecast:g} — {_passes(ch.measured.passes)} of {_passes(result.reference.passes)} passes per run "
            f"({ch.speedup_passes:.2f}× fewer" + ("" if result.wall_note else f", {ch.speedup_wall:.2f}× wall")
            + f"), PSNR {_dbu(q.psnr)} (worst {_dbu(q.psnr_min)}), "
            f"SSIM {_num(q.ssim)}")
    if result.wall_note:
        c.print(f"[yellow]Wall time not reliable here[/]: {result.wall_note}; the pass counts are exact. Rerun on "
                "an idle machine or with more --repeats to measure it.", soft_wrap=True)
    elif result.timings is not None:
        c.print(f"[dim]Wall time of the chosen setting: median of {result.timings.repeats} interleaved repeats "
                "(uncached, cached, fewer steps); the table's ×wall column is one timed pass per setting.[/]")
    steps, base = result.chosen_baseline
    from magcache_cli.quality.compare import closer

    if base is not None:
        c.print(verdict(closer(q, base.quality), ch.measured.passes, steps, q.psnr, base.quality.psnr))
    if getattr(result, "held", None):
        h = result.split(result.held)
        fs = h["fewer_steps"]
        c.print(f"Held-out runs ({h['runs']}, not used to steer the search): PSNR {_dbu(h['psnr'])} (worst "
                f"{_dbu(h['psnr_min'])})" + ("" if fs is None else f"; {fs['steps']} steps: {_dbu(fs['psnr'])}"),
                soft_wrap=True)
    if written:
        c.print(f"Wrote defaults to [bold]{written}[/] (evidence in defaults.tuned)")
    else:
        c.print("[dim]--dry-run: profile not written[/]")


def _search_line(result) -> str:
    b = "" if result.budget is None else f" of a budget of {result.budget}" + (" (spent)" if result.budget_spent else "")
    return (f"[dim]Search for {result.goal.describe()}: {len(result.points)} (schedule, forecast) candidates measured, "
            f"{result.dropped} dropped at their first miss; {result.runs} pipeline runs{b} "
            f"({result.reference_runs} for the uncached reference)")


def render_speedup(choice, steps: int) -> None:
    """The settings `--speedup` chose and what they are predicted to do (stderr under --json, like all notes)."""
    s, p = choice.settings, choice.prediction
    a = {"option": "", "profile": " (the profile's)", "default": " (default)"}[choice.forecast_from]
    console().print(f"[bold]Speedup {choice.asked:g}×[/]: threshold {s.threshold:g}, max skips {s.max_skip_steps}, "
                    f"retention {s.retention_ratio:g}, forecast {s.forecast:g}{a} — predicted {p.passes} of {p.total} "
                    f"passes at {steps} steps ({p.speedup:.2f}× fewer); of the {choice.reaching} settings that reach it, "
                    "the skips spread most evenly", soft_wrap=True)


def render_schedule(profile, steps: int, settings, pred: dict) -> None:
    c = console()
    cal = profile.calibration
    c.print(f"[bold]Settings[/]: threshold {settings.threshold:g}, max skips {settings.max_skip_steps}, "
            f"retention {settings.retention_ratio:g}, branch policy {pred.policy}; guidance {cal.guidance_mode}, "
            f"curves measured at {cal.steps} steps" + (f", resampled to {steps}" if steps != cal.steps else ""))
    c.print(_schedule_table(f"Predicted schedule, {steps} steps", steps, pred.flags))
    if (few := few_step_note(steps)) is not None:
        notice(few)
    c.print(f"[bold]Predicted passes[/]: {pred.passes} of {pred.total} per run "
            f"({pred.speedup:.2f}× fewer transformer passes)")


def render_schedule_sweep(profile, steps: int, rows: list[tuple[Any, dict]]) -> None:
    c = console()
    first = rows[0][0]
    c.print(f"[bold]Thresholds at {steps} steps[/] (max skips {first.max_skip_steps}, retention {first.retention_ratio:g}, "
            f"policy {rows[0][1].policy}): █ computed ░ skipped")
    t = Table()
    for col in ("threshold", "passes", "× fewer", "timeline"):
        t.add_column(col, justify="left" if col == "timeline" else "right")
    for s, pred in rows:
        lines = {timeline(f) for f in pred.flags.values()}
        tl = "\n".join(f"{lb}: {timeline(f)}" for lb, f in pred.flags.items()) if len(lines) > 1 else lines.pop()
        t.add_row(f"{s.threshold:g}", f"{pred.passes}/{pred.total}", f"{pred.speedup:.2f}", tl)
    c.print(t)
