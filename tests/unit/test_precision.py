"""Trials until precise: the stop rule, its record and the report's sentence, and a run that adds
rounds and resumes (trials simulated: no server is started)."""
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats as distributions

from msbench.analysis import stats
from msbench.config import ConfigError, Params
from msbench.results import TIDY_COLUMNS, Manifest, StopDecision, StopRule, TrialRecord
from msbench.run import schedule, stopping, study

CONFIG = ('backends:\n  fake: {launcher: process, binary: "true", command: ["${binary}"], '
          'ready_url: "http://127.0.0.1:1/"}\n  fake-b: {alias_of: fake}\n')
MANIFEST = Manifest(run="r", backends=["a", "b"], params=Params(top_k=10, concurrency=()), trials=2)


def _results(values: dict[str, list[float]], metric=("flush", "flush_s")) -> tuple[pd.DataFrame, list[TrialRecord]]:
    rows, records = [], []
    for backend, xs in values.items():
        for i, x in enumerate(xs, 1):
            rows.append({"run": "r", "backend": backend, "provider": "native", "trial": i, "seq": 0,
                         "phase": metric[0], "metric": metric[1], "value": x, "unit": "s"})
            records.append(TrialRecord("r", backend, backend, "native", i, 0, status="ok", duration_s=60.0))
    return pd.DataFrame(rows, columns=TIDY_COLUMNS), records


def test_rule_is_checked_in_one_line():
    assert stopping.make_rule(None) is None
    assert stopping.make_rule(0.05, trials=3) == StopRule(0.05, 10, None, stopping.calibrated_level(3, 10, 0.05))
    assert stopping.make_rule("0.1", 4, 30, trials=2) == StopRule(0.1, 4, 30.0, stopping.calibrated_level(2, 4, 0.1))
    for kwargs, message in [({"target": None, "max_trials": 5}, "max_trials only apply with until_precise"),
                            ({"target": 0}, "between 0 and 10"), ({"target": "x"}, "must be a number"),
                            ({"target": float("nan")}, "finite"), ({"target": 0.05, "max_trials": 2, "trials": 3},
                                                                   "max_trials must be an integer from trials"),
                            ({"target": 0.05, "max_trials": 100}, "to 99"),
                            ({"target": 0.05, "max_minutes": -1}, "max_minutes must be positive")]:
        with pytest.raises(ConfigError, match=message):
            stopping.make_rule(**kwargs)


def test_stopping_on_narrow_intervals_makes_95_percent_intervals_cover_less():
    """Why the level is calibrated: at 95% the interval at the stop covers about 91% (one metric
    deciding, 3 rounds then up to 10, ±5%, CV 8%); a fixed n covers 95%."""
    assert stopping.stopped_coverage(0.95, 3, 10, 0.05, cv=0.08, runs=20_000, seed=1) < 0.93
    assert stopping.stopped_coverage(0.95, 10, 10, 0.05, cv=0.08, runs=20_000, seed=1) > 0.945


def _stopped(x: np.ndarray, level: float, first: int, most: int, target: float):
    """(a, b, n) of the runs that stop at round n: where both backends' intervals at ``level`` are
    within ``target`` (x: runs x 2 backends x most rounds)."""
    stop = np.full(x.shape[0], most)
    for n in range(most, first - 1, -1):
        low, high = stats._mean_interval(x[..., :n], level)
        stop[((high - low) / 2 <= target * np.abs(x[..., :n].mean(axis=-1))).all(axis=1)] = n
    return [(x[stop == n, 0, :n], x[stop == n, 1, :n], n) for n in np.unique(stop)]


def _two_backends_stopped(level: float, first: int, most: int, target: float, cv: float, runs: int, seed: int):
    """Coverage of the report's mean interval (normal noise) and of its ratio of geometric means (paired
    by round; lognormal noise, the shape it is exact for) at the round where two backends' intervals,
    both at ``level``, are within ``target``."""
    z = np.random.default_rng(seed).standard_normal((runs, 2, most))
    mean_hits = sum(int(np.sum((low <= 1) & (1 <= high))) for a, _, _ in _stopped(1 + cv * z, level, first, most, target)
                    for low, high in [stats._mean_interval(a, level)])
    sigma = np.sqrt(np.log1p(cv ** 2))
    ratio_hits = 0
    for a, b, n in _stopped(np.exp(sigma * z - sigma ** 2 / 2), level, first, most, target):
        estimate, se, df, _ = stats._log_difference(np.log(a), np.log(b), n)
        ratio_hits += int(np.sum(np.abs(estimate) <= distributions.t.ppf(0.5 + level / 2, df) * se))
    return mean_hits / runs, ratio_hits / runs


@pytest.mark.parametrize("first, most, target", [(3, 10, 0.05), (2, 10, 0.05), (3, 20, 0.1)])
def test_the_calibrated_level_covers_95_percent_under_the_rule(first, most, target):
    """Checked on fresh draws (another seed, a finer grid of noise levels, 3 standard errors of
    slack): the mean's interval when it alone decides, and the mean's and the ratio's when two
    backends decide together."""
    level = stopping.calibrated_level(first, most, target)
    assert 0.95 < level < 0.995
    slack = 3 * np.sqrt(0.95 * 0.05 / 20_000)
    for cv in target * np.geomspace(0.25, 8, 11):
        assert stopping.stopped_coverage(level, first, most, target, cv, runs=20_000, seed=7) >= 0.95 - slack, cv
        mean, ratio = _two_backends_stopped(level, first, most, target, cv, runs=8_000, seed=8)
        assert min(mean, ratio) >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 8_000), (cv, mean, ratio)


def test_a_run_stopped_by_the_rule_is_analysed_at_its_calibrated_level():
    rule = stopping.make_rule(0.05, trials=3)
    assert Manifest(run="r", trials=3, until_precise=rule).confidence == rule.confidence > 0.95
    assert Manifest(run="r", trials=3).confidence == 0.95
    assert f"computed at the {100 * rule.confidence:.3g}% level" in stopping.describe(
        Manifest(run="r", trials=3, until_precise=rule))


def test_widths_are_the_reports_t_intervals_over_completed_trials():
    results, trials = _results({"a": [1.0, 1.3, 1.1], "b": [2.0, 2.0]})
    trials[2].status = "failed"   # a's third trial: not counted
    table = stopping.widths(results, trials, MANIFEST).set_index("backend")
    half = 12.706 * np.std([1.0, 1.3], ddof=1) / np.sqrt(2)
    assert table.loc["a", "n"] == 2 and table.loc["a", "half_width"] == pytest.approx(half, rel=1e-3)
    assert table.loc["a", "relative"] == pytest.approx(half / 1.15, rel=1e-3)
    assert table.loc["b", "relative"] == 0.0   # no spread: as precise as it gets
    one, trials = _results({"a": [1.0], "b": [1.0, 1.0]})
    assert np.isnan(stopping.widths(one, trials, MANIFEST).set_index("backend").loc["a", "relative"])
    # a backend with no completed trial is listed (and never precise); diagnostics are not rules
    results, trials = _results({"a": [1.0, 1.0]}, metric=("load_noop", "store_bytes_served_during_load"))
    assert stopping.widths(results, trials, MANIFEST).empty
    results, trials = _results({"a": [1.0, 1.0]})
    assert stopping.widths(results, trials, MANIFEST).set_index("backend").loc["b", "n"] == 0


@pytest.mark.parametrize("values, rounds, elapsed, reason", [
    ({"a": [1.0, 1.3, 1.1], "b": [2.0, 2.1, 2.0]}, 3, 600, "precise"),
    ({"a": [1.0, 5.0, 1.0], "b": [2.0, 2.1, 2.0]}, 3, 600, None),
    ({"a": [1.0, 5.0, 1.0, 5.0], "b": [2.0, 2.1, 2.0, 2.0]}, 4, 600, "max_trials"),
    ({"a": [1.0, 5.0, 1.0], "b": [2.0, 2.1, 2.0]}, 3, 1800, "max_time"),
    ({"a": [1.0, 1.3, 1.1, 1.2], "b": [2.0, 2.1, 2.0, 2.0]}, 4, 1800, "precise"),   # precise wins over the limits
])
def test_stop_rule(values, rounds, elapsed, reason):
    results, trials = _results(values)
    decision = stopping.decide(stopping.widths(results, trials, MANIFEST), StopRule(0.5, 4, 30), rounds, elapsed)
    assert decision.reason == reason
    assert decision.widest["backend"] == "a" and decision.pairs == 2
    assert decision.too_wide == (0 if reason == "precise" else 1)


def test_stopping_is_recorded_and_said():
    manifest = Manifest(run="r", backends=["a", "b"], trials=2, until_precise=StopRule(0.05, 6, 20.0))
    assert "has not stopped" in stopping.describe(manifest)
    for rounds, reason in ((3, None), (4, None), (4, "max_trials")):   # a resumed check replaces its round's entry
        stopping.record(manifest, StopDecision(reason, rounds, 900.0, 40, 3, {"backend": "b", "metric": "flush_s",
                                                                              "n": rounds, "relative_half_width": 0.123}))
    assert [c["rounds"] for c in manifest.stopping.checks] == [3, 4]
    text = stopping.describe(manifest)
    assert "within ±5% of its mean" in text and "up to 6 trials per backend or 20 minutes" in text
    assert "Stopped at the maximum number of trials, after 4 rounds" in text
    assert "3 of 40 intervals were still wider; the widest interval was flush_s of b at ±12.3% of its mean" in text
    manifest.stopping.reason = "precise"
    assert "Stopped because every interval was that narrow after 4 rounds" in stopping.describe(manifest)
    manifest.stopping.reason = "max_time"
    assert "Stopped at the time limit" in stopping.describe(manifest)
    assert stopping.describe(Manifest(run="r", trials=3)) == "Trials: a fixed number, 3 per backend, planned before the run."
    manifest.stopping.reason = None
    line = stopping.progress_line(manifest.stopping, manifest.until_precise)
    assert line == ("round 4: 3 of 40 intervals wider than ±5%; the widest interval was flush_s of b at ±12.3% of its "
                    "mean -> one more round")


def test_next_round_is_the_plan_of_one_more_round():
    order = schedule.plan(["a", "b", "c"], 2, seed=5)
    nxt = schedule.next_round(["a", "b", "c"], order, seed=5)
    assert order + nxt == schedule.plan(["a", "b", "c"], 3, seed=5)
    assert [t.seq for t in nxt] == [6, 7, 8] and {t.trial for t in nxt} == {3} and {t.round for t in nxt} == {3}


def _prepare(tmp_path, monkeypatch, **kwargs):
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "msbench.yaml").write_text(CONFIG)
    return study.prepare(backends="fake,fake-b", run_id="precise", results_root=tmp_path / "runs", profile="smoke",
                         controls=False, config=tmp_path / "msbench.yaml",
                         **{"trials": 2, "until_precise": 0.5, "max_trials": 5, **kwargs})


def _simulated(s, flush: dict[int, float], stop_at=None):
    """run_one that records a trial of the planned flush time, without a stack."""
    def run_one(planned):
        if stop_at and (planned.round, planned.backend) == stop_at:
            raise KeyboardInterrupt
        record = TrialRecord(s.run.run_id, planned.backend, "fake", "native", planned.trial, planned.seq, status="ok",
                             failed_phase="", duration_s=50.0)
        row = {"run": record.run, "backend": record.backend, "provider": "native", "trial": record.trial,
               "seq": record.seq, "phase": "flush", "metric": "flush_s", "value": flush[planned.trial], "unit": "s"}
        s.run.write_trial(record, pd.DataFrame([row], columns=TIDY_COLUMNS), None, None, [])
        return record
    return run_one


def test_a_run_adds_rounds_until_precise_and_resumes(tmp_path, monkeypatch):
    s = _prepare(tmp_path, monkeypatch)
    assert s.manifest.until_precise == StopRule(0.5, 5, None, stopping.calibrated_level(2, 5, 0.5))
    flush = {1: 1.0, 2: 1.2, 3: 1.1, 4: 1.2}   # at the calibrated 98%: ±579% of the mean at n=2, ±37% at n=3
    with pytest.raises(KeyboardInterrupt):   # interrupted in the added round
        study.execute(s, _simulated(s, flush, stop_at=(3, "fake-b")), show=False)
    manifest = json.loads((s.run.path / "manifest.json").read_text())
    assert len(manifest["order"]) == 6 and manifest["stopping"]["reason"] is None
    resumed = _prepare(tmp_path, monkeypatch)   # the same command resumes
    assert [t.backend for t in resumed.pending()] == ["fake-b"]
    outcomes = study.execute(resumed, _simulated(resumed, flush), show=False)
    assert [o.trial for o in outcomes] == [3]
    manifest = json.loads((s.run.path / "manifest.json").read_text())
    assert manifest["order"] == [asdict(t) for t in schedule.plan(["fake", "fake-b"], 3, manifest["order_seed"])]
    assert manifest["stopping"]["reason"] == "precise" and manifest["stopping"]["rounds"] == 3
    assert [c["rounds"] for c in manifest["stopping"]["checks"]] == [2, 3]
    assert "after 3 rounds" in stopping.describe(Manifest.from_json(json.dumps(manifest)))
    again = _prepare(tmp_path, monkeypatch)   # a stopped run stays stopped
    assert study.execute(again, _simulated(again, flush), show=False) == []
    # a tighter rule given on resume replaces the recorded one and extends the run, up to its maximum
    tighter = _prepare(tmp_path, monkeypatch, until_precise=0.01, max_trials=4)
    assert [o.trial for o in study.execute(tighter, _simulated(tighter, flush), show=False)] == [4, 4]
    manifest = json.loads((s.run.path / "manifest.json").read_text())
    assert manifest["stopping"]["reason"] == "max_trials" and manifest["until_precise"]["target"] == 0.01


def test_max_minutes_counts_trial_time(tmp_path, monkeypatch, capsys):
    s = _prepare(tmp_path, monkeypatch, max_minutes=1.5)   # two rounds of 50 s trials: 200 s
    study.execute(s, _simulated(s, {1: 1.0, 2: 3.0}), show=False)
    assert s.manifest.stopping.reason == "max_time" and len(s.order) == 4
    out = capsys.readouterr().out
    assert "fake trial 1 (round 1, #" in out and "-> stop: 3.3 min of trials reached the limit of 1.5 min" in out
