"""The one place that writes to the terminal: progress, tables, sparklines, timelines and `--json`."""

from __future__ import annotations

import json
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


def traceback(exc: BaseException) -> None:
    """The full traceback of `exc` on stderr (--debug / MAGCACHE_DEBUG=1)."""
    import traceback as tb

    sys.stderr.write("".join(tb.format_exception(type(exc), exc, exc.__traceback__)))
    sys.stderr.flush()


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
                f"retention {s.retention_ratio}, forecast {s.forecast:g}, branch policy {result.policy}")
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


# ------------------------------------------------------------------------------- `magcache profile ...`


def emit_text(text: str) -> None:
    """Raw text on stdout (YAML, Python snippets): no markup, no wrapping."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


