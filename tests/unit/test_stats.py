"""msbench.stats against scipy, numpy and textbook values."""

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from msbench import stats as mstats


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
    out = mstats.summarize(sample_df, n_resamples=999)
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


def test_summarize_bca_equals_scipy_bootstrap(sample_df):
    out = mstats.summarize(sample_df, n_resamples=2000, seed=7)
    for row in out.itertuples():
        x = values_of(sample_df, row.backend, row.metric)
        ref = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=2000,
                              confidence_level=0.95, rng=np.random.default_rng(7))
        assert row.ci_low == pytest.approx(ref.confidence_interval.low, rel=1e-12)
        assert row.ci_high == pytest.approx(ref.confidence_interval.high, rel=1e-12)
        assert row.ci_low < row.mean < row.ci_high


def test_summarize_t_interval_equals_scipy(sample_df):
    out = mstats.summarize(sample_df, n_resamples=999)
    for row in out.itertuples():
        x = values_of(sample_df, row.backend, row.metric)
        low, high = stats.t.interval(0.95, x.size - 1, loc=np.mean(x), scale=stats.sem(x))
        assert (row.t_low, row.t_high) == pytest.approx((low, high), rel=1e-12)


def test_t_interval_hand_worked():
    # x = 10, 12, 14: mean 12, sd 2, se 2/sqrt(3) = 1.15470, t(0.975, 2) = 4.30265,
    # half-width 4.96828 -> [7.03172, 16.96828].
    out = mstats.summarize(results({("a", "m"): [10, 12, 14]}), n_resamples=999)
    row = out.iloc[0]
    assert row["mean"] == 12 and row["sd"] == pytest.approx(2.0)
    assert row["t_low"] == pytest.approx(7.03172, abs=1e-5)
    assert row["t_high"] == pytest.approx(16.96828, abs=1e-5)


def test_summarize_confidence_level_is_honoured(sample_df):
    narrow = mstats.summarize(sample_df, confidence=0.80, n_resamples=999)
    wide = mstats.summarize(sample_df, confidence=0.99, n_resamples=999)
    assert ((wide["t_high"] - wide["t_low"]) > (narrow["t_high"] - narrow["t_low"])).all()
    assert ((wide["ci_high"] - wide["ci_low"]) > (narrow["ci_high"] - narrow["ci_low"])).all()


def test_summarize_interval_does_not_depend_on_other_groups(sample_df):
    alone = sample_df[(sample_df["backend"] == "garage") & (sample_df["metric"] == "load_cold_s")]
    full = mstats.summarize(sample_df, n_resamples=999, seed=3)
    part = mstats.summarize(alone, n_resamples=999, seed=3)
    row = full[(full["backend"] == "garage") & (full["metric"] == "load_cold_s")].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (part.iloc[0]["ci_low"], part.iloc[0]["ci_high"])


def test_summarize_small_and_degenerate_groups():
    df = results({("a", "one"): [5.0], ("a", "two"): [4.0, 6.0], ("a", "flat"): [3.0] * 4})
    out = mstats.summarize(df, n_resamples=999).set_index("metric")
    one, two, flat = out.loc["one"], out.loc["two"], out.loc["flat"]
    assert one["n"] == 1 and one["mean"] == 5.0
    assert np.isnan([one["sd"], one["cv"], one["ci_low"], one["ci_high"],
                     one["t_low"], one["t_high"]]).all()
    assert np.isnan([two["ci_low"], two["ci_high"]]).all()  # BCa needs n >= 3
    assert np.isfinite([two["t_low"], two["t_high"]]).all()
    assert flat["sd"] == 0 and flat["cv"] == 0
    assert (flat["ci_low"], flat["ci_high"]) == (3.0, 3.0)
    assert (flat["t_low"], flat["t_high"]) == (3.0, 3.0)


def test_summarize_ignores_missing_values():
    df = results({("a", "m"): [1.0, 2.0, 3.0, 4.0]})
    df.loc[1, "value"] = np.nan
    row = mstats.summarize(df, n_resamples=999).iloc[0]
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


def test_compare_pvalues_equal_scipy(sample_df):
    out = mstats.compare(sample_df, "minio", n_resamples=999)
    assert list(out.columns) == mstats.COMPARE_COLUMNS
    assert set(out["backend"]) == {"garage", "seaweedfs"}
    for row in out.itertuples():
        a = values_of(sample_df, row.backend, row.metric)
        b = values_of(sample_df, "minio", row.metric)
        assert (row.n_backend, row.n_baseline) == (a.size, b.size)
        assert row.p_welch == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
        assert row.p_mwu == pytest.approx(
            stats.mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-12)
        assert row.ratio_mean == pytest.approx(a.mean() / b.mean())
        assert row.ratio_median == pytest.approx(np.median(a) / np.median(b))
        assert row.ratio_mean_low <= row.ratio_mean <= row.ratio_mean_high
        assert row.ratio_median_low <= row.ratio_median <= row.ratio_median_high
        assert 0 < row.p_bm <= 1


def test_compare_ratio_interval_is_independent_percentile_bootstrap(sample_df):
    row = mstats.compare(sample_df, "minio", n_resamples=999, seed=5).iloc[0]
    a = values_of(sample_df, row["backend"], row["metric"])
    b = values_of(sample_df, "minio", row["metric"])
    ref = stats.bootstrap(
        (a, b), lambda x, y, axis: np.mean(x, axis=axis) / np.mean(y, axis=axis),
        method="percentile", n_resamples=999, rng=np.random.default_rng(5))
    assert row["ratio_mean_low"] == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert row["ratio_mean_high"] == pytest.approx(ref.confidence_interval.high, rel=1e-12)


def test_compare_holm_is_per_backend_on_welch(sample_df):
    out = mstats.compare(sample_df, "minio", n_resamples=999)
    for _, block in out.groupby("backend"):
        np.testing.assert_allclose(block["p_holm"], mstats.holm(block["p_welch"].to_numpy()))


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


def test_aa_false_positive_rate_is_nominal():
    n_sims, alpha = 400, 0.05
    rate = mstats.aa_false_positive_rate(n_sims, 10, seed=2024, alpha=alpha)
    low, high = stats.binom.ppf([0.001, 0.999], n_sims, alpha) / n_sims
    assert low <= rate <= high
    assert rate <= 0.08


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
    nan_cols = ["ratio_mean_low", "ratio_mean_high", "ratio_median_low", "ratio_median_high",
                "p_welch", "p_mwu", "p_bm", "p_holm"]

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
    assert np.isnan(out.loc["flat_diff", ["p_welch", "p_holm"]].astype(float)).all()
    # Only the pair metric was testable by Welch, so its Holm family has size 1.
    assert pair["p_holm"] == pytest.approx(pair["p_welch"])


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


# --- trials_needed --------------------------------------------------------------


Z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)


@pytest.mark.parametrize("cv", [0.05, 0.1, 0.15, 0.2, 0.3])
def test_trials_needed_matches_textbook_formula(cv):
    df = results({("a", "m"): with_cv(6, 100.0, cv), ("b", "m"): with_cv(9, 50.0, cv)})
    row = mstats.trials_needed(df, effect=0.10).iloc[0]
    assert row["cv_pooled"] == pytest.approx(cv)
    normal = 2 * Z**2 * cv**2 / 0.10**2
    # The normal approximation ignores the t critical value; Guenther's
    # correction (+ z_{1-a/2}^2 / 4) accounts for it.
    assert abs(row["trials_needed"] - np.ceil(normal)) <= 2
    assert abs(row["trials_needed"] - np.ceil(normal + stats.norm.ppf(0.975) ** 2 / 4)) <= 1
    assert row["trials_needed_text"] == str(row["trials_needed"])


def test_trials_needed_gives_the_promised_power():
    # cv = effect -> d = 1 -> 17 trials; simulate Welch tests at that n.
    df = results({("a", "m"): with_cv(5, 10.0, 0.1), ("b", "m"): with_cv(5, 10.0, 0.1)})
    n = int(mstats.trials_needed(df, effect=0.10).iloc[0]["trials_needed"])
    rng = np.random.default_rng(0)

    def power(k):
        a, b = rng.normal(0.0, 1.0, (4000, k)), rng.normal(1.0, 1.0, (4000, k))
        return np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05)

    assert n == 17
    assert power(n) >= 0.78 and power(n - 3) < 0.8


def test_trials_needed_grows_with_cv_and_reports_cap():
    cvs = [0.02, 0.05, 0.1, 0.2, 0.4]
    df = pd.concat([results({("a", f"m{i}"): with_cv(5, 1.0, cv), ("b", f"m{i}"): with_cv(5, 1.0, cv)})
                    for i, cv in enumerate(cvs)])
    out = mstats.trials_needed(df, effect=0.10)
    assert list(out.columns) == mstats.TRIALS_COLUMNS
    assert np.all(np.diff(out["trials_needed"].to_numpy(dtype=float)) > 0)
    huge = mstats.trials_needed(df[df["metric"] == "m4"], effect=0.001, cap=500).iloc[0]
    assert pd.isna(huge["trials_needed"]) and huge["trials_needed_text"] == "> 500"


def test_trials_needed_edge_cases():
    df = results({("a", "single"): [3.0], ("b", "single"): [4.0],
                  ("a", "flat"): [2.0] * 3, ("b", "flat"): [2.0] * 3})
    out = mstats.trials_needed(df).set_index("metric")
    assert pd.isna(out.loc["single", "trials_needed"]) and out.loc["single", "n_backends"] == 0
    assert out.loc["single", "trials_needed_text"].startswith("unknown")
    assert out.loc["flat", "cv_pooled"] == 0 and out.loc["flat", "trials_needed"] == 2
