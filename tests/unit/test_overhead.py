"""The paired analysis of `msbench overhead`."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from msbench.run import overhead


def _raw(bare, ours, work="search", monitor=0.001):
    return pd.DataFrame([{"repetition": r, "work": work, "way": way, "seconds": s, "monitor_seconds": m}
                         for r, (b, o) in enumerate(zip(bare, ours))
                         for way, s, m in (("bare", b, np.nan), ("ours", o, monitor))])


def test_overhead_is_the_geometric_mean_ratio_with_a_t_interval_on_log_ratios():
    bare = np.array([1.0, 1.1, 0.9, 1.2, 1.05])
    ratios = np.array([1.01, 1.03, 1.02, 1.00, 1.04])
    row = overhead.summary(_raw(bare, bare * ratios)).iloc[0]
    logs = np.log(ratios)
    half = stats.t.ppf(0.975, 4) * logs.std(ddof=1) / math.sqrt(5)
    assert row.work == "search" and row.n == 5
    assert row.overhead_pct == pytest.approx(100 * (np.exp(logs.mean()) - 1))
    assert row.ci_low_pct == pytest.approx(100 * (np.exp(logs.mean() - half) - 1))
    assert row.ci_high_pct == pytest.approx(100 * (np.exp(logs.mean() + half) - 1))
    assert row.median_ratio == pytest.approx(1.02)
    assert row.bare_mean_s == pytest.approx(bare.mean())
    assert row.monitor_pct == pytest.approx(100 * 0.001 / bare.mean())


def test_pairing_cancels_drift_between_repetitions():
    """The stack slows fivefold over the run; ours costs 0.3% +- 0.1% in each repetition. Unpaired,
    that is lost in the drift; paired, the interval is tight and below the 1% target."""
    rng = np.random.default_rng(1)
    bare = np.linspace(1.0, 5.0, 25)
    row = overhead.summary(_raw(bare, bare * rng.normal(1.003, 0.001, 25))).iloc[0]
    assert 0 < row.ci_low_pct < row.overhead_pct < row.ci_high_pct < 1
    assert row.p_paired < 0.001


def test_a_repetition_missing_one_way_is_left_out_and_n_says_so():
    raw = pd.concat([_raw([1.0, 1.0, 1.0], [1.01, 1.02, 1.03]),
                     pd.DataFrame([{"repetition": 3, "work": "search", "way": "bare", "seconds": 9.0}]),
                     _raw([2.0, 2.0], [2.0, 2.0], work="insert")])
    table = overhead.summary(raw).set_index("work")
    assert table.loc["search", "n"] == 3 and table.loc["search", "bare_mean_s"] == pytest.approx(1.0)
    assert table.loc["insert", "overhead_pct"] == 0 and math.isnan(table.loc["insert", "ci_low_pct"])
    assert "search: overhead +2.00% [95% CI" in overhead.describe(table.reset_index())
    assert "n=3; the monitor's own reads 0.100% of the bare time" in overhead.describe(table.reset_index())
