"""Two runs side by side (``msbench compare RUN_A RUN_B``): a store before and after an upgrade, or a
cluster against a reference run. For every store both runs completed and every headline metric both
recorded: each run's mean [CI], the ratio B / A of geometric means [CI, independent: trials of two runs
are not paired], and the claim rule of the report (analysis.stats: one family over every pair compared)."""
from __future__ import annotations

import pandas as pd

from msbench.analysis import stats
from msbench.config import ConfigError
from msbench.metrics import Metric, compared
from msbench.report.comparisons import N_RESAMPLES, SEED, claim_word, interval_text
from msbench.report.page import noted, p_value, with_ci
from msbench.report.values import BYTE_UNITS, trial_values
from msbench.results import Run

COLUMNS = ["store", "metric", "unit", "better when", "A: mean [95% CI] (n)", "B: mean [95% CI] (n)",
           "ratio B / A [95% CI]", "ratio B / A [claim interval]", "verdict", "p (family-adjusted)"]


def _pairs(a: Run, b: Run, match: dict[str, str]) -> list[tuple[str, str]]:
    """(store in A, store in B): the names both completed a trial under, and the ``match`` given (A=B)."""
    done_a, done_b = (set(r.completed()["backend"]) for r in (a, b))
    pairs = [(name, name) for name in sorted(done_a & done_b) if name not in match]
    for in_a, in_b in match.items():
        for name, done, run in ((in_a, done_a, "A"), (in_b, done_b, "B")):
            if name not in done:
                raise ConfigError(f"--match {in_a}={in_b}: {name} completed no trial in run {run}; "
                                  f"it has {', '.join(sorted(done)) or 'none'}")
        pairs.append((in_a, in_b))
    return pairs


def _metrics(a: Run, b: Run, names: list[str] | None) -> list[Metric]:
    both = [m for m in compared(a.manifest.params) if m.name in {x.name for x in compared(b.manifest.params)}]
    if not names:
        return both
    unknown = sorted(set(names) - {m.name for m in both})
    if unknown:
        raise ConfigError(f"--metric {', '.join(unknown)}: not a headline metric of both runs; valid: "
                          f"{', '.join(m.name for m in both)}")
    return [m for m in both if m.name in names]


def compare_runs(a: Run, b: Run, metrics: list[str] | None = None, match: dict[str, str] | None = None) -> pd.DataFrame:
    """The side-by-side table; a ConfigError (one line) when the runs share nothing comparable. Every
    (store, metric) pair is one comparison of a single family (stats.Family), all controlled together."""
    chosen = _metrics(a, b, metrics)
    pairs = _pairs(a, b, match or {})
    frames = []
    for label, run, side in (("A", a, 0), ("B", b, 1)):
        values = trial_values(run, chosen, byte_unit="MB")   # one scale for both runs
        for pair in pairs:
            mine = values[values["backend"] == pair[side]]
            frames.append(mine.assign(backend=label, metric=pair[0] + "|" + mine["metric"]).drop(columns="trial"))
    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not pairs or tidy.empty or set(tidy["backend"]) != {"A", "B"}:
        raise ConfigError(f"runs {a.manifest.run} and {b.manifest.run} share no store with completed trials on a "
                          f"headline metric (A: {', '.join(sorted(set(a.completed()['backend']))) or 'none'}; "
                          f"B: {', '.join(sorted(set(b.completed()['backend']))) or 'none'}); name a pair with "
                          f"--match A_STORE=B_STORE")
    directions = {f"{pair[0]}|{m.name}": m.direction for pair in pairs for m in chosen}
    confidence = min(a.confidence, b.confidence)
    family = stats.Family("A", ("A", "B"), tuple(sorted(set(tidy["metric"]))), confidence=confidence)
    one_byte = {f"{pair[0]}|{m.name}": stats.Thresholds(resolution=1 / dict(BYTE_UNITS)["MB"])
                for pair in pairs for m in chosen if m.unit == "bytes"}
    raw = stats.compare(tidy, family, directions, one_byte, pairs=[("B", "A")], n_resamples=N_RESAMPLES, seed=SEED)
    means = stats.summarize(tidy, confidence=confidence).set_index(["backend", "metric"])

    def mean(side: str, key: str) -> str:
        m = means.loc[(side, key)]
        return f"{with_ci(m['mean'], m['ci_low'], m['ci_high'], 'needs n ≥ 2')} (n={m['n']})"

    names = dict(pairs)
    store, metric = zip(*(m.split("|", 1) for m in raw["metric"]))
    table = pd.DataFrame({
        "store": [s if names[s] == s else f"{s} = {names[s]}" for s in store], "metric": metric,
        "unit": raw["unit"], "better when": raw["direction"],
        "A: mean [95% CI] (n)": [mean("A", key) for key in raw["metric"]],
        "B: mean [95% CI] (n)": [mean("B", key) for key in raw["metric"]],
        "ratio B / A [95% CI]": [interval_text(r) for _, r in raw.iterrows()],
        "ratio B / A [claim interval]": [interval_text(r, "claim_low", "claim_high") for _, r in raw.iterrows()],
        "verdict": [claim_word(r) for _, r in raw.iterrows()], "p (family-adjusted)": raw["p_claim"].map(p_value)},
        columns=COLUMNS)
    order = {m.name: i for i, m in enumerate(chosen)}
    table = table.sort_values(["store", "metric"], key=lambda c: c.map(order) if c.name == "metric" else c)
    return noted(table.reset_index(drop=True), (
        f"Run A = {a.manifest.run} ({a.path}), run B = {b.manifest.run} ({b.path}). Ratios are B / A of geometric "
        f"means, independent samples (Welch's standard error on logs, df min(n) − 1): trials of two runs are not "
        f"paired. The claims over all {len(raw)} comparisons are controlled together: each is read off an interval "
        f"at {100 * family.level:.4g}%, so the chance of any false claim in this table is at most "
        f"{1 - confidence:.0%}; better / worse when it excludes ±1% (or the metric's resolution), equivalent when "
        f"it lies within ±{stats.EQUIVALENCE:.0%}, else not detectable. Byte figures in MB."))
