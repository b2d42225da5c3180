"""Rendering of the profile commands: show, list, diff, plot, import."""

from __future__ import annotations

import re
from typing import Any

from rich.table import Table

from magcache_cli.cli.render.console import (
    console,
    curve_table,
)


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
        ("defaults", f"threshold {d.threshold}, max skips {d.max_skip_steps}, retention {d.retention_ratio}, "
                     f"forecast {d.forecast:g}"),
    ]
    rows += _setup_rows(m)
    if profile.source:
        rows.append(("source", profile.source))
    for k, v in rows:
        head.add_row(k, v)
    c.print(head)
    c.print(curve_table("ratio curves", profile.branches))


def _setup_rows(m) -> list[tuple[str, str]]:
    """LoRA adapters, quantization and the transformer file the curves were measured with (when any)."""
    rows = []
    if m.adapters:
        rows.append(("adapters", "; ".join(
            f"{a.name}: {a.source or 'loaded by the caller'}{'/' + a.weight_name if a.weight_name else ''} at scale "
            f"{a.scale:g}{', fused' if a.fused else ''}{f', sha256 {a.sha256[:12]}…' if a.sha256 else ''}"
            for a in m.adapters)))
    if m.quantization:
        rows.append(("quantization", "; ".join(f"{q.component}: {q.spec or q.backend + ' (came quantized)'}"
                                               for q in m.quantization)))
    if m.transformer_file:
        f = m.transformer_file
        rows.append(("transformer file", f"{f.path} ({f.format}" + (f", {f.bytes:,} bytes" if f.bytes else "")
                     + (f", sha256 {f.sha256[:12]}…" if f.sha256 else "") + ")"))
    return rows


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


def render_verify(result, path: str) -> None:
    """`magcache profile verify`: how far the curves moved, per branch, and the schedule at the defaults."""
    c = console()
    c.print(f"Re-measured {path} on {result.prompt!r}, seed {result.seed}", soft_wrap=True)
    t = Table(title="Ratio curves, |profile − now|", title_justify="left")
    for col in ("branch", "mean |Δ|", "max |Δ|", "at step"):
        t.add_column(col, justify="left" if col == "branch" else "right")
    for label, d in result.curves.items():
        t.add_row(label, f"{d['mean_abs_diff']:.5f}", f"{d['max_abs_diff']:.5f}", str(d["max_at_step"]))
    c.print(t)
    for w in result.warnings:
        c.print(f"[yellow]{w}[/]", soft_wrap=True)
    s = result.schedule
    c.print(f"At the profile's defaults ({_skip_settings(s)}, {s['steps']} steps): {s['passes_profile']} → "
            f"{s['passes_now']} of {s['total_passes']} transformer passes per run", soft_wrap=True)
    for label, steps in s["differ_at"].items():
        c.print(f"  {label}: schedule differs at step(s) {', '.join(map(str, steps))}", soft_wrap=True)
    verdict = "[green]ok[/]" if result.ok else "[red]moved[/]: recalibrate (or raise --tolerance)"
    c.print(f"distance {result.distance:.5f} (mean |Δ ratio| per step, worst branch), tolerance "
            f"{result.tolerance:g}: {verdict}", soft_wrap=True)
