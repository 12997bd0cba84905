"""msbench.analysis.stats against scipy, numpy and textbook values."""

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from msbench.analysis import stats as mstats


def results(samples: dict[tuple[str, str], list[float] | np.ndarray], unit: str = "s") -> pd.DataFrame:
    """Tidy results frame from {(backend, metric): values}, one row per trial."""
    rows = [
        {"run": "r1", "backend": backend, "provider": "local", "trial": trial,
         "phase": "p", "metric": metric, "value": float(value), "unit": unit}
        for (backend, metric), values in samples.items()
        for trial, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def with_cv(n: int, mean: float, cv: float) -> np.ndarray:
    """n values whose sample mean and sd (ddof=1) are exactly mean and cv*mean."""
    z = np.linspace(-1.0, 1.0, n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean * (1 + cv * z)


@pytest.fixture(scope="module")
def sample_df() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    return results({
        ("minio", "index_build_s"): rng.lognormal(3.0, 0.2, 8),
        ("minio", "load_cold_s"): rng.lognormal(1.0, 0.3, 6),
        ("seaweedfs", "index_build_s"): rng.lognormal(3.1, 0.25, 8),
        ("seaweedfs", "load_cold_s"): rng.lognormal(1.2, 0.3, 7),
        ("garage", "index_build_s"): rng.lognormal(2.9, 0.1, 5),
        ("garage", "load_cold_s"): rng.lognormal(1.0, 0.5, 6),
    })


def values_of(df: pd.DataFrame, backend: str, metric: str) -> np.ndarray:
    sel = (df["backend"] == backend) & (df["metric"] == metric)
    return df.loc[sel, "value"].to_numpy()


# --- summarize ---------------------------------------------------------------


def test_summarize_moments_equal_numpy(sample_df):
    out = mstats.summarize(sample_df)
    assert list(out.columns) == mstats.SUMMARY_COLUMNS
    assert len(out) == 6
    for row in out.itertuples():
        x = values_of(sample_df, row.backend, row.metric)
        assert row.n == x.size
        assert row.mean == pytest.approx(np.mean(x), rel=1e-12)
        assert row.median == pytest.approx(np.median(x), rel=1e-12)
        assert row.sd == pytest.approx(np.std(x, ddof=1), rel=1e-12)
        assert row.cv == pytest.approx(np.std(x, ddof=1) / np.mean(x), rel=1e-12)
        assert row.unit == "s"


def test_summarize_t_interval_equals_scipy(sample_df):
    out = mstats.summarize(sample_df)
    for row in out.itertuples():
        x = values_of(sample_df, row.backend, row.metric)
        low, high = stats.t.interval(0.95, x.size - 1, loc=np.mean(x), scale=stats.sem(x))
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=1e-12)
        assert row.ci_method.startswith("Student t")


def test_t_interval_hand_worked():
    # x = 10, 12, 14: mean 12, sd 2, se 2/sqrt(3) = 1.15470, t(0.975, 2) = 4.30265,
    # half-width 4.96828 -> [7.03172, 16.96828].
    row = mstats.summarize(results({("a", "m"): [10, 12, 14]})).iloc[0]
    assert row["mean"] == 12 and row["sd"] == pytest.approx(2.0)
    assert row["ci_low"] == pytest.approx(7.03172, abs=1e-5)
    assert row["ci_high"] == pytest.approx(16.96828, abs=1e-5)


def test_summarize_confidence_level_is_honoured(sample_df):
    narrow = mstats.summarize(sample_df, confidence=0.80)
    wide = mstats.summarize(sample_df, confidence=0.99)
    assert ((wide["ci_high"] - wide["ci_low"]) > (narrow["ci_high"] - narrow["ci_low"])).all()


def test_summarize_flags_cv_beyond_the_verified_range():
    row = mstats.summarize(results({("a", "m"): with_cv(5, 10.0, 0.5)})).iloc[0]
    assert row["ci_method"].startswith("Student t (coverage unverified: CV above 30%")


def test_summarize_small_and_degenerate_groups():
    df = results({("a", "one"): [5.0], ("a", "two"): [4.0, 6.0], ("a", "flat"): [3.0] * 4})
    out = mstats.summarize(df).set_index("metric")
    one, two, flat = out.loc["one"], out.loc["two"], out.loc["flat"]
    assert one["n"] == 1 and one["mean"] == 5.0 and one["ci_method"] == ""
    assert np.isnan([one["sd"], one["cv"], one["ci_low"], one["ci_high"]]).all()
    assert np.isfinite([two["ci_low"], two["ci_high"]]).all()
    assert flat["sd"] == 0 and flat["cv"] == 0
    assert (flat["ci_low"], flat["ci_high"]) == (3.0, 3.0)


def test_summarize_ignores_missing_values():
    df = results({("a", "m"): [1.0, 2.0, 3.0, 4.0]})
    df.loc[1, "value"] = np.nan
    row = mstats.summarize(df).iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(8 / 3)


# --- holm ---------------------------------------------------------------------


def test_holm_textbook_example():
    adjusted = mstats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_is_monotone_bounded_and_at_least_raw():
    p = np.random.default_rng(0).uniform(0, 0.2, 25)
    adjusted = mstats.holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)
    assert adjusted[order[0]] == pytest.approx(25 * p[order[0]])


def test_holm_nan_safe_and_caps_at_one():
    np.testing.assert_allclose(mstats.holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(mstats.holm([0.6, 0.7]), [1.0, 1.0])
    assert mstats.holm([]).size == 0
    assert np.isnan(mstats.holm([np.nan, np.nan])).all()


# --- compare ------------------------------------------------------------------


def paired_values(df, backend, baseline, metric):
    """Values of the trials both backends have, aligned by trial number."""
    both = df[df["metric"] == metric].pivot(index="trial", columns="backend", values="value")
    both = both[[backend, baseline]].dropna()
    return both[backend].to_numpy(), both[baseline].to_numpy()


def test_compare_pvalues_equal_scipy(sample_df):
    out = mstats.compare(sample_df, "minio", n_resamples=999)
    assert list(out.columns) == mstats.COMPARE_COLUMNS
    assert set(out["backend"]) == {"garage", "seaweedfs"}
    for row in out.itertuples():
        a = values_of(sample_df, row.backend, row.metric)
        b = values_of(sample_df, "minio", row.metric)
        pa, pb = paired_values(sample_df, row.backend, "minio", row.metric)
        assert (row.n_backend, row.n_baseline, row.n_pairs) == (a.size, b.size, pa.size)
        assert row.p_welch == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
        assert row.p_paired == pytest.approx(stats.ttest_rel(pa, pb).pvalue, rel=1e-9)
        chosen = row.p_paired if row.paired else row.p_welch
        assert row.p_test == pytest.approx(min(1.0, mstats.SELECTION_INFLATION * chosen))
        assert row.ratio_mean == pytest.approx(a.mean() / b.mean())
        assert row.ratio_median == pytest.approx(np.median(a) / np.median(b))
        for kind in ("mean", "indep", "paired"):
            assert getattr(row, f"ratio_{kind}_low") <= row.ratio_mean <= getattr(row, f"ratio_{kind}_high")
        assert row.bm_testable and 0 < row.p_bm <= 1
        assert row.ratio_method.startswith("Fieller") and "narrower" in row.ratio_method


def test_fieller_bounds_solve_the_quadratic(sample_df):
    # Fieller (1954): the bounds are the r where (ma - r mb)^2 = t^2 (va + r^2 vb), with the
    # Welch-Satterthwaite df at the estimated ratio.
    row = mstats.compare(sample_df, "minio", n_resamples=99).iloc[0]
    a = values_of(sample_df, row["backend"], row["metric"])
    b = values_of(sample_df, "minio", row["metric"])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    r_hat = a.mean() / b.mean()
    df = (va + r_hat**2 * vb) ** 2 / (va**2 / (a.size - 1) + (r_hat**2 * vb) ** 2 / (b.size - 1))
    t = stats.t.ppf(0.975, df)
    for r in (row["ratio_indep_low"], row["ratio_indep_high"]):
        assert (a.mean() - r * b.mean()) ** 2 == pytest.approx(t**2 * (va + r**2 * vb), rel=1e-9)


def test_paired_fieller_is_the_paired_t_interval_at_ratio_one():
    # The paired Fieller interval excludes 1 exactly when the paired t test rejects at 5%.
    rng = np.random.default_rng(8)
    for _ in range(200):
        b = rng.lognormal(0, 0.1, 4)
        a = b * rng.lognormal(0.1, 0.05, 4)
        low, high, p = mstats._paired_ratio(a, b, 0.95)
        assert p == pytest.approx(stats.ttest_rel(a, b).pvalue)
        assert (low > 1 or high < 1) == (p < 0.05)


def test_compare_holm_is_per_backend_on_the_chosen_test(sample_df):
    out = mstats.compare(sample_df, "minio", n_resamples=999)
    for _, block in out.groupby("backend"):
        np.testing.assert_allclose(block["p_holm"], mstats.holm(block["p_test"].to_numpy()))


def test_compare_without_trial_numbers_is_independent_at_the_nominal_level(sample_df):
    out = mstats.compare(sample_df.drop(columns="trial"), "minio", n_resamples=99)
    assert (~out["paired"]).all() and (out["n_pairs"] == 0).all()
    np.testing.assert_allclose(out["ratio_mean_low"], out["ratio_indep_low"])
    np.testing.assert_allclose(out["p_test"], out["p_welch"])
    assert out["ratio_method"].eq("Fieller, independent (Welch df)").all()


def test_compare_uses_the_paired_analysis_when_rounds_correlate():
    rng = np.random.default_rng(21)
    rounds = rng.lognormal(0, 0.3, 6)            # a strong round effect shared by both backends
    df = results({("base", "m"): rounds * rng.lognormal(0, 0.02, 6),
                  ("b", "m"): 1.1 * rounds * rng.lognormal(0, 0.02, 6)})
    row = mstats.compare(df, "base", n_resamples=99).iloc[0]
    assert row["paired"] and row["ratio_method"].startswith("Fieller, paired")
    assert row["ratio_mean_high"] - row["ratio_mean_low"] < 0.3 * (row["ratio_indep_high"] - row["ratio_indep_low"])
    assert row["verdict"] == "worse"


def test_brunner_munzel_not_computed_where_it_cannot_reject():
    df = results({("base", "m"): [1.0, 1.1, 1.2], ("b", "m"): [2.0, 2.1, 2.2],
                  ("base", "k"): [1.0, 1.1, 1.2, 1.3], ("b", "k"): [2.0, 2.1, 2.2, 2.3]})
    out = mstats.compare(df, "base", n_resamples=999).set_index("metric")
    assert not out.loc["m", "bm_testable"] and np.isnan(out.loc["m", "p_bm"])   # 2 / C(6, 3) = 0.1
    assert out.loc["k", "bm_testable"] and out.loc["k", "p_bm"] == pytest.approx(2 / 70)


def test_brunner_munzel_statistic_equals_scipy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=7), rng.normal(1.0, 2.0, size=9)
    assert mstats._brunner_munzel_statistic(x, y) == pytest.approx(
        stats.brunnermunzel(x, y).statistic, rel=1e-12)


def test_brunner_munzel_permutation_p_close_to_scipy_at_large_n():
    # At n = 40 the t approximation scipy uses is adequate; the permutation p
    # has Monte-Carlo error ~0.003 at 9999 resamples.
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=40), rng.normal(0.5, 2.0, size=40)
    assert mstats._brunner_munzel_p(x, y, 9999, 0) == pytest.approx(
        stats.brunnermunzel(x, y).pvalue, abs=0.015)


def test_brunner_munzel_complete_separation_is_exact():
    # 3 vs 3 with no overlap: 2 of the C(6,3) = 20 splits are as extreme -> p = 0.1,
    # the same as the exact Mann-Whitney U; scipy's t approximation gives NaN here.
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    assert mstats._brunner_munzel_p(a, b, 9999, 0) == pytest.approx(0.1)
    assert stats.mannwhitneyu(a, b).pvalue == pytest.approx(0.1)


def test_real_difference_is_detected_in_the_right_direction():
    rng = np.random.default_rng(11)
    df = results({
        ("base", "index_build_s"): rng.lognormal(np.log(100), 0.05, 10),
        ("slow", "index_build_s"): rng.lognormal(np.log(130), 0.05, 10),
        ("fast", "index_build_s"): rng.lognormal(np.log(70), 0.05, 10),
        ("base", "recall_at_k"): rng.normal(0.70, 0.01, 10),
        ("slow", "recall_at_k"): rng.normal(0.91, 0.01, 10),
        ("fast", "recall_at_k"): rng.normal(0.70, 0.01, 10),
    })
    out = mstats.compare(df, "base", {"recall_at_k": "higher"}, n_resamples=999)
    verdict = out.set_index(["backend", "metric"])["verdict"]
    assert verdict["slow", "index_build_s"] == "worse"
    assert verdict["fast", "index_build_s"] == "better"
    assert verdict["slow", "recall_at_k"] == "better"
    assert verdict["fast", "recall_at_k"] == "no detectable difference at n=10"
    ratio = out.set_index(["backend", "metric"])
    assert 1.2 < ratio.loc[("slow", "index_build_s"), "ratio_mean_low"]
    assert ratio.loc[("fast", "index_build_s"), "ratio_mean_high"] < 0.8


def test_compare_default_direction_is_lower():
    rng = np.random.default_rng(12)
    df = results({("base", "unknown"): rng.normal(10, 0.1, 6),
                  ("b", "unknown"): rng.normal(20, 0.1, 6)})
    assert mstats.compare(df, "base", n_resamples=999)["direction"].iloc[0] == "lower"
    assert mstats.compare(df, "base", n_resamples=999)["verdict"].iloc[0] == "worse"
    assert mstats.compare(df, "base", {"unknown": "higher"}, n_resamples=999)["verdict"].iloc[0] == "better"


def test_compare_edge_cases_do_not_crash():
    df = results({
        ("base", "single"): [1.0, 1.1, 0.9],
        ("b", "single"): [1.0],
        ("base", "pair"): [1.0, 1.2],
        ("b", "pair"): [1.1, 1.3],
        ("b", "no_baseline"): [1.0, 2.0, 3.0],
        ("base", "flat_same"): [0.95] * 3,
        ("b", "flat_same"): [0.95] * 3,
        ("base", "flat_diff"): [0.95] * 3,
        ("b", "flat_diff"): [0.97] * 3,
    })
    out = mstats.compare(df, "base", {"flat_same": "higher", "flat_diff": "higher"},
                         n_resamples=999).set_index("metric")
    nan_cols = [*mstats.RATIO_COLUMNS, "p_bm", "p_holm"]

    single = out.loc["single"]
    assert single["verdict"] == "not enough data (n=1 vs 3)"
    assert np.isnan(single[nan_cols].astype(float)).all()
    assert single["ratio_mean"] == pytest.approx(1.0)

    missing = out.loc["no_baseline"]
    assert missing["n_baseline"] == 0 and missing["verdict"] == "not enough data (n=3 vs 0)"
    assert np.isnan(missing[nan_cols + ["ratio_mean", "mean_baseline"]].astype(float)).all()

    pair = out.loc["pair"]
    assert np.isfinite(pair["p_welch"]) and pair["verdict"] == "no detectable difference at n=2"

    assert out.loc["flat_same", "verdict"] == "identical (zero variance)"
    assert out.loc["flat_diff", "verdict"] == "better (zero variance, untested)"
    assert np.isnan(out.loc["flat_diff", ["p_welch", "p_paired", "p_test", "p_holm"]].astype(float)).all()
    # Only the pair metric was testable, so its Holm family has size 1.
    assert pair["p_holm"] == pytest.approx(pair["p_test"])


def test_compare_rejects_unknown_baseline_and_direction(sample_df):
    with pytest.raises(ValueError, match="baseline"):
        mstats.compare(sample_df, "nope")
    with pytest.raises(ValueError, match="direction"):
        mstats.compare(sample_df, "minio", {"load_cold_s": "faster"}, n_resamples=99)


# --- variance_tests -------------------------------------------------------------


def test_variance_tests_equal_scipy_levene_median(sample_df):
    out = mstats.variance_tests(sample_df)
    assert list(out.columns) == mstats.VARIANCE_COLUMNS
    for row in out.itertuples():
        groups = [values_of(sample_df, b, row.metric) for b in ("garage", "minio", "seaweedfs")]
        ref = stats.levene(*groups, center="median")
        assert row.n_groups == 3 and row.backends == "garage, minio, seaweedfs"
        assert row.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert row.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_variance_tests_need_two_groups_of_three():
    df = results({("a", "m"): [1.0, 2.0, 3.0], ("b", "m"): [4.0, 6.0],
                  ("a", "k"): [1.0, 2.0, 4.0], ("b", "k"): [3.0, 5.0, 5.5], ("c", "k"): [7.0, 8.0],
                  ("a", "flat"): [1.0] * 3, ("b", "flat"): [2.0] * 4})
    out = mstats.variance_tests(df).set_index("metric")
    assert out.loc["m", "n_groups"] == 1 and np.isnan(out.loc["m", "p_value"])
    assert out.loc["k", "n_groups"] == 2 and out.loc["k", "backends"] == "a, b"
    assert out.loc["k", "p_value"] == pytest.approx(
        stats.levene([1.0, 2.0, 4.0], [3.0, 5.0, 5.5], center="median").pvalue)
    assert np.isnan(out.loc["flat", "p_value"])


def test_brown_forsythe_is_degenerate_at_two_values():
    # Why groups of two are excluded: both deviations from the median equal half
    # the range, so there is no within-group spread and scipy reports p = 0.
    with np.errstate(divide="ignore"):
        assert stats.levene([1.0, 2.0], [3.0, 5.0], center="median").pvalue == 0


# --- latency_spread -------------------------------------------------------------


@pytest.fixture(scope="module")
def latencies() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    frames = []
    for backend, scale in (("minio", 1.0), ("garage", 2.0)):
        for trial in range(2):
            frames.append(pd.DataFrame({
                "run": "r1", "backend": backend, "provider": "local", "trial": trial,
                "query": np.arange(5000), "latency_ms": scale * rng.lognormal(0.0, 1.0, 5000)}))
    return pd.concat(frames, ignore_index=True)


def test_latency_spread_point_estimates_equal_numpy(latencies):
    out = mstats.latency_spread(latencies, n_resamples=200)
    for row in out.itertuples():
        x = latencies.loc[latencies["backend"] == row.backend, "latency_ms"].to_numpy()
        q25, q50, q75, q95, q99 = np.quantile(x, [0.25, 0.5, 0.75, 0.95, 0.99])
        assert row.n_queries == 10000
        assert (row.p50_ms, row.p95_ms, row.p99_ms) == pytest.approx((q50, q95, q99))
        assert row.p99_p50 == pytest.approx(q99 / q50)
        assert row.iqr_ms == pytest.approx(q75 - q25)
        for name in mstats.SPREAD_QUANTILES:
            assert getattr(row, f"{name}_low") <= getattr(row, name) <= getattr(row, f"{name}_high")


def test_latency_spread_intervals_cover_true_quantiles(latencies):
    # minio latencies are lognormal(0, 1): p50 = 1, p99 = exp(2.3263) = 10.24.
    row = mstats.latency_spread(latencies, n_resamples=500, seed=1).set_index("backend").loc["minio"]
    assert row["p50_ms_low"] < 1.0 < row["p50_ms_high"]
    assert row["p99_ms_low"] < np.exp(stats.norm.ppf(0.99)) < row["p99_ms_high"]
    assert row["p99_ms_high"] - row["p99_ms_low"] < 3.0


def test_latency_spread_p50_interval_equals_scipy_percentile_bootstrap():
    x = np.random.default_rng(5).lognormal(0.0, 1.0, 500)
    lat = pd.DataFrame({"backend": "a", "latency_ms": x})
    row = mstats.latency_spread(lat, n_resamples=300, seed=8).iloc[0]
    ref = stats.bootstrap((x,), np.median, method="percentile", n_resamples=300,
                          rng=np.random.default_rng(8))
    assert row["p50_ms_low"] == pytest.approx(ref.confidence_interval.low)
    assert row["p50_ms_high"] == pytest.approx(ref.confidence_interval.high)


def test_latency_spread_per_trial_and_fast(latencies):
    start = time.perf_counter()
    out = mstats.latency_spread(latencies, by=("backend", "trial"), n_resamples=1000)
    assert time.perf_counter() - start < 10
    assert list(out[["backend", "trial"]].itertuples(index=False, name=None)) == [
        ("garage", 0), ("garage", 1), ("minio", 0), ("minio", 1)]
    assert (out["n_queries"] == 5000).all()


def test_latency_spread_withholds_tail_intervals_for_few_queries():
    lat = pd.DataFrame({"backend": ["a"] * 300 + ["b"],
                        "latency_ms": np.r_[np.random.default_rng(1).lognormal(size=300), 2.0]})
    out = mstats.latency_spread(lat, n_resamples=200).set_index("backend")
    a, b = out.loc["a"], out.loc["b"]
    assert np.isfinite([a["p50_ms_low"], a["p95_ms_low"], a["iqr_ms_low"]]).all()
    assert np.isnan([a["p99_ms_low"], a["p99_ms_high"], a["p99_p50_low"]]).all()
    assert np.isfinite(a["p99_ms"])
    assert b["n_queries"] == 1 and b["p50_ms"] == 2.0 and np.isnan(b["p50_ms_low"])


# --- coverage of every interval the report prints ----------------------------------

COVERAGE_DRAWS = 5000   # coverage SE 0.3 points: the 93-97% band is +-6 SE around 95%
TRUE_RATIO = 1.2


def draws(dist: str, cv: float, mean: float, z: np.ndarray) -> np.ndarray:
    """Values with population mean ``mean`` and CV ``cv`` from standard normals ``z``."""
    if dist == "normal":
        return mean * (1 + cv * z)
    sigma = np.sqrt(np.log1p(cv**2))
    return mean * np.exp(sigma * z - sigma**2 / 2)


def coverage_table(seed: int = 0) -> pd.DataFrame:
    """Share of simulated samples whose interval covers the true value, per method and cell.

    True values: the population mean (1) and the ratio of population means (TRUE_RATIO).
    "chosen" is the interval the verdict uses (narrower of paired and independent); ``rho``
    is the correlation of the two backends within a round (0: no round effect).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for dist in ("normal", "lognormal"):
        for cv in (0.05, 0.10, 0.30):
            for n in (3, 5, 10):
                for rho in (0.0, 0.6):
                    z_b, z_new = rng.standard_normal((2, COVERAGE_DRAWS, n))
                    b = draws(dist, cv, 1.0, z_b)
                    a = draws(dist, cv, TRUE_RATIO, rho * z_b + np.sqrt(1 - rho**2) * z_new)
                    r = mstats._ratio_analyses(a, b, 0.95, (a, b))
                    independent = mstats._ratio_analyses(a, b, 0.95, None)
                    found = {"ratio, paired Fieller": (r["ratio_paired_low"], r["ratio_paired_high"]),
                             "ratio, chosen": (r["ratio_mean_low"], r["ratio_mean_high"])}
                    if rho == 0:
                        found["mean, Student t"] = mstats._mean_interval(b, 0.95)
                        found["ratio, independent Fieller"] = (independent["ratio_mean_low"],
                                                              independent["ratio_mean_high"])
                    truth = {"mean, Student t": 1.0}
                    for method, (low, high) in found.items():
                        true = truth.get(method, TRUE_RATIO)
                        rows.append({"method": method, "dist": dist, "cv": cv, "n": n, "rho": rho,
                                     "coverage": np.mean((low <= true) & (true <= high))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def coverage() -> pd.DataFrame:
    return coverage_table()


def test_every_printed_interval_covers_93_to_97_percent(coverage):
    # Without a round effect every interval the report prints must hold its 95% label.
    independent_rounds = coverage[coverage["rho"] == 0]
    outside = independent_rounds[~independent_rounds["coverage"].between(0.93, 0.97)]
    assert outside.empty, outside.to_string()
    assert set(independent_rounds["method"]) == {"mean, Student t", "ratio, independent Fieller",
                                                 "ratio, paired Fieller", "ratio, chosen"}


def test_paired_intervals_hold_their_level_with_a_round_effect(coverage):
    # The paired interval is exact under any correlation; the chosen one may then be the
    # independent interval, which ignores the (positive) correlation and so only errs wide.
    correlated = coverage[coverage["rho"] > 0].set_index("method")
    assert correlated.loc["ratio, paired Fieller", "coverage"].between(0.93, 0.97).all()
    assert correlated.loc["ratio, chosen", "coverage"].between(0.93, 0.985).all()


def test_the_claim_rule_keeps_its_false_positive_rate():
    # Equal means: the rule (chosen test and CI excluding 1, one metric) may claim <= alpha.
    for n in (3, 5, 10):
        for cv in (0.05, 0.3):
            rate = mstats.claim_power(n, cv, 0.0, 1, draws=20000, seed=n)
            assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 20000), (n, cv, rate)


def test_aa_false_positive_rate_is_nominal():
    n_sims, alpha = 400, 0.05
    rate = mstats.aa_false_positive_rate(n_sims, 10, seed=2024, alpha=alpha, n_resamples=99)
    low, high = stats.binom.ppf([0.001, 0.999], n_sims, alpha) / n_sims
    assert low / 2 <= rate <= high   # the selection's adjustment makes the rule slightly conservative
    assert rate <= 0.08


# --- power and detectability ----------------------------------------------------------


def test_power_of_the_report_rule_is_far_below_the_single_t_test_figure():
    # One t test at alpha 0.05 promised 80% power at n = 6 for 10% at CV 5%; the report's rule
    # (Holm over 16 metrics, CI excluding 1) has about 0.3.
    power = mstats.claim_power(6, 0.05, 0.10, 16)
    assert 0.15 < power < 0.4
    assert mstats.claim_power(6, 0.05, 0.10, 1) > 0.7   # alone, at alpha: close to the t test's 80%
    assert mstats.trials_needed(0.10, 0.05, 16) > 6


def test_simulated_power_agrees_with_brute_force_compare():
    # n = 3 (the default), CV 5%, a 25% difference in one of 4 metrics: run compare itself on each
    # simulated run (full Holm, all four metrics) and count how often it calls the real difference.
    n, cv, effect, family, sims = 3, 0.05, 0.25, 4, 400
    rng = np.random.default_rng(5)
    sigma = np.sqrt(np.log1p(cv**2))
    called = 0
    for _ in range(sims):
        noise = np.exp(sigma * rng.standard_normal((2, family, n)) - sigma**2 / 2)
        noise[0, 0] *= 1 + effect
        df = results({(backend, f"m{k}"): noise[i, k] for i, backend in enumerate(("b", "base"))
                      for k in range(family)})
        out = mstats.compare(df, "base", n_resamples=19)
        called += out.set_index("metric").loc["m0", "verdict"] in ("better", "worse")
    simulated = mstats.claim_power(n, cv, effect, family)
    assert 0.2 < simulated < 0.8   # a setting where the check is informative
    assert called / sims == pytest.approx(simulated, abs=0.075)   # 3 SE of the brute force


def test_detectable_difference_and_trials_needed_are_consistent():
    for n, cv in ((3, 0.05), (6, 0.05), (10, 0.1)):
        d = mstats.detectable_difference(n, cv, 16)
        assert mstats.claim_power(n, cv, d, 16) >= 0.8 > mstats.claim_power(n, cv, d / 1.02, 16)
    n = mstats.trials_needed(0.10, 0.05, 16)
    assert mstats.claim_power(n, 0.05, 0.10, 16) >= 0.8 > mstats.claim_power(n - 1, 0.05, 0.10, 16)
    assert mstats.trials_needed(0.01, 0.3, 16) is None   # beyond MAX_TRIALS


def test_detectability_ranges_follow_the_cv_bounds():
    cvs = [0.02, 0.05, 0.1, 0.2]
    df = pd.concat([results({("a", f"m{i}"): with_cv(5, 1.0, cv), ("b", f"m{i}"): with_cv(5, 1.0, cv)})
                    for i, cv in enumerate(cvs)])
    out = mstats.detectability(df, family=16)
    assert list(out.columns) == mstats.DETECTABILITY_COLUMNS
    np.testing.assert_allclose(out["cv_pooled"], cvs)
    # Chi-square bounds of a CV with 8 df.
    np.testing.assert_allclose(out["cv_high"] / out["cv_pooled"], np.sqrt(8 / stats.chi2.ppf(0.025, 8)))
    assert (out["detectable_low"] <= out["detectable"]).all() and (out["detectable"] <= out["detectable_high"]).all()
    known = out.dropna(subset=["trials_high"])
    assert (known["trials_low"] <= known["trials"]).all() and (known["trials"] <= known["trials_high"]).all()
    assert np.all(np.diff(out["detectable"]) > 0)
    assert (out["n"] == 5).all()


def test_detectability_edge_cases():
    df = results({("a", "single"): [3.0], ("b", "single"): [4.0],
                  ("a", "flat"): [2.0] * 3, ("b", "flat"): [2.0] * 3})
    out = mstats.detectability(df, family=2).set_index("metric")
    assert np.isnan(out.loc["single", "cv_pooled"]) and pd.isna(out.loc["single", "trials"])
    assert out.loc["flat", "cv_pooled"] == 0 and np.isnan(out.loc["flat", "detectable"])


# --- testability -------------------------------------------------------------------------


def test_brown_forsythe_vectorised_equals_scipy():
    rng = np.random.default_rng(6)
    groups = [rng.normal(size=5), rng.normal(0, 2, size=7), rng.normal(size=4)]
    assert mstats._brown_forsythe_p(groups) == pytest.approx(stats.levene(*groups, center="median").pvalue)


def test_brown_forsythe_cannot_detect_a_3x_spread_at_3_trials():
    assert mstats.brown_forsythe_power((3, 3)) < 0.05
    assert mstats.brown_forsythe_power((20, 20)) > mstats.TESTABLE_POWER
    out = mstats.variance_tests(results({("a", "m"): [1.0, 2.0, 4.0], ("b", "m"): [3.0, 5.0, 5.5]}))
    assert not out.iloc[0]["testable"] and np.isfinite(out.iloc[0]["p_value"])


def test_latency_percentile_intervals_hold_their_level():
    """The per-query percentile intervals the latency table prints, over 200 simulated trials of
    lognormal latencies: p50, p95 and IQR at 950 queries (the standard profile's count), p99 and
    p99/p50 at 2,000 (below 1,000 queries p99 has under 10 points beyond it and is withheld).
    200 trials give a coverage SE of about 1.5 points, hence the wider band."""
    rng = np.random.default_rng(3)
    z = stats.norm.ppf
    truth = {"p50_ms": 1.0, "p95_ms": np.exp(z(0.95)), "iqr_ms": np.exp(z(0.75)) - np.exp(z(0.25)),
             "p99_ms": np.exp(z(0.99)), "p99_p50": np.exp(z(0.99))}
    for n, names in ((950, ("p50_ms", "p95_ms", "iqr_ms")), (2000, ("p99_ms", "p99_p50"))):
        lat = pd.DataFrame({"backend": "a", "trial": np.repeat(np.arange(200), n),
                            "latency_ms": rng.lognormal(0.0, 1.0, 200 * n)})
        out = mstats.latency_spread(lat, by=("backend", "trial"), n_resamples=1000, seed=1)
        for name in names:
            covered = ((out[f"{name}_low"] <= truth[name]) & (truth[name] <= out[f"{name}_high"])).mean()
            assert 0.92 <= covered <= 0.99, (name, n, covered)
