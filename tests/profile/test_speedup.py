"""`--speedup X`: settings chosen from the curves alone.

Hand numbers for the predicted error (`branch_error`), curve [1, 2, 0.5, 2]:

    magnitudes m = [1, 2, 1, 2]   (running product; ratio[0] is 1)
    flags [computed, computed, skip, skip]: last computed c = 1, the one before p = 0
    reuse (A = 0):  step 2 replays m_1 = 2, true 1 -> |2 - 1| / 1 = 1
                    step 3 replays 2, true 2 -> 0                          total 1.0
    A = 0.5:        step 2: 2 + 0.5 · (2-1)/(1-0) · (2 - 1) = 2.5 -> 1.5
                    step 3: 2 + 0.5 · (3-1)/(1-0) · (2 - 1) = 3   -> |3 - 2| / 2 = 0.5   total 2.0
"""

from __future__ import annotations

import itertools

import pytest

from magcache_cli.core.rule import SkipSettings, simulate
from magcache_cli.errors import UsageError
from magcache_cli.profile import speedup as sp
from magcache_cli.profile.io import load_profile

# 12 steps, one branch, no guidance: the curve drifts down slowly, then turns up at the end
CURVE = [1.0, 1.3, 0.97, 0.97, 0.98, 0.99, 0.995, 1.0, 1.005, 1.02, 1.05, 0.8]
PROFILE = """\
schema_version: 1
model:
  id: hand/made
  pipeline_class: FluxPipeline
  transformer_class: FluxTransformer2DModel
calibration:
  steps: 12
  guidance_mode: none
branches:
  cond:
    ratios: {curve}
defaults:
  threshold: 0.06
  max_skip_steps: 3
  retention_ratio: 0.2
{extra}"""


@pytest.fixture
def profile(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(PROFILE.format(curve=CURVE, extra=""))
    return load_profile(p)


def test_branch_error_by_hand():
    flags = [True, True, False, False]
    assert sp.branch_error([1, 2, 0.5, 2], flags, 0.0) == pytest.approx(1.0)
    assert sp.branch_error([1, 2, 0.5, 2], flags, 0.5) == pytest.approx(2.0)
    # one computed step before the skip: the forecast falls back to reuse. Step 1 replays m_0 = 1, true m_1 = 2:
    # |1 - 2| / 2 = 0.5 for any A
    for a in (0.0, 0.5):
        assert sp.branch_error([1, 2, 0.5, 2], [True, False, True, True], a) == pytest.approx(0.5)


def _error(curve, flags, a):
    """The module doc's formula, written out again here."""
    m = [1.0]
    for r in curve[1:]:
        m.append(m[-1] * r)
    done, total = [], 0.0
    for t, f in enumerate(flags):
        if f:
            done.append(t)
        elif done:
            c = done[-1]
            guess = m[c] + (a * (t - c) / (c - done[-2]) * (m[c] - m[done[-2]]) if len(done) >= 2 else 0.0)
            total += abs(guess - m[t]) / m[t]
    return total


def test_spread_and_lateness_by_hand():
    from magcache_cli.profile.plan import Prediction

    # skipped steps 1, 2 and 4: runs of 2 and 1 -> spread 2³ + 1³ = 9, lateness 1 + 2 + 4 = 7
    flags = [True, False, False, True, False]
    pred = Prediction({"cond": flags}, 2, 5, "joint")
    assert sp.skip_runs(flags) == [2, 1]
    assert (sp.spread(pred), sp.lateness(pred), sp.longest_run(pred)) == (9, 7, 2)
    # the forecast without evidence: 0.75 up to 3 consecutive skips, 0.5 beyond
    assert sp.default_forecast(Prediction({"cond": [True, False, False, False, True]}, 2, 5, "joint")) == 0.75
    assert sp.default_forecast(Prediction({"cond": [True] + [False] * 4}, 1, 5, "joint")) == 0.5


def _runs(flags):
    out, n = [], 0
    for f in flags + [True]:
        if not f:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


@pytest.mark.parametrize("x", [1.5, 2.0, 3.0])
def test_choice_reaches_the_speedup_and_ranks_first(profile, x):
    choice = sp.choose(profile, 12, x, forecast=0.5)
    assert choice.prediction.passes * x <= 12
    assert choice.settings.forecast == 0.5 and choice.forecast_from == "option"
    # every grid setting, simulated with the rule and scored here: spread (Σ run³), then latest skips, then error
    reaching = []
    for e, k, r in itertools.product(sp.THRESHOLDS, sp.MAX_SKIPS, sp.RETENTIONS):
        flags = simulate({"cond": CURVE}, 12, SkipSettings(e, k, r))["cond"]
        if sum(flags) * x <= 12:
            late = sum(i for i, f in enumerate(flags) if not f)
            reaching.append((sum(n ** 3 for n in _runs(flags)), -late, round(_error(CURVE, flags, 0.5), 9)))
    assert choice.reaching == len(reaching)
    mine = choice.prediction.flags["cond"]
    got = (sum(n ** 3 for n in _runs(mine)), -sum(i for i, f in enumerate(mine) if not f),
           round(_error(CURVE, mine, 0.5), 9))
    assert got == min(reaching)
    assert choice.candidate.error == pytest.approx(_error(CURVE, mine, 0.5))


def test_explicit_knobs_are_held(profile):
    choice = sp.choose(profile, 12, 1.5, fixed={"max_skip_steps": 1, "retention_ratio": 0.2})
    assert (choice.settings.max_skip_steps, choice.settings.retention_ratio) == (1, 0.2)
    assert choice.prediction.passes * 1.5 <= 12


def test_an_unreachable_speedup_is_a_usage_error(profile):
    # K = 1 and R 0.2 (2 retained steps): at best every other of the last 10 steps skips -> 7 of 12 passes
    with pytest.raises(UsageError, match="no setting reaches 3×"):
        sp.choose(profile, 12, 3.0, fixed={"max_skip_steps": 1, "retention_ratio": 0.2})
    with pytest.raises(UsageError, match="> 1"):
        sp.choose(profile, 12, 1.0)


def test_forecast_comes_from_the_profile_when_it_has_evidence(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(PROFILE.format(curve=CURVE, extra=""))
    c = sp.choose(load_profile(p), 12, 1.5)  # no evidence: by the schedule's longest skip run
    assert c.forecast_from == "default" and c.settings.forecast == (0.75 if sp.longest_run(c.prediction) <= 3 else 0.5)
    p.write_text(PROFILE.format(curve=CURVE, extra="  forecast: 0.25\n"))
    c = sp.choose(load_profile(p), 12, 1.5)
    assert (c.settings.forecast, c.forecast_from) == (0.25, "profile")
    p.write_text(PROFILE.format(curve=CURVE, extra="  forecast: 0.0\n  tuned: {target: {min_psnr: 30}}\n"))
    assert sp.choose(load_profile(p), 12, 1.5).settings.forecast == 0.0  # tuned to plain reuse: kept
