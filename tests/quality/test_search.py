"""`tune` as a search, with a fake measurement: which runs it asks for, when it drops a candidate, what it picks.

Every test builds one forecast A with candidates at 4, 6, 8 and 10 passes (of 12 steps, one pass per step) and
three prompt × seed runs: runs 0 and 1 steer the search, run 2 is held out (`split_runs(3)`). The fake returns
the PSNR written in the test for (candidate, run) and counts its calls.
"""

from __future__ import annotations

import pytest

from magcache_cli.core.rule import SkipSettings
from magcache_cli.quality.search import BudgetSpent, Cand, Goal, Ledger, Search, quality_of, split_runs

A = 0.5


def cand(passes: int, n: int = 0) -> Cand:
    return Cand(SkipSettings(0.1 * passes + 0.01 * n, 2, 0.1, A), (passes, n), passes, float(n))


class Fake:
    def __init__(self, psnr: dict[tuple, list[float]], fewer: dict[int, list[float]] | None = None):
        self.psnr, self.fewer_psnr, self.calls = psnr, fewer or {}, []

    def cached(self, c: Cand, i: int) -> dict:
        self.calls.append((c.key, i))
        return {"psnr": self.psnr[c.key][i], "ssim": 1.0, "lpips": None}

    def fewer(self, steps: int, i: int) -> dict:
        self.calls.append((f"{steps} steps", i))
        return {"psnr": self.fewer_psnr[steps][i], "ssim": 1.0, "lpips": None}


def search(fake: Fake, goal: Goal, levels, budget=None) -> Search:
    choose, held = split_runs(3)
    return Search(Ledger(fake.cached, fake.fewer, 0, budget), goal, {A: levels}, choose, held, per_step=1, steps=12,
                  total=12)


def test_split_holds_out_every_third_run():
    assert split_runs(3) == ([0, 1], [2])
    assert split_runs(10) == ([0, 1, 3, 4, 6, 7, 9], [2, 5, 8])
    assert split_runs(1) == ([0], [])
    assert split_runs(2) == ([0], [1])  # no third run: the last is held out


def test_bisection_measures_few_candidates_and_drops_at_the_first_miss():
    c4, c6, c8, c10 = cand(4), cand(6), cand(8), cand(10)
    fake = Fake({c4.key: [30, 30, 30], c6.key: [36, 34, 36], c8.key: [40, 40, 40], c10.key: [45, 45, 45]})
    s = search(fake, Goal(min_psnr=35), {4: [c4], 6: [c6], 8: [c8], 10: [c10]})
    assert s.run() is c8
    # pass counts [4, 6, 8, 10]: 8 meets on runs 0, 1; 6 meets on run 0, misses run 1 (dropped); then 8 is
    # confirmed on held-out run 2. 4 and 10 are never run.
    assert fake.calls == [(c8.key, 0), (c8.key, 1), (c6.key, 0), (c6.key, 1), (c8.key, 2)]
    assert s.ledger.runs == 5 and s.dropped == 1


def test_a_miss_on_the_first_run_costs_one_run():
    c4, c6, c8 = cand(4), cand(6), cand(8)
    fake = Fake({c4.key: [30, 40, 40], c6.key: [34, 40, 40], c8.key: [40, 40, 40]})
    s = search(fake, Goal(min_psnr=35), {4: [c4], 6: [c6], 8: [c8]})
    assert s.run() is c8
    # [4, 6, 8]: mid 6 misses run 0 -> one run; then 8 (runs 0, 1), held-out 2. 4 is below 6: never run.
    assert fake.calls == [(c6.key, 0), (c8.key, 0), (c8.key, 1), (c8.key, 2)]


def test_a_miss_on_the_held_out_run_moves_on():
    c6, c8, c10 = cand(6), cand(8), cand(10)
    fake = Fake({c6.key: [30, 30, 30], c8.key: [40, 40, 20], c10.key: [45, 45, 45]})
    s = search(fake, Goal(min_psnr=35), {6: [c6], 8: [c8], 10: [c10]})
    assert s.run() is c10
    # 8 wins on runs 0, 1 (6 misses run 0) but misses held-out run 2: excluded; the search again finds 8 failed
    # (no second candidate at 8) and moves up to 10, confirmed on run 2
    assert fake.calls == [(c8.key, 0), (c8.key, 1), (c6.key, 0), (c8.key, 2), (c10.key, 0), (c10.key, 1),
                          (c10.key, 2)]


def test_the_second_best_predicted_schedule_at_a_pass_count_is_tried():
    c8a, c8b, c10 = cand(8, 0), cand(8, 1), cand(10)
    fake = Fake({c8a.key: [20, 40, 40], c8b.key: [40, 40, 40], c10.key: [45, 45, 45]})
    s = search(fake, Goal(min_psnr=35), {8: [c8a, c8b], 10: [c10]})
    assert s.run() is c8b
    # [8, 10]: mid 10 meets (runs 0, 1); then 8: the best predicted (c8a) misses run 0, the second (c8b) meets
    assert fake.calls == [(c10.key, 0), (c10.key, 1), (c8a.key, 0), (c8b.key, 0), (c8b.key, 1), (c8b.key, 2)]


def test_beat_fewer_steps_holds_on_every_run_not_the_mean():
    c4, c8 = cand(4), cand(8)
    # at 4 passes: mean 38 vs fewer steps' mean 36 (+2 dB) but run 1 is 1 dB behind -> not chosen
    fake = Fake({c4.key: [40, 35, 39], c8.key: [44, 44, 44]}, fewer={4: [36, 36, 36], 8: [42, 42, 42]})
    s = search(fake, Goal(beat_margin=0.5), {4: [c4], 8: [c8]})
    assert s.run() is c8
    # each cached run is compared with the uncached pipeline at 4 (resp. 8) steps on the same run
    # ([4, 8]: 8 first, then 4, which misses run 1: 35 - 36 < 0.5)
    assert fake.calls[4:8] == [(c4.key, 0), ("4 steps", 0), (c4.key, 1), ("4 steps", 1)]
    # a margin of 2.5 dB: 44 - 42 = 2 misses at 8 passes too
    fake2 = Fake(fake.psnr, fake.fewer_psnr)
    assert search(fake2, Goal(beat_margin=2.5), {4: [c4], 8: [c8]}).run() is None


def test_the_budget_stops_the_search():
    c4, c6, c8, c10 = cand(4), cand(6), cand(8), cand(10)
    fake = Fake({c4.key: [30, 30, 30], c6.key: [36, 34, 36], c8.key: [40, 40, 40], c10.key: [45, 45, 45]})
    s = search(fake, Goal(min_psnr=35), {4: [c4], 6: [c6], 8: [c8], 10: [c10]}, budget=3)
    with pytest.raises(BudgetSpent, match="3 pipeline runs"):
        s.run()
    assert len(fake.calls) == 3 and s.ledger.runs == 3


def test_a_ledger_runs_each_pair_once_and_counts_the_reference():
    c = cand(4)
    fake = Fake({c.key: [30, 31, 32]})
    ledger = Ledger(fake.cached, fake.fewer, spent=3)  # 3 reference runs already
    for _ in range(2):
        assert ledger.cached(c, 1)["psnr"] == 31
    assert fake.calls == [(c.key, 1)] and ledger.runs == 4


def test_speedup_goal_halves_the_candidates_run_by_run():
    # at most 12 / 2 = 6 passes: the candidates at 6 (not 4) compete; 4 of them (TOP = 3 per A, two A values)
    cs = [cand(6, n) for n in range(3)]
    b = Cand(SkipSettings(0.7, 2, 0.1, 0.75), ("b",), 6, 0.0)
    low = cand(4)
    fake = Fake({cs[0].key: [40, 41, 42], cs[1].key: [43, 30, 43], cs[2].key: [39, 49, 49], b.key: [44, 44, 44],
                 low.key: [50, 50, 50]})
    choose, held = split_runs(3)
    s = Search(Ledger(fake.cached, fake.fewer), Goal(speedup=2.0), {A: {4: [low], 6: cs}, 0.75: {6: [b]}},
               choose, held, per_step=1, steps=12, total=12)
    assert s.run() is b
    # run 0: all four (40, 43, 39, 44) -> keep the better half, best first: b 44, cs[1] 43;
    # run 1: b 44, cs[1] 30 -> b;
    # then b on the held-out run 2
    assert fake.calls == [(cs[0].key, 0), (cs[1].key, 0), (cs[2].key, 0), (b.key, 0), (b.key, 1),
                          (cs[1].key, 1), (b.key, 2)]


def test_bare_beat_fewer_steps_means_the_default_margin():
    from magcache_cli.cli.app import BARE_VALUES, rewrite_args
    from magcache_cli.quality.search import DEFAULT_MARGIN_DB

    assert float(BARE_VALUES["--beat-fewer-steps"]) == DEFAULT_MARGIN_DB == 0.5
    assert rewrite_args(["tune", "--beat-fewer-steps", "--dry-run"])[0] == ["tune", "--beat-fewer-steps", "0.5",
                                                                          "--dry-run"]
    assert rewrite_args(["tune", "--beat-fewer-steps", "1"])[0] == ["tune", "--beat-fewer-steps", "1"]
    assert rewrite_args(["calibrate", "--tune"])[0] == ["calibrate", "--tune", "beat"]


def test_calibrate_tune_targets_parse():
    from magcache_cli.cli.calibrated import tune_goal
    from magcache_cli.errors import UsageError

    assert tune_goal("beat").beat_margin == 0.5 and tune_goal("beat=1.5").beat_margin == 1.5
    assert tune_goal("psnr=35").min_psnr == 35 and tune_goal("speedup=2").speedup == 2
    for bad in ("psnr", "fast=2", "psnr=x", "speedup=1"):
        with pytest.raises(UsageError):
            tune_goal(bad)


def test_quality_of_runs_is_the_mean_and_the_worst():
    q = quality_of([{"psnr": 30, "ssim": 0.9, "lpips": None}, {"psnr": 40, "ssim": 0.95, "lpips": None}])
    assert (q.psnr, q.psnr_min, q.ssim, q.ssim_min, q.lpips) == (35, 30, pytest.approx(0.925), 0.9, None)
