"""The one place that writes to the terminal: progress, tables, sparklines, timelines and `--json`."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from magcache_cli.core.charts import sparkline, timeline
from magcache_cli.core.rule import few_step_note

_state = {"json": False}
_consoles: dict[bool, Console] = {}


def set_json(enabled: bool) -> None:
    """With --json, stdout carries one JSON object and everything else goes to stderr."""
    _state["json"] = enabled


def console() -> Console:
    stderr = _state["json"]
    if stderr not in _consoles or _consoles[stderr].file is not (sys.stderr if stderr else sys.stdout):
        _consoles[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=False)
    return _consoles[stderr]


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    # escape: a message may hold brackets that are not markup, e.g. pip install 'magcache-cli[plot]'
    Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {escape(message)}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    console().print(f"[yellow]Warning:[/] {message}", soft_wrap=True)


def notice(message: str) -> None:
    console().print(f"[cyan]Note:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    console().print(message, soft_wrap=True)


@contextmanager
def progress(total: int, description: str) -> Iterator[Any]:
    """A progress bar over `total` units; yields an object with `.advance(n=1)` and `.describe(text)`."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console(), transient=True,
                   disable=not console().is_terminal)

    class _Handle:
        def advance(self, n: int = 1) -> None:
            bar.advance(task, n)

        def describe(self, text: str) -> None:
            bar.update(task, description=text)

    with bar:
        task = bar.add_task(description, total=total)
        yield _Handle()


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def curve_table(title: str, branches: dict[str, Any]) -> Table:
    """Per branch: min / mean / max ratio over steps 1.., and a sparkline of the curve."""
    t = Table(title=title, title_justify="left")
    for col in ("branch", "steps", "min", "mean", "max", "mean cos dist", "curve"):
        t.add_column(col, justify="right" if col not in ("branch", "curve") else "left")
    for label, b in branches.items():
        r = list(b.ratios)
        body = r[1:] or r
        cos = list(b.cos_dist) if getattr(b, "cos_dist", None) else []
        t.add_row(label, str(len(r)), _fmt(min(body)), _fmt(sum(body) / len(body)), _fmt(max(body)),
                  _fmt(sum(cos[1:]) / max(1, len(cos) - 1)) if cos else "—", sparkline(r))
    return t


def render_profile(profile, path: str | None = None) -> None:
    c = console()
    m, cal, d = profile.model, profile.calibration, profile.defaults
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("profile", path or "—"),
        ("model", f"{m.id}" + (f" @ {m.revision}" if m.revision else "")),
        ("pipeline", f"{m.pipeline_class} / {m.transformer_class}"),
        ("stack", " → ".join(m.stack) or "—"),
        ("scheduler", f"{profile.scheduler.class_name or '—'}"),
        ("calibration", f"{cal.steps} steps, guidance {cal.guidance_mode}"
         + (f" (scale {cal.guidance_scale})" if cal.guidance_scale is not None else "")
         + (f", {cal.width}×{cal.height}" if cal.width and cal.height else "")
         + (f", {cal.num_frames} frames" if cal.num_frames else "")),
        ("runs", f"{len(cal.prompts)} prompt(s) × {len(cal.seeds)} seed(s)"),
        ("measured on", ", ".join(x for x in (cal.device, cal.dtype, cal.created) if x) or "—"),
        ("defaults", f"threshold {d.threshold}, max skips {d.max_skip_steps}, retention {d.retention_ratio}"),
    ]
    if profile.source:
        rows.append(("source", profile.source))
    for k, v in rows:
        head.add_row(k, v)
    c.print(head)
    c.print(curve_table("ratio curves", profile.branches))


def render_calibration(result, out_path: str) -> None:
    c = console()
    c.print(f"[bold]Stack[/]: {result.stack.describe()}")
    for note in result.stack.notes:
        c.print(f"  [dim]{note}[/]")
    p = result.profile
    c.print(f"[bold]Guidance[/]: {p.calibration.guidance_mode} — branches {', '.join(p.branches)}")
    c.print(curve_table(f"Calibrated {result.runs} run(s) in {result.wall_s:.2f} s", p.branches))
    for text in result.notes:
        notice(text)
    c.print(f"Wrote [bold]{out_path}[/]")


def render_run(result, paths: list[str], no_cache: bool) -> None:
    c = console()
    if result.stack is not None:
        c.print(f"[bold]Stack[/]: {result.stack.describe()}")
    if result.settings is not None:
        s = result.settings
        c.print(f"[bold]Settings[/]: threshold {s.threshold}, max skips {s.max_skip_steps}, "
                f"retention {s.retention_ratio}, branch policy {result.policy}")
    if result.schedule:
        c.print(_schedule_table(f"Schedule, {result.steps} steps", result.steps,
                                _flags_of(result.schedule, result.steps)))
    runs = len(result.prompts_seeds)
    saved = result.total_calls - result.transformer_calls
    speed = result.total_calls / result.transformer_calls if result.transformer_calls else 1.0
    mode = "no cache" if no_cache else f"{saved} skipped, {speed:.2f}× fewer passes"
    c.print(f"[bold]Transformer passes[/]: {result.transformer_calls} / {result.total_calls} computed ({mode})")
    c.print(f"[bold]Wall time[/]: {result.wall_s:.2f} s for {runs} run(s) (pipeline calls only)")
    for p in paths:
        c.print(f"Wrote [bold]{p}[/]")


# ---------------------------------------------------------------------------- quality: compare, tune, schedule


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


def _schedule_table(title: str, steps: int, branches: dict[str, list[bool]]) -> Table:
    console().print(f"[bold]{title}[/]: █ computed ░ skipped")
    t = Table()
    for col in ("branch", "timeline", "computed", "skipped"):
        t.add_column(col)
    for label, flags in branches.items():
        t.add_row(label, timeline(flags), str(sum(flags)), str(len(flags) - sum(flags)))
    return t


def _flags_of(schedule: dict[str, dict[str, list[int]]], steps: int) -> dict[str, list[bool]]:
    out = {}
    for label, s in schedule.items():
        marks = [True] * steps
        for i in s["skipped"]:
            if i < steps:
                marks[i] = False
        out[label] = marks
    return out


_WALL_NOTE = ("[yellow]Note:[/] a wall-time speedup above the pass speedup cannot come from skipping: the machine "
              "was busy while some runs were timed. Trust the pass counts; rerun on an idle machine for timings.")


def render_compare(cmp, paths: list[str], sheets: list[str]) -> None:
    c = console()
    ref, m, b = cmp.reference, cmp.cached, cmp.baseline
    s = cmp.settings
    c.print(f"[bold]Settings[/]: threshold {s.threshold}, max skips {s.max_skip_steps}, retention {s.retention_ratio}, "
            f"branch policy {cmp.policy}")
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
    for name, x in (("cached", m), ("fewer steps", b)):
        q = x.quality
        t.add_row(name, str(x.steps), _passes(x.passes), f"{x.wall_s:.3f} s", _db(q.psnr), _db(q.psnr_min),
                  _num(q.ssim), *([_num(q.lpips)] if lp else []))
    c.print(t)
    c.print(f"[bold]Speedup[/]: {cmp.speedup_passes:.2f}× fewer transformer passes, {cmp.speedup_wall:.2f}× in wall time")
    if cmp.wall_suspect:
        c.print(_WALL_NOTE, soft_wrap=True)
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
    console().print(f"[bold]Sweep[/], {ref.steps} steps, {len(result.prompts) * len(result.seeds)} run(s) per point; "
                    f"quality is the mean vs uncached; ★ chosen, ✓ meets {result.target.describe()}; the last two "
                    f"columns: uncached at the steps that cost the same passes")
    t = Table()
    cols = ["", "E", "K", "R", "passes", "×pass", "×wall", "PSNR", "SSIM"] + (["LPIPS"] if lp else [])
    cols += ["steps", "PSNR "]
    for col in cols:
        t.add_column(col, justify="right")
    from magcache_cli.profile.plan import equal_pass_steps

    for p in rows:
        q, s = p.measured.quality, p.settings
        mark = "★" if p is result.chosen else "✓" if q.meets(**result.target.given()) else ""
        k = min(ref.steps, equal_pass_steps(p.measured.passes, ref.per_step))
        base = result.baselines.get(k)
        cells = [mark, f"{s.threshold:g}", str(s.max_skip_steps), f"{s.retention_ratio:g}", _passes(p.measured.passes),
                 f"{p.speedup_passes:.2f}", f"{p.speedup_wall:.2f}", _db(q.psnr), _num(q.ssim)]
        cells += [_num(q.lpips)] if lp else []
        cells += [str(k), _db(base.quality.psnr)] if base else ["", ""]
        t.add_row(*cells)
    return t


def render_tune(result, show_all: bool, written: str | None) -> None:
    from magcache_cli.quality.tune import distinct

    c = console()
    rows = [p for p in distinct(result.points) if show_all or p.pareto or p is result.chosen]
    n_distinct = len(distinct(result.points))
    c.print(tune_table(result, rows))
    c.print(f"[dim]{len(result.points)} settings, {n_distinct} distinct schedules, {result.runs} pipeline runs"
            + ("" if show_all else "; Pareto front shown (--all for every schedule)") + "[/]")
    if result.reference.lpips_note:
        c.print(f"[dim]{result.reference.lpips_note}[/]")
    if result.wall_suspect:
        c.print(_WALL_NOTE, soft_wrap=True)
    ch = result.chosen
    if ch is None:
        return
    s, q = ch.settings, ch.measured.quality
    c.print(f"[bold]Chosen[/]: threshold {s.threshold:g}, max skips {s.max_skip_steps}, retention {s.retention_ratio:g} — "
            f"{_passes(ch.measured.passes)} of {_passes(result.reference.passes)} passes per run "
            f"({ch.speedup_passes:.2f}× fewer, {ch.speedup_wall:.2f}× wall), PSNR {_dbu(q.psnr)} (worst {_dbu(q.psnr_min)}), "
            f"SSIM {_num(q.ssim)}")
    steps, base = result.chosen_baseline
    from magcache_cli.quality.compare import closer

    c.print(verdict(closer(q, base.quality), ch.measured.passes, steps, q.psnr, base.quality.psnr))
    if written:
        c.print(f"Wrote defaults to [bold]{written}[/] (evidence in defaults.tuned)")
    else:
        c.print("[dim]--dry-run: profile not written[/]")


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


# ------------------------------------------------------------------------------- `magcache profile ...`


def emit_text(text: str) -> None:
    """Raw text on stdout (YAML, Python snippets): no markup, no wrapping."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _skip_settings(d: dict) -> str:
    return f"threshold {d['threshold']}, K {d['max_skip_steps']}, retention {d['retention_ratio']}"


def _short_source(source: str | None) -> str:
    if not source:
        return "measured (magcache calibrate)"
    m = re.search(r"([\w.-]+/[\w.-]+)@([0-9a-f]{7})[0-9a-f]*", source)
    return f"{m.group(1)}@{m.group(2)}" if m else source.split(";")[0]


def render_profile_list(rows: list[dict], dirs: list[str]) -> None:
    """`magcache profile list`: a table, one profile per row with its model and source on a second line
    (so it reads in 80 columns); `profile show NAME` has the full source."""
    c = console()
    w = max([len(r["name"]) for r in rows] + [4])
    c.print("Profiles: pass a name wherever a profile is expected (--profile NAME)")
    c.print(f"[bold]{'name':<{w}}  {'steps':>5}  {'branches':<12} threshold/K/retention[/]", soft_wrap=True)
    for r in rows:
        if "error" in r:
            c.print(f"{r['name']:<{w}}  [red]invalid[/]", soft_wrap=True)
            c.print(f"    {r['error']}", markup=False, soft_wrap=True)
            continue
        d = r["defaults"]
        c.print(f"{r['name']:<{w}}  {r['steps']:>5}  {'+'.join(r['branches']):<12} "
                f"{d['threshold']} / {d['max_skip_steps']} / {d['retention_ratio']}", markup=False, soft_wrap=True)
        c.print(f"    [dim]{r['model']} · {_short_source(r['source'])}[/]", soft_wrap=True)
    c.print(f"[dim]searched: {', '.join(dirs)}; full source: magcache profile show NAME[/]", soft_wrap=True)


def _value(v: Any) -> str:
    return "—" if v is None else str(v)


def render_profile_diff(diff: dict, ref_a: str, ref_b: str) -> None:
    """`magcache profile diff`: metadata, per-branch curve differences, and the schedules they give."""
    c = console()
    c.print(f"[bold]A[/] {ref_a}\n[bold]B[/] {ref_b}", soft_wrap=True)
    if diff["metadata"]:
        t = Table(title="Metadata that differs", title_justify="left")
        for col in ("field", "A", "B"):
            t.add_column(col, overflow="fold")
        for m in diff["metadata"]:
            t.add_row(m["field"], _value(m["a"]), _value(m["b"]))
        c.print(t)
    else:
        c.print("Metadata: identical")
    if diff["curves"]:
        t = Table(title=f"Ratio curves, |A − B| on A's {diff['compared_on_steps']}-step grid", title_justify="left")
        for col in ("branch", "max |Δ|", "at step", "mean |Δ|", "steps that differ most (A vs B)"):
            t.add_column(col, justify="right" if "Δ" in col or col == "at step" else "left")
        for label, d in diff["curves"].items():
            worst = ", ".join(f"{w['step']}: {w['a']:.5f} vs {w['b']:.5f}" for w in d["most_different"]) or "none"
            t.add_row(label + (" (B resampled)" if d["resampled"] else ""), f"{d['max_abs_diff']:.5f}",
                      str(d["max_at_step"]), f"{d['mean_abs_diff']:.5f}", worst)
        c.print(t)
    for side, key in (("A", "only_in_a"), ("B", "only_in_b")):
        if diff[key]:
            c.print(f"Branches only in {side}: {', '.join(diff[key])}")
    for s in diff["schedules"]:
        whose = {"a": "A's", "b": "B's", "a+b": "A's and B's (same)"}[s["defaults_of"]]
        t = Table(title=f"Schedule at {whose} defaults: {_skip_settings(s)}, {s['steps']} steps, "
                        f"{s['policy']} policy (█ computed ░ skipped)", title_justify="left")
        for col in ("profile", "branch", "timeline", "computed", "skipped"):
            t.add_column(col, no_wrap=col == "timeline")
        for side in ("a", "b"):
            rows = s[side]["branches"]
            if len({r["timeline"] for r in rows.values()}) == 1:  # joint policy: one schedule for all branches
                first = next(iter(rows.values()))
                rows = {"+".join(rows): first}
            for label, sched in rows.items():
                t.add_row(side.upper(), label, sched["timeline"], str(sched["num_computed"]), str(sched["num_skipped"]))
        c.print(t)
        c.print(f"  transformer passes per run: A {s['a']['passes']} / {s['a']['total_passes']}, "
                f"B {s['b']['passes']} / {s['b']['total_passes']}")
        differ = {label: steps for label, steps in s["differ_at"].items() if steps}
        if not s["differ_at"]:
            c.print("  no common branch to compare")
        elif differ:
            for label, steps in differ.items():
                c.print(f"  {label}: schedules differ at step(s) {', '.join(map(str, steps))}")
        else:
            c.print("  same schedule for A and B")


def render_curve_chart(profile, ref: str, lines: list[str]) -> None:
    """`magcache profile plot` without --output: the curve table and a text chart."""
    c = console()
    c.print(f"[bold]{ref}[/]: {profile.model.id}, {profile.calibration.steps} steps", soft_wrap=True)
    c.print(curve_table("ratio curves", profile.branches))
    for line in lines:
        c.print(line, markup=False, highlight=False, soft_wrap=True)


def render_import(profile, out_path: str, pads_added: int) -> None:
    c = console()
    cal = profile.calibration
    c.print(f"Imported {cal.steps} steps, guidance {cal.guidance_mode}, branches {', '.join(profile.branches)}"
            + (f" ({pads_added} leading 1.0 pad(s) added)" if pads_added else ""))
    c.print(curve_table("ratio curves", profile.branches))
    c.print(f"Wrote [bold]{out_path}[/]")
