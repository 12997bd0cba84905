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



# --- the family and compare ------------------------------------------------------------

STORES = ("minio", "garage", "seaweedfs")


def family(metrics=("index_build_s", "load_cold_s"), stores=STORES, **kwargs) -> mstats.Family:
    return mstats.Family("minio", stores, metrics, **kwargs)


def test_family_comparisons_level_and_statement():
    five = mstats.Family("minio", ("minio", "a", "b", "c", "d"), ("m1", "m2", "m3"))
    assert five.pairs[:4] == (("a", "minio"), ("b", "minio"), ("c", "minio"), ("d", "minio"))
    assert len(five.pairs) == 10 and five.size == 30
    assert five.level == pytest.approx(1 - 0.05 / 30)
    assert mstats.Family("minio", five.stores, ("m1",), pairwise=False).size == 4
    sentence = five.statement()
    assert "4 stores against minio and the 6 pairs of the other stores, 30 comparisons" in sentence
    assert "99.83%" in sentence and "at most 5%" in sentence and "m1, m2, m3" in sentence
    with pytest.raises(ValueError, match="baseline"):
        mstats.Family("nope", STORES, ("m",))
    with pytest.raises(ValueError, match="confidence"):
        mstats.Family("minio", STORES, ("m",), confidence=95)
    with pytest.raises(ValueError, match="thresholds"):
        mstats.Thresholds(equivalence=0)


def test_compare_rows_columns_and_descriptive_metrics(sample_df):
    out = mstats.compare(sample_df, family(("index_build_s",)), n_resamples=99)
    assert list(out.columns) == mstats.COMPARE_COLUMNS
    pairs = set(zip(out["backend"], out["other"], out["metric"]))
    assert pairs == {("garage", "minio", "index_build_s"), ("garage", "minio", "load_cold_s"),
                     ("seaweedfs", "minio", "index_build_s"), ("seaweedfs", "minio", "load_cold_s"),
                     ("garage", "seaweedfs", "index_build_s")}   # pairs of other stores: primary metrics only
    descriptive = out[~out["primary"]]
    assert (descriptive["verdict"] == "").all() and descriptive["claim_low"].isna().all()
    assert descriptive["ratio_low"].notna().all()
    assert set(out.loc[out["primary"], "verdict"]) <= set(mstats.VERDICTS)


def test_paired_analysis_is_the_paired_t_on_log_ratios(sample_df):
    out = mstats.compare(sample_df, family(), n_resamples=99)
    fam = family()
    for row in out[out["primary"]].itertuples():
        sel = sample_df[sample_df["metric"] == row.metric].pivot(index="trial", columns="backend", values="value")
        both = sel[[row.backend, row.other]].dropna()
        if row.n_pairs != min(row.n_backend, row.n_other):
            continue
        d = np.log(both[row.backend]) - np.log(both[row.other])
        assert row.method == mstats.PAIRED_METHOD and row.df == d.size - 1
        low, high = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
        assert (row.ratio, row.ratio_low, row.ratio_high) == pytest.approx(np.exp([d.mean(), low, high]))
        low, high = stats.t.interval(fam.level, d.size - 1, loc=d.mean(), scale=stats.sem(d))
        assert (row.claim_low, row.claim_high) == pytest.approx(np.exp([low, high]))


def test_independent_analysis_has_welch_error_and_hsu_df(sample_df):
    # Without round numbers, or when each store lost a different round, the samples are independent.
    for df in (sample_df.drop(columns="trial"),
               sample_df.drop(sample_df.index[((sample_df["backend"] == "minio") & (sample_df["trial"] == 0))
                                              | ((sample_df["backend"] == "seaweedfs") & (sample_df["trial"] == 1))])):
        out = mstats.compare(df, family(), n_resamples=99)
        row = out[(out["backend"] == "seaweedfs") & (out["metric"] == "index_build_s")].iloc[0]
        a, b = np.log(values_of(df, "seaweedfs", "index_build_s")), np.log(values_of(df, "minio", "index_build_s"))
        se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        assert row["method"] == mstats.INDEPENDENT_METHOD and row["df"] == min(a.size, b.size) - 1
        half = stats.t.ppf(0.975, row["df"]) * se
        assert (row["ratio_low"], row["ratio_high"]) == pytest.approx(np.exp([a.mean() - b.mean() - half,
                                                                              a.mean() - b.mean() + half]))


def test_a_lost_trial_is_paired_on_the_rounds_left():
    df = results({("minio", "m"): [1.0, 1.1, 0.9], ("b", "m"): [2.0, 2.3]})   # b lost round 3
    row = mstats.compare(df, mstats.Family("minio", ("minio", "b"), ("m",)), n_resamples=99).iloc[0]
    assert row["n_pairs"] == 2 and row["method"] == mstats.PAIRED_METHOD and row["df"] == 1
    assert row["ratio"] == pytest.approx(np.sqrt(2.0 / 1.0 * 2.3 / 1.1))


def test_claim_words_follow_the_interval_direction_and_p():
    rng = np.random.default_rng(12)
    df = results({("base", "time_s"): rng.lognormal(np.log(10), 0.02, 6),
                  ("slow", "time_s"): rng.lognormal(np.log(13), 0.02, 6),
                  ("fast", "time_s"): rng.lognormal(np.log(7), 0.02, 6),
                  ("base", "qps"): rng.lognormal(np.log(10), 0.02, 6),
                  ("slow", "qps"): rng.lognormal(np.log(7), 0.02, 6),
                  ("fast", "qps"): rng.lognormal(np.log(10), 0.002, 6)})
    fam = mstats.Family("base", ("base", "fast", "slow"), ("time_s", "qps"))
    out = mstats.compare(df, fam, {"qps": "higher"}, n_resamples=99).set_index(["backend", "other", "metric"])
    verdict = out["verdict"]
    assert verdict["slow", "base", "time_s"] == "worse" and verdict["fast", "base", "time_s"] == "better"
    assert verdict["fast", "slow", "time_s"] == "better"
    assert verdict["slow", "base", "qps"] == "worse"   # lower throughput
    assert verdict["fast", "base", "qps"] in ("equivalent", "not detectable")
    alpha = 1 - fam.confidence
    for row in out.itertuples():
        assert (row.verdict in ("better", "worse")) == (row.p_claim < alpha)
        assert row.equivalent == (row.p_equivalent < alpha)


def test_claims_are_symmetric_in_which_store_is_the_other():
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(0.1, 0.05, 5), rng.lognormal(0.0, 0.05, 5)
    one = mstats.compare(results({("x", "m"): a, ("y", "m"): b}), mstats.Family("y", ("y", "x"), ("m",))).iloc[0]
    two = mstats.compare(results({("x", "m"): a, ("y", "m"): b}), mstats.Family("x", ("x", "y"), ("m",))).iloc[0]
    assert one["ratio"] == pytest.approx(1 / two["ratio"])
    assert (one["claim_low"], one["claim_high"]) == pytest.approx((1 / two["claim_high"], 1 / two["claim_low"]))
    assert {one["verdict"], two["verdict"]} in ({"better", "worse"}, {"equivalent"}, {"not detectable"})


def test_constant_groups_are_never_taken_as_exactly_known():
    # The byte counts: 30 bytes in a million, recorded to the byte: no difference is claimed,
    # the two are equivalent within 5%; equal constants are identical; a 20% constant offset is claimed.
    df = results({("base", "bucket_bytes"): [1_000_000] * 3, ("b", "bucket_bytes"): [1_000_030, 1_000_030, 1_000_031],
                  ("c", "bucket_bytes"): [1_000_000] * 3, ("d", "bucket_bytes"): [1_200_000] * 3}, unit="bytes")
    fam = mstats.Family("base", ("base", "b", "c", "d"), ("bucket_bytes",))
    out = mstats.compare(df, fam, thresholds={"bucket_bytes": mstats.Thresholds(resolution=1.0)},
                         n_resamples=99).set_index(["backend", "other"])
    assert out.loc[("b", "base"), "verdict"] == "equivalent" and not out.loc[("b", "base"), "identical"]
    assert out.loc[("c", "base"), "verdict"] == "equivalent" and out.loc[("c", "base"), "identical"]
    assert out.loc[("d", "base"), "verdict"] == "worse"
    assert out.loc[("b", "base"), "claim_high"] > out.loc[("b", "base"), "claim_low"]   # never zero width
    # Without the resolution the same offset is still not claimed: it is below the 1% floor.
    assert mstats.compare(df, fam, n_resamples=99).set_index(["backend", "other"]).loc[("b", "base"), "verdict"] == \
        "equivalent"
    # A floor from the resolution: 1 kB steps on 50 kB is 2%, so a 1.5% difference is not claimed.
    coarse = results({("base", "m"): [50_000] * 3, ("b", "m"): [50_750] * 3})
    row = mstats.compare(coarse, mstats.Family("base", ("base", "b"), ("m",)),
                         thresholds={"m": mstats.Thresholds(resolution=1000.0)}).iloc[0]
    assert row["floor"] == pytest.approx(0.02) and row["verdict"] != "worse"


def test_a_constant_offset_in_every_round_is_claimed_from_the_rounds():
    # b = a + 20% of a's mean in every round: the log ratios vary a little with a, the paired analysis
    # sees the offset; an exact constant ratio has no noise to go on and falls back to the independent one.
    a = np.array([100.0, 104.0, 97.0])
    fam = mstats.Family("base", ("base", "b"), ("m",))
    offset = mstats.compare(results({("base", "m"): a, ("b", "m"): a + 20.0}), fam).iloc[0]
    assert offset["method"] == mstats.PAIRED_METHOD and offset["verdict"] == "worse"
    scaled = mstats.compare(results({("base", "m"): a, ("b", "m"): 1.2 * a}), fam).iloc[0]
    assert scaled["method"] == mstats.INDEPENDENT_METHOD and scaled["claim_high"] - scaled["claim_low"] > 0.05


def test_compare_edge_cases_say_why_there_is_no_interval():
    df = results({("base", "single"): [1.0, 1.1, 0.9], ("b", "single"): [1.0],
                  ("b", "no_baseline"): [1.0, 2.0, 3.0],
                  ("base", "zero"): [0.0, 1.0, 2.0], ("b", "zero"): [1.0, 1.0, 2.0],
                  ("base", "noisy"): with_cv(3, 1.0, 0.4), ("b", "noisy"): with_cv(3, 1.0, 0.05)})
    fam = mstats.Family("base", ("base", "b"), ("single", "no_baseline", "zero", "noisy"))
    out = mstats.compare(df, fam, n_resamples=99).set_index("metric")
    assert out.loc["single", "no_interval"] == "needs ≥ 2 trials of each (n=1 vs 3)"
    assert out.loc["no_baseline", "no_interval"] == "needs ≥ 2 trials of each (n=3 vs 0)"
    assert out.loc["zero", "no_interval"].startswith("a value ≤ 0")
    assert (out.loc[["single", "no_baseline", "zero"], "verdict"] == "not detectable").all()
    assert out.loc[["single", "zero"], ["ratio_low", "claim_low"]].isna().all().all()
    assert out.loc["noisy", "caveat"] == "coverage unverified: CV 40% above the 20% verified"
    assert out.loc["single", "caveat"] == ""


def test_compare_rejects_unknown_direction(sample_df):
    with pytest.raises(ValueError, match="direction"):
        mstats.compare(sample_df, family(), {"load_cold_s": "faster"}, n_resamples=99)


def test_controls_are_judged_at_the_family_level_without_joining_it(sample_df):
    fam = family(("index_build_s",), stores=("minio", "garage"))
    twin = sample_df.assign(backend=sample_df["backend"].replace({"seaweedfs": "minio-aa"}))
    out = mstats.compare(twin, fam, pairs=[("minio-aa", "minio")], n_resamples=99)
    assert set(out["backend"]) == {"minio-aa"} and fam.size == 1
    row = out[out["metric"] == "index_build_s"].iloc[0]
    d = np.log(values_of(twin, "minio-aa", "index_build_s")) - np.log(values_of(twin, "minio", "index_build_s"))
    low, high = stats.t.interval(fam.level, d.size - 1, loc=d.mean(), scale=stats.sem(d))
    assert (row["claim_low"], row["claim_high"]) == pytest.approx(np.exp([low, high]))


def test_a_one_sided_family_claims_only_the_expected_difference():
    fam = mstats.Family("minio", ("minio", "slow"), ("a", "b"), pairwise=False, expected="worse")
    assert fam.level == pytest.approx(1 - 2 * 0.05 / 2)
    assert "Only 'worse' is claimed (one-sided" in fam.statement() and "one-sided bound at 97.5%" in fam.statement()
    base = [1.0, 1.1, 1.05]
    df = results({("minio", "a"): base, ("slow", "a"): [3.0, 3.4, 3.1],
                  ("minio", "b"): base, ("slow", "b"): [0.3, 0.33, 0.31]})
    out = mstats.compare(df, fam, n_resamples=9).set_index("metric")
    assert out.loc["a", "verdict"] == "worse"
    assert out.loc["b", "verdict"] == "not detectable"   # faster under a quota: no claim either way
    assert not out["equivalent"].any() and out["p_equivalent"].isna().all()
    d = np.log([3.0, 3.4, 3.1]) - np.log(base)
    one_tail = stats.t.sf((d.mean() - np.log1p(mstats.MINIMUM_EFFECT)) / stats.sem(d), 2)
    assert out.loc["a", "p_claim"] == pytest.approx(fam.size * one_tail) and out.loc["a", "p_claim"] < 0.05
    low = d.mean() - stats.t.ppf(1 - 0.05 / fam.size, 2) * stats.sem(d)   # the one-sided bound read
    assert out.loc["a", "claim_low"] == pytest.approx(np.exp(low))
    higher = mstats.compare(df, fam, {"b": "higher"}, n_resamples=9).set_index("metric")
    assert (higher["verdict"] == "worse").all()   # b: a rate that fell under the quota
    with pytest.raises(ValueError, match="expected"):
        mstats.Family("minio", ("minio", "slow"), ("a",), expected="slower")


def test_a_one_sided_control_holds_its_level_and_sees_a_quota_at_three_rounds():
    """The positive control's family (docs/method.md, "The controls"): 7 phases, n=3, paired by round,
    20,000 draws. At the floor (true ratio 1.01, the worst case for a false 'worse'; log-SDs 0.05-0.5 and
    a round effect) any false claim in 5.1% (MC SE 0.16 points; 1 - (1 - 0.05/7)^7 = 4.9% expected): the
    level is held and spent. A 3x slowdown at a log-SD of 0.1 is claimed on a phase in 99% (on all 7 in
    95%); the former rule (both twins in one two-sided family of 14) 71% (9%)."""
    rng = np.random.default_rng(21)
    draws, phases = 20000, 7
    fam = mstats.Family("base", ("base", "slow"), tuple(f"p{i}" for i in range(phases)), pairwise=False,
                        expected="worse")
    sd = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.15])[None, :, None]
    rounds = rng.normal(0, 0.5, (draws, 1, 3))
    base = rounds + sd * rng.standard_normal((draws, phases, 3))
    at_floor = rounds + np.log1p(mstats.MINIMUM_EFFECT) + sd * rng.standard_normal((draws, phases, 3))
    false = mstats._decision(at_floor, base, 3, mstats.Thresholds(), fam.level).above.any(axis=1).mean()
    se = mstats.monte_carlo_se(ALPHA, draws)
    assert ALPHA - 3 * se - 0.005 <= false <= ALPHA + 3 * se, false
    steady = rounds + 0.02 * rng.standard_normal((draws, phases, 3))
    slow = rounds + np.log(3) + 0.1 * rng.standard_normal((draws, phases, 3))
    seen = mstats._decision(slow, steady, 3, mstats.Thresholds(), fam.level).above
    former = mstats._decision(slow, steady, 3, mstats.Thresholds(), 1 - ALPHA / (2 * phases)).above
    assert seen.mean() > 0.97 and seen.all(axis=1).mean() > 0.9, (seen.mean(), seen.all(axis=1).mean())
    assert former.mean() < 0.8 and former.all(axis=1).mean() < 0.2


def test_brunner_munzel_only_against_the_baseline_and_where_it_can_reject():
    df = results({("base", "m"): [1.0, 1.1, 1.2], ("b", "m"): [2.0, 2.1, 2.2], ("c", "m"): [3.0, 3.1, 3.2],
                  ("base", "k"): [1.0, 1.1, 1.2, 1.3], ("b", "k"): [2.0, 2.1, 2.2, 2.3], ("c", "k"): [1.0] * 4})
    out = mstats.compare(df, mstats.Family("base", ("base", "b", "c"), ("m", "k")), n_resamples=999)
    out = out.set_index(["backend", "other", "metric"])
    assert not out.loc[("b", "base", "m"), "bm_testable"] and np.isnan(out.loc[("b", "base", "m"), "p_bm"])
    assert out.loc[("b", "base", "k"), "p_bm"] == pytest.approx(2 / 70)   # 2 / C(8, 4)
    assert not out.loc[("b", "c", "k"), "bm_testable"]


# --- best store ------------------------------------------------------------------------------


def claimed(stores, verdicts: dict[tuple[str, str], str], metric="m") -> pd.DataFrame:
    """compare-like rows: (backend, other) -> verdict on one primary metric."""
    return pd.DataFrame([{"backend": a, "other": b, "metric": metric, "primary": True, "verdict": v}
                         for (a, b), v in verdicts.items()])


def test_best_store_only_when_claimed_better_than_every_other():
    fam = mstats.Family("base", ("base", "a", "b"), ("m",))
    cases = [
        ({("a", "base"): "better", ("b", "base"): "better", ("a", "b"): "not detectable"}, "", ("a", "b")),
        ({("a", "base"): "better", ("b", "base"): "better", ("a", "b"): "better"}, "a", ("a",)),
        # a chain through the baseline: a beats base, base beats b
        ({("a", "base"): "better", ("b", "base"): "worse", ("a", "b"): "not detectable"}, "a", ("a",)),
        ({("a", "base"): "worse", ("b", "base"): "worse", ("a", "b"): "equivalent"}, "base", ("base",)),
        ({("a", "base"): "equivalent", ("b", "base"): "not detectable", ("a", "b"): "better"}, "", ("base", "a")),
        # claims that contradict each other (a cycle needs a false claim): no leader is named
        ({("a", "base"): "better", ("b", "base"): "worse", ("a", "b"): "worse"}, "", ()),
    ]
    for verdicts, best, leading in cases:
        found = mstats.leaders(claimed(fam.stores, verdicts), fam).iloc[0]
        assert (found["best"], found["leaders"]) == (best, leading), verdicts


def test_best_store_ignores_comparisons_outside_the_family():
    fam = mstats.Family("base", ("base", "a", "b"), ("m",), pairwise=False)
    rows = claimed(fam.stores, {("a", "base"): "better", ("b", "base"): "better", ("a", "b"): "better"})
    found = mstats.leaders(rows, fam).iloc[0]
    assert found["best"] == "" and found["leaders"] == ("a", "b")


# --- the rule's error rates, simulated (the cases) -----------------------------------------

ALPHA = 0.05
CV_PRIMARY = np.array([0.03, 0.08, 0.20, 0.005, 0.02, 0.03])   # insert, flush, index build, bytes, load, latency


def within_level(check: mstats.RuleCheck, alpha: float = ALPHA) -> bool:
    return check.false_claim <= alpha + 3 * check.false_claim_se


def covers(check: mstats.RuleCheck, confidence: float = 0.95) -> bool:
    return abs(check.coverage - confidence) <= 3 * check.coverage_se


@pytest.mark.parametrize("n", [3, 5])
def test_report_wide_false_claims_with_1_3_and_5_stores_equal_to_the_baseline(n):
    """All stores equal to the baseline on 6 primary metrics (lognormal, CVs as measured), every
    claim (better, worse, equivalent, best store) counted: measured 1.8-2.7% with 4,000 draws
    (MC SE 0.2-0.3 points). The previous rule (Holm within each store) claimed falsely in 12-21%."""
    for stores in (1, 3, 5):
        check = mstats.simulate_rule(np.ones((stores + 1, 6)), CV_PRIMARY, [n] * (stores + 1), draws=4000,
                                     seed=10 * n + stores)
        assert within_level(check), (stores, check)
        assert covers(check), (stores, check)


def test_unequal_noise_keeps_coverage_and_level():
    """A store at CV 30% against a baseline at 5% on 19 metrics (the previous rule: coverage 94.2%,
    one store's false-claim rate 10%): exact for lognormal noise; for normal noise the log scale
    holds up to RATIO_VERIFIED_MAX_CV (beyond it the report shows the caveat)."""
    cv = np.array([[0.05], [0.30]])
    for n in (3, 10):
        check = mstats.simulate_rule(np.ones((2, 19)), cv, [n, n], draws=4000, seed=n)
        assert covers(check) and within_level(check), (n, check)
    normal = mstats.simulate_rule(np.ones((2, 19)), np.array([[0.05], [mstats.RATIO_VERIFIED_MAX_CV]]), [5, 5],
                                  noise="normal", draws=4000, seed=5)
    assert normal.coverage >= 0.945 - 3 * normal.coverage_se and within_level(normal), normal


def test_a_lost_trial_keeps_coverage_and_level():
    """3 vs 2, the noisier store (CV 30% vs 5%) losing its last trial: the previous rule covered 92.2%
    and claimed falsely in 7.5% of one-metric comparisons; paired on the 2 rounds left it is exact."""
    check = mstats.simulate_rule(np.ones((2, 1)), np.array([[0.05], [0.30]]), [3, 2], draws=40000, seed=8)
    assert covers(check) and within_level(check), check


def test_a_round_effect_is_removed_by_pairing():
    check = mstats.simulate_rule(np.ones((3, 6)), CV_PRIMARY, [3, 3, 3], round_effect=0.8, draws=4000, seed=4)
    assert covers(check) and within_level(check), check


def test_equivalence_is_claimed_falsely_at_most_at_its_level():
    """A store exactly at the margin (1.05) is not equivalent: with one comparison, the rule calls it
    so only when the interval misses on that side, (1 - confidence) / 2 of the time."""
    check = mstats.simulate_rule(np.array([[1.0], [1.05]]), 0.01, [5, 5], draws=40000, seed=10)
    assert abs(check.false_claim - ALPHA / 2) <= 3 * check.false_claim_se, check


def test_no_best_store_is_named_between_two_equal_leaders():
    """Two stores 20% faster than the baseline and equal to each other (the previous rule named one of
    them best in 60% of runs at n=3 and 100% at n=5): a best store only when claimed better than
    every other store. Measured 0.01% with 4,000 draws; most runs name both as tied leaders."""
    geomeans = np.ones((3, 6))
    geomeans[1:, 0] = 0.8
    check = mstats.simulate_rule(geomeans, CV_PRIMARY, [5, 5, 5], draws=4000, seed=9)
    assert check.false_best <= 3 * mstats.monte_carlo_se(ALPHA, check.draws) and within_level(check), check
    assert check.power > 0.1   # the two are claimed better than the baseline: the test can see them


def test_constant_groups_and_constant_offsets_are_not_claimed_below_the_floor():
    """Seeded, 4,000 runs each, n=3, at the level of 5 stores x 6 metrics: byte counts constant up to one
    byte, 30 bytes in a million apart (the previous rule claimed "worse" in every run); a store 0.5%
    above the baseline in every round (baseline CV 5%): no claim, and both equivalent. A store equal to the
    baseline in every round leaves no noise to pair on: the independent analysis decides, without a claim."""
    rng = np.random.default_rng(31)
    level = mstats.Family("s0", ("s0", "s1", "s2", "s3", "s4"), tuple("abcdef")).level
    base = np.full((4000, 3), 1_000_000.0)
    store = 1_000_030.0 + rng.binomial(1, 0.3, (4000, 3))
    times = rng.lognormal(np.log(100), 0.05, (4000, 3))
    for a, b, resolution in ((store, base, 1.0), (times + 0.5, times, 0.0)):
        d = mstats._decision(np.log(a), np.log(b), 3, mstats.Thresholds(resolution=resolution), level)
        assert not (d.above | d.below).any() and d.equivalent.all()
    same = mstats._decision(np.log(times), np.log(times), 3, mstats.Thresholds(), level)
    assert not (same.paired | same.above | same.below).any()


def test_compare_decides_as_the_simulation_does():
    """simulate_rule runs the same decision as compare; check it on 150 frames (n=3, 3 stores)."""
    rng = np.random.default_rng(17)
    fam = mstats.Family("s0", ("s0", "s1", "s2"), ("m",))
    logs = np.log([1.0, 1.0, 0.7])[None, :, None] + 0.05 * rng.standard_normal((150, 3, 3))
    found, expected = [], []
    for run in logs:
        df = results({(f"s{i}", "m"): np.exp(run[i]) for i in range(3)})
        out = mstats.compare(df, fam, n_resamples=9)
        found.append(list(out["verdict"]))
        words = []
        for store, other in fam.pairs:
            d = mstats._decision(run[int(store[1])], run[int(other[1])], 3, mstats.Thresholds(), fam.level)
            words.append("worse" if d.above else "better" if d.below else "equivalent" if d.equivalent
                         else "not detectable")
        expected.append(words)
    assert found == expected
    assert {"better", "not detectable"} <= {w for ws in found for w in ws}


def test_any_false_claim_needs_the_interval_to_miss():
    # The partition argument behind the family's error bound, checked on random intervals and truths.
    rng = np.random.default_rng(3)
    estimate, truth = rng.normal(0, 0.1, (2, 200_000))
    se = rng.uniform(0.001, 0.1, 200_000)
    floor, margin = np.log1p(0.01), np.log1p(0.05)
    above, below, equivalent = mstats._claims(estimate, se, 4, 0.95, floor, margin)
    half = stats.t.ppf(0.975, 4) * se
    missed = np.abs(estimate - truth) > half
    false = (above & (truth <= floor)) | (below & (truth >= -floor)) | (equivalent & (np.abs(truth) >= margin))
    assert false.any() and not (false & ~missed).any()


# --- power: exact, at the run's level --------------------------------------------------------------


def test_claim_and_equivalence_power_agree_with_the_simulated_rule():
    """The closed forms against simulate_rule (same rule, lognormal): one store 10% slower / equal on
    4 metrics, n=5, CV 3%: 4,000 draws x 4 comparisons, MC SE about 0.004."""
    slower = np.ones((2, 4))
    slower[1] = 1.10
    check = mstats.simulate_rule(slower, 0.03, [5, 5], pairwise=False, draws=4000, seed=21)
    assert check.power == pytest.approx(mstats.claim_power(5, 0.03, 0.10, 4), abs=0.015)
    assert 0.2 < check.power < 0.9   # where the comparison is informative
    rng = np.random.default_rng(22)
    logs = np.sqrt(np.log1p(0.01 ** 2)) * rng.standard_normal((2, 20000, 5))
    d = mstats._decision(logs[0], logs[1], 5, mstats.Thresholds(), 1 - 0.05 / 4)
    assert d.equivalent.mean() == pytest.approx(mstats.equivalence_power(5, 0.01, 4), abs=0.01)


def test_power_is_computed_at_the_run_level():
    # A run analysed at 98% (its stop rule's calibrated level) needs a larger difference than at 95%.
    at_95, at_98 = (mstats.detectable_difference(5, 0.05, 24, confidence) for confidence in (0.95, 0.98))
    assert at_98 > at_95
    df = pd.concat([results({(s, "m"): with_cv(5, 1.0, 0.05) for s in STORES})])
    found = [mstats.detectability(df, family(("m",), confidence=c)).iloc[0] for c in (0.95, 0.98)]
    assert found[1]["detectable"] > found[0]["detectable"]
    assert found[1]["trials_equivalence"] >= found[0]["trials_equivalence"]


def test_detectable_difference_and_trials_needed_are_consistent():
    for n, cv in ((3, 0.01), (5, 0.03), (10, 0.1)):
        d = mstats.detectable_difference(n, cv, 24)
        assert mstats.claim_power(n, cv, d, 24) == pytest.approx(0.8, abs=1e-3)
    n = mstats.trials_needed(0.10, 0.03, 24)
    assert mstats.claim_power(n, 0.03, 0.10, 24) >= 0.8 > mstats.claim_power(n - 1, 0.03, 0.10, 24)
    n = mstats.trials_for_equivalence(0.02, 24)
    assert mstats.equivalence_power(n, 0.02, 24) >= 0.8 > mstats.equivalence_power(n - 1, 0.02, 24)
    assert mstats.trials_needed(0.01, 0.3, 24) is None   # a difference at the 1% floor is never claimed
    assert mstats.detectable_difference(5, 0.0, 24) == pytest.approx(mstats.MINIMUM_EFFECT, rel=1e-3)


def test_detectability_ranges_follow_the_cv_bounds():
    cvs = [0.02, 0.05, 0.1, 0.2]
    df = pd.concat([results({("a", f"m{i}"): with_cv(5, 1.0, cv), ("b", f"m{i}"): with_cv(5, 1.0, cv)})
                    for i, cv in enumerate(cvs)])
    fam = mstats.Family("a", ("a", "b"), tuple(f"m{i}" for i in range(4)))
    out = mstats.detectability(df, fam)
    assert list(out.columns) == mstats.DETECTABILITY_COLUMNS
    log_var = [np.var(np.log(with_cv(5, 1.0, cv)), ddof=1) for cv in cvs]
    np.testing.assert_allclose(out["cv_pooled"], np.sqrt(np.expm1(log_var)))
    np.testing.assert_allclose(out["cv_high"], np.sqrt(np.expm1(np.array(log_var) * 8 / stats.chi2.ppf(0.025, 8))))
    for kind in ("detectable", "trials", "trials_equivalence"):
        known = out.dropna(subset=[f"{kind}_high"])
        assert (known[f"{kind}_low"] <= known[kind]).all() and (known[kind] <= known[f"{kind}_high"]).all()
    assert np.all(np.diff(out["detectable"]) > 0) and (out["n"] == 5).all()


def test_detectability_edge_cases():
    df = results({("a", "single"): [3.0], ("b", "single"): [4.0],
                  ("a", "flat"): [2.0] * 3, ("b", "flat"): [2.0] * 3})
    out = mstats.detectability(df, mstats.Family("a", ("a", "b"), ("single", "flat"))).set_index("metric")
    assert np.isnan(out.loc["single", "cv_pooled"]) and pd.isna(out.loc["single", "trials"])
    assert out.loc["flat", "cv_pooled"] == 0 and out.loc["flat", "detectable"] == pytest.approx(0.01, rel=1e-3)
    assert out.loc["flat", "trials_equivalence"] == 2


# --- coverage of the mean's interval (summary tables) ------------------------------------------------


def test_mean_interval_covers_its_level():
    """Student t interval of a mean, normal and lognormal noise, CV 5-30%, n = 3-10: 5,000 draws per
    cell (coverage SE 0.3 points; the band 93-97% is about ±6 SE)."""
    rng = np.random.default_rng(0)
    for cv in (0.05, 0.30):
        for n in (3, 10):
            z = rng.standard_normal((5000, n))
            sigma = np.sqrt(np.log1p(cv ** 2))
            for x in (1 + cv * z, np.exp(sigma * z - sigma ** 2 / 2)):
                low, high = mstats._mean_interval(x, 0.95)
                assert 0.93 <= np.mean((low <= 1) & (1 <= high)) <= 0.97, (cv, n)


# --- Brunner-Munzel ----------------------------------------------------------------------------


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
