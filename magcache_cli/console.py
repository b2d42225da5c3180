"""The one place that writes to the terminal: progress, tables, sparklines, timelines and `--json`."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .ratios import sparkline, timeline

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
    Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {message}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    console().print(f"[yellow]Warning:[/] {message}", soft_wrap=True)


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
        t = Table(title=f"Schedule, {result.steps} steps: █ computed ░ skipped", title_justify="left")
        for col in ("branch", "timeline", "computed", "skipped"):
            t.add_column(col)
        for label, sched in result.schedule.items():
            marks = [True] * result.steps
            for i in sched["skipped"]:
                if i < len(marks):
                    marks[i] = False
            t.add_row(label, timeline(marks), str(len(sched["computed"])), str(len(sched["skipped"])))
        c.print(t)
    runs = len(result.prompts_seeds)
    saved = result.total_calls - result.transformer_calls
    speed = result.total_calls / result.transformer_calls if result.transformer_calls else 1.0
    mode = "no cache" if no_cache else f"{saved} skipped, {speed:.2f}× fewer passes"
    c.print(f"[bold]Transformer passes[/]: {result.transformer_calls} / {result.total_calls} computed ({mode})")
    c.print(f"[bold]Wall time[/]: {result.wall_s:.2f} s for {runs} run(s) (pipeline calls only)")
    for p in paths:
        c.print(f"Wrote [bold]{p}[/]")
