"""Honest wall time: warm-up, interleaved repeats, medians, and a verdict that leads with the pass counts when
the machine was disturbed. Timings are scripted (no clock is read), so the numbers are checkable by hand."""

from __future__ import annotations

import json

import pytest

from magcache_cli.cli.render.quality import _speedup_line
from magcache_cli.quality.timing import SPREAD_LIMIT, Timing, Timings, interleaved
from magcache_cli.testing.helpers import invoke


def scripted(values: dict[str, list[float]], order: list[str]):
    """Calls that return the next scripted time of their label and log the order they ran in."""
    it = {k: iter(v) for k, v in values.items()}

    def call(label):
        def run() -> float:
            order.append(label)
            return next(it[label])
        return run

    return {k: call(k) for k in values}


def test_interleaved_warms_up_then_rotates_and_reports_medians():
    order: list[str] = []
    calls = scripted({"uncached": [9.0, 1.0, 1.2, 1.1], "cached": [9.0, 0.5, 0.7, 0.6],
                      "fewer_steps": [9.0, 0.4, 0.4, 0.4]}, order)
    t = interleaved(calls, repeats=3, warm_up=True)
    # one untimed warm-up each (the 9.0s are never reported), then rounds that start one label later each time
    assert order == ["uncached", "cached", "fewer_steps",
                     "uncached", "cached", "fewer_steps",
                     "cached", "fewer_steps", "uncached",
                     "fewer_steps", "uncached", "cached"]
    assert t.median("uncached") == 1.1 and t.median("cached") == 0.6 and t.median("fewer_steps") == 0.4
    assert t.speedup("uncached", "cached") == pytest.approx(1.1 / 0.6)
    assert t.by_label["uncached"].spread == pytest.approx((1.2 - 1.0) / 1.1)
    assert t.to_json()["median_s"] == {"uncached": 1.1, "cached": 0.6, "fewer_steps": 0.4}


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        interleaved({"a": lambda: 1.0}, repeats=0)


def timings(uncached: list[float], cached: list[float]) -> Timings:
    return Timings({"uncached": Timing(uncached), "cached": Timing(cached)}, len(uncached))


def test_verdict_trusts_steady_consistent_timings():
    # 1.5x fewer passes, 1.4x in wall time, repeats within 10%
    assert timings([1.5, 1.4, 1.45], [1.0, 1.05, 1.0]).verdict(speedup_passes=1.5) is None


@pytest.mark.parametrize("uncached, cached, passes, words", [
    ([1.0, 2.0, 1.0], [0.7, 0.7, 0.7], 1.5, "differ by 100%"),  # a neighbour's burst in one repeat
    ([3.0, 3.0, 3.0], [1.0, 1.0, 1.0], 1.5, "exceeds what the skipped passes allow"),  # 3x from 1.5x fewer passes
    ([0.68, 0.68, 0.68], [1.0, 1.0, 1.0], 1.5, "timed slower although it skipped passes"),  # the demo's "0.68x"
])
def test_verdict_names_the_disturbance(uncached, cached, passes, words):
    assert words in timings(uncached, cached).verdict(passes)


def test_spread_limit_is_a_quarter():
    assert SPREAD_LIMIT == 0.25
    assert timings([1.0, 1.25, 1.0], [0.8, 0.8, 0.8]).verdict(1.3) is None  # exactly 25%: still trusted
    assert timings([1.0, 1.26, 1.0], [0.8, 0.8, 0.8]).verdict(1.3) is not None


def test_a_run_that_skips_never_reads_as_a_slowdown():
    t = timings([0.68, 0.68, 0.68], [1.0, 1.0, 1.0])
    line = _speedup_line(1.5, t.speedup("uncached", "cached"), t.verdict(1.5), t)
    assert line.startswith("[bold]Speedup[/]: 1.50× fewer transformer passes")
    assert "0.68" not in line and "Wall time not reliable here" in line
    good = timings([1.5, 1.5, 1.5], [1.0, 1.0, 1.0])
    assert _speedup_line(1.5, good.speedup("uncached", "cached"), None, good).endswith(
        "1.50× in wall time (median of 3 interleaved repeats)")


def test_run_compare_reports_interleaved_medians(tiny_pipeline_dir, tmp_path):
    prof = tmp_path / "p.yaml"
    r = invoke("calibrate", "--model", tiny_pipeline_dir("sd3"), "-p", "a cat", "--steps", 6, "--height", 32,
               "--width", 32, "--guidance-scale", 5.0, "--threshold", 0.5, "--out", prof)
    assert r.exit_code == 0, r.output
    r = invoke("run", "--profile", prof, "--compare", "--repeats", 2, "--json", "-o", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    timing = data["timing"]
    assert timing["repeats"] == 2 and set(timing["median_s"]) == {"uncached", "cached", "fewer_steps"}
    assert data["uncached"]["wall_s_per_run"] == timing["median_s"]["uncached"]
    assert data["cached"]["wall_s_per_run"] == timing["median_s"]["cached"]
    assert data["wall_times_suspect"] == (data["wall_note"] is not None)
    r = invoke("run", "--profile", prof, "--compare", "--repeats", 0, "-o", tmp_path / "d.png")
    assert r.exit_code == 1 and "--repeats must be >= 1" in r.output
