"""Trials until precise: add randomized rounds until every headline interval is narrow enough.

A run with a rule (``msbench run --until-precise 0.05``, or ``until_precise`` in run_all.ipynb)
first runs its planned rounds (``trials``), then, after each complete round, applies the rule:

- precise: for every backend of the run and every compared headline metric (``metrics.compared``:
  the metrics the report compares, diagnostics left out) that any completed trial recorded, the
  95% Student t interval of the mean (``stats.summarize``, the report's own) has a half-width of
  at most ``target`` times the mean's magnitude; a backend with fewer than 2 completed trials of
  a metric is not precise;
- max_trials: every backend has ``max_trials`` trials (rounds), completed or failed;
- max_time: the trials have taken ``max_minutes``, counted as the sum of their durations
  (the trial records' ``duration_s``), so the time a resumed run spent stopped does not count.

The first that holds, in that order, stops the run; otherwise one more round is planned (see
``schedule.next_round``) and run. The rule reads the trials' own records and rows, never the
report. It is kept in the manifest (``until_precise``) and each decision in ``stopping``: its reason (None while rounds are still being added), the rounds run,
the time taken, the widest interval and every check made; ``describe`` turns that into the
report's sentence. Resuming runs what is pending, then applies the rule again.

Stopping when the intervals look narrow picks runs whose spread happened to come out small, so a
95% t interval at the stop covers less than 95%: simulated with one metric deciding the stop
(normal noise, 3 rounds then up to 10, ±5%), as low as about 91%. The rule and the report
therefore compute every interval of such a run at the higher level :func:`calibrated_level`
finds by simulating this very rule (about 98% for the defaults), which covers 95% under it.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as distributions

from msbench.analysis import stats
from msbench.config import DEFAULT_MAX_TRIALS, MAX_TRIALS, ConfigError
from msbench.metrics import compared
from msbench.results import Manifest, StopDecision, StopRule, TrialRecord

CONFIDENCE = 0.95   # what every interval of the report covers
REASONS = ("precise", "max_trials", "max_time")
WIDTH_COLUMNS = ["backend", "metric", "n", "mean", "half_width", "relative"]


def make_rule(target: Any, max_trials: Any = None, max_minutes: Any = None, trials: int = 1) -> StopRule | None:
    """The rule from the user's values, checked (ConfigError naming the bad one); None without a target."""
    if target is None:
        given = [name for name, value in (("max_trials", max_trials), ("max_minutes", max_minutes)) if value is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)} only apply with until_precise (a target interval half-width, "
                              f"e.g. 0.05 for ±5% of the mean)")
        return None
    target = _number(target, "until_precise")
    if not 0 < target < 10:
        raise ConfigError(f"until_precise is the largest interval half-width as a fraction of the mean "
                          f"(0.05 = ±5%), between 0 and 10; got {target!r}")
    if max_trials is None:
        max_trials = max(DEFAULT_MAX_TRIALS, trials)
    if not isinstance(max_trials, int) or isinstance(max_trials, bool) or not trials <= max_trials <= MAX_TRIALS:
        raise ConfigError(f"max_trials must be an integer from trials ({trials}, the rounds run before the rule "
                          f"applies) to {MAX_TRIALS}; got {max_trials!r}")
    if max_minutes is not None:
        max_minutes = _number(max_minutes, "max_minutes")
        if max_minutes <= 0:
            raise ConfigError(f"max_minutes must be positive, got {max_minutes!r}")
    return StopRule(target, max_trials, max_minutes, calibrated_level(trials, max_trials, target))


# The noise levels the calibration tries, as multiples of the target: from intervals that are
# precise at once to ones that never are, through those that stop at an intermediate round,
# where the selection bites hardest.
_CV_GRID = np.geomspace(0.3, 6, 14)


def stopped_coverage(level: float, first_rounds: int, max_trials: int, target: float, cv: float,
                     runs: int = 10_000, seed: int = 0) -> float:
    """Simulated coverage of the ``level`` t interval of a mean at the round where the rule stops
    (normal noise with this ``cv``, the interval at ``level`` deciding the stop on its own: the
    worst case, as more metrics or backends deciding together dilute the selection)."""
    rng = np.random.default_rng(seed)
    x = 1 + cv * rng.standard_normal((runs, max_trials))
    n = np.arange(1, max_trials + 1)
    mean = np.cumsum(x, axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (np.cumsum(x * x, axis=1) - n * mean ** 2) / (n - 1)
        half = distributions.t.ppf(0.5 + level / 2, n - 1) * np.sqrt(var / n)
    precise = half <= target * np.abs(mean)
    precise[:, :first_rounds - 1] = False
    stop = np.where(precise.any(axis=1), precise.argmax(axis=1), max_trials - 1)
    rows = np.arange(runs)
    return float(np.mean(np.abs(mean[rows, stop] - 1) <= half[rows, stop]))


@lru_cache(maxsize=64)
def calibrated_level(first_rounds: int, max_trials: int, target: float) -> float:
    """The lowest level (in steps of 0.5 points) whose interval, under the rule (``first_rounds``
    planned, then rounds until every half-width is within ``target`` of the mean or ``max_trials``),
    still covers CONFIDENCE at every noise level of _CV_GRID; 99.5% if none below does."""
    for level in np.arange(CONFIDENCE, 0.9951, 0.005):
        if all(stopped_coverage(level, max(first_rounds, 2), max_trials, target, target * k) >= CONFIDENCE
               for k in _CV_GRID):
            return round(float(level), 3)
    return 0.995


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return number


def widths(rows: pd.DataFrame, records: list[TrialRecord], manifest: Manifest,
           confidence: float | None = None) -> pd.DataFrame:
    """Per backend of the run and compared headline metric recorded by any completed trial: n, mean,
    the interval's half-width and that as a fraction of |mean| (NaN below 2 trials). The interval is
    at ``confidence``, by default the run's own level (its stop rule's calibrated one). Read from the
    trials' own records and rows (RunDir.records, RunDir.rows)."""
    confidence = confidence or manifest.confidence
    ok = pd.DataFrame([(r.backend, r.trial) for r in records if r.status == "ok"], columns=["backend", "trial"])
    data = rows.merge(ok, on=["backend", "trial"]) if len(rows) and len(ok) else rows.iloc[0:0]
    frames = [data[(data["phase"] == m.phase) & (data["metric"] == m.metric)].assign(metric=m.name)
              for m in compared(manifest.params)]
    tidy = pd.concat([f for f in frames if len(f)] or [data.iloc[0:0]], ignore_index=True)
    tidy = tidy[np.isfinite(pd.to_numeric(tidy["value"], errors="coerce"))]
    if tidy.empty:
        return pd.DataFrame(columns=WIDTH_COLUMNS)
    summary = stats.summarize(tidy, confidence=confidence).set_index(["backend", "metric"])
    out = []
    for backend in manifest.backends or sorted(set(tidy["backend"])):
        for metric in dict.fromkeys(tidy["metric"]):
            s = summary.loc[(backend, metric)] if (backend, metric) in summary.index else None
            n = int(s["n"]) if s is not None else 0
            mean = float(s["mean"]) if s is not None else np.nan
            half = (float(s["ci_high"]) - float(s["ci_low"])) / 2 if n >= 2 else np.nan
            relative = np.nan if np.isnan(half) else 0.0 if half == 0 else half / abs(mean) if mean else np.inf
            out.append([backend, metric, n, mean, half, relative])
    return pd.DataFrame(out, columns=WIDTH_COLUMNS)


def decide(table: pd.DataFrame, rule: StopRule, rounds: int, elapsed_s: float) -> StopDecision:
    """The rule applied after ``rounds`` complete rounds that took ``elapsed_s`` of trial time: the
    reason to stop (None: run another round), and the widest interval with what is still too wide."""
    wide = table[~(table["relative"] <= rule.target)]   # NaN (too few trials) is not precise
    worst = table.assign(key=table["relative"].fillna(np.inf)).sort_values("key", ascending=False)
    widest = None
    if len(worst):
        row = worst.iloc[0]
        widest = {"backend": row["backend"], "metric": row["metric"], "n": int(row["n"]),
                  "relative_half_width": None if np.isnan(row["relative"]) else float(row["relative"])}
    if len(table) and wide.empty:
        reason = "precise"
    elif rounds >= rule.max_trials:
        reason = "max_trials"
    elif rule.max_minutes is not None and elapsed_s >= rule.max_minutes * 60:
        reason = "max_time"
    else:
        reason = None
    return StopDecision(reason, rounds, round(float(elapsed_s), 1), len(table), len(wide), widest)


def check(rows: pd.DataFrame, records: list[TrialRecord], manifest: Manifest) -> StopDecision:
    """decide() on a run's trials; the rounds are those of its planned order (all run when this is asked),
    the time is the sum of the trials' durations (a resumed run's pause does not count)."""
    rule = manifest.until_precise
    rounds = max((t.round for t in manifest.order), default=0)
    elapsed = sum(r.duration_s or 0.0 for r in records)
    return decide(widths(rows, records, manifest, rule.confidence), rule, rounds, elapsed)


def record(manifest: Manifest, decision: StopDecision) -> StopDecision:
    """The decision as the manifest's ``stopping``, with every earlier check kept (one per round count)."""
    previous = manifest.stopping.checks if manifest.stopping else []
    entry = {"rounds": decision.rounds, "elapsed_s": decision.elapsed_s, "too_wide": decision.too_wide,
             "pairs": decision.pairs, "reason": decision.reason,
             "widest": (decision.widest or {}).get("relative_half_width")}
    manifest.stopping = replace(decision, checks=[c for c in previous if c["rounds"] != decision.rounds] + [entry])
    return manifest.stopping


def _pct(x: float | None) -> str:
    return "–" if x is None else f"±{100 * x:.3g}%"


def _widest(decision: StopDecision) -> str:
    w = decision.widest
    if not w:
        return "no headline metric was recorded"
    if w["relative_half_width"] is None:
        return f"{w['metric']} of {w['backend']} had {w['n']} completed trial(s), too few for an interval"
    return f"the widest interval was {w['metric']} of {w['backend']} at {_pct(w['relative_half_width'])} of its mean"


def progress_line(decision: StopDecision, rule: StopRule) -> str:
    """One line after each check: what the rule saw and what happens next."""
    seen = (f"round {decision.rounds}: {decision.too_wide} of {decision.pairs} intervals wider than "
            f"{_pct(rule.target)}; {_widest(decision)}")
    if decision.reason == "precise":
        nxt = f"stop: every interval within {_pct(rule.target)}"
    elif decision.reason == "max_trials":
        nxt = f"stop: {rule.max_trials} trials per backend reached"
    elif decision.reason == "max_time":
        nxt = f"stop: {decision.elapsed_s / 60:.1f} min of trials reached the limit of {rule.max_minutes:g} min"
    else:
        nxt = "one more round"
    return f"{seen} -> {nxt}"


def describe(manifest: Manifest) -> str:
    """The report's sentence: how many trials ran and why that many."""
    rule = manifest.until_precise
    if rule is None:
        return f"Trials: a fixed number, {manifest.trials} per backend, planned before the run."
    limit = f" or {rule.max_minutes:g} minutes of trials" if rule.max_minutes is not None else ""
    head = (f"Trials until precise: after the {manifest.trials} planned rounds, one more round was added "
            f"at a time until every compared headline metric's 95% interval was within "
            f"{_pct(rule.target)} of its mean for every backend, up to {rule.max_trials} trials per backend{limit}. "
            f"Stopping on narrow intervals favours runs whose spread came out small, so this run's intervals "
            f"(here and in every table) are computed at the {100 * rule.confidence:.3g}% level, which covers 95% "
            f"under this rule (simulated).")
    d = manifest.stopping
    if d is None or d.reason is None:
        return f"{head} The rule has not stopped this run: it was interrupted or is still running."
    took = f"{d.rounds} rounds ({d.rounds} trials per backend, {d.elapsed_s / 60:.1f} min of trials)"
    if d.reason == "precise":
        return f"{head} Stopped because every interval was that narrow after {took}; {_widest(d)}."
    short = f"{d.too_wide} of {d.pairs} intervals were still wider; {_widest(d)}"
    if d.reason == "max_trials":
        return f"{head} Stopped at the maximum number of trials, after {took}, before reaching it: {short}."
    return f"{head} Stopped at the time limit, after {took}, before reaching it: {short}."
