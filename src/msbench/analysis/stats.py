"""Statistics the analysis notebook applies to msbench results.

Inputs are the tidy results frame (``run, backend, provider, trial, phase,
metric, value, unit``; one row per trial and metric) and the per-query latency
frame (``run, backend, provider, trial, query, latency_ms``). A trial is the
unit of replication: every test and interval on the results frame treats the
per-trial values as the independent observations. Only :func:`latency_spread`
works on individual queries, because it describes the latency distribution.

Intervals over trials are closed-form (Student t, Fieller), chosen because their
simulated coverage matches their label at 3-10 trials, where bootstraps did not
(tests/unit/test_stats.py simulates every interval the report prints). Power and
testability figures simulate the report's own decision rule. Every resampling or
simulation takes a ``seed`` and builds a fresh generator from it, so a number
never depends on which other groups were in the frame or in which order they
were computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from math import comb

import numpy as np
import pandas as pd
from scipy import stats

DIRECTIONS = ("lower", "higher")

# Below this many observations beyond a quantile on either side, a bootstrap of
# that quantile mostly resamples the same few extreme points, so its interval
# is reported as NaN rather than as a misleadingly narrow range.
MIN_TAIL_POINTS = 10

SUMMARY_COLUMNS = [
    "backend", "metric", "unit", "n", "mean", "median", "sd", "cv", "ci_low", "ci_high", "ci_method",
]
# The interval columns _ratio_analyses fills (NaN when a group has fewer than 2 trials).
RATIO_COLUMNS = [
    "ratio_mean_low", "ratio_mean_high", "p_test",
    "ratio_indep_low", "ratio_indep_high", "p_welch",
    "ratio_paired_low", "ratio_paired_high", "p_paired",
]
COMPARE_COLUMNS = [
    "backend", "baseline", "metric", "unit", "direction",
    "n_backend", "n_baseline", "n_pairs", "mean_backend", "mean_baseline",
    "median_backend", "median_baseline", "ratio_median",
    "ratio_mean", *RATIO_COLUMNS, "paired", "ratio_method",
    "p_bm", "bm_testable", "p_holm", "verdict",
]
VARIANCE_COLUMNS = ["metric", "unit", "n_groups", "backends", "statistic", "p_value", "power", "testable"]
DETECTABILITY_COLUMNS = [
    "metric", "unit", "n", "cv_dof", "cv_pooled", "cv_low", "cv", "cv_high", "effect",
    "detectable_low", "detectable", "detectable_high", "trials_low", "trials", "trials_high",
]
MEAN_METHOD = "Student t"
# Largest CV at which the simulated coverage of the intervals was verified (tests/unit/test_stats.py).
VERIFIED_MAX_CV = 0.30
# Choosing the narrower of the paired and the independent interval favours whichever happened to
# underestimate the noise: with no round effect, the chosen interval missed up to 1.46x as often as
# its level says (simulated, n = 3-10; at most 2x by Bonferroni). Both are therefore computed at
# 1 - (1 - confidence) / SELECTION_INFLATION and the chosen p multiplied by it.
SELECTION_INFLATION = 1.5
# Simulation sizes of the power and testability figures (power SE about 0.01 at 0.8).
POWER_DRAWS = 2000
MAX_TRIALS = 100
MAX_EFFECT = 10.0
# Brown-Forsythe is "not testable" when it detects this sd ratio less often than TESTABLE_POWER.
SPREAD_RATIO = 3.0
TESTABLE_POWER = 0.5
# Latency statistic -> the quantiles it is built from (for the tail-size rule).
SPREAD_QUANTILES = {
    "p50_ms": (0.50,),
    "p95_ms": (0.95,),
    "p99_ms": (0.99,),
    "p99_p50": (0.99, 0.50),
    "iqr_ms": (0.25, 0.75),
}


def _values(frame: pd.DataFrame, column: str = "value") -> np.ndarray:
    """Numeric, NaN-free values of one group: a failed or missing trial is absent, not zero."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    return values[~np.isnan(values)]


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else np.nan


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else np.nan


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size >= 2 else np.nan


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else np.nan


def _is_constant(x: np.ndarray) -> bool:
    return x.size > 0 and np.ptp(x) == 0


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _welch_df(va: np.ndarray, vb: np.ndarray, na: int, nb: int) -> np.ndarray:
    """Welch-Satterthwaite df of va + vb, the squared standard errors of two means (inf without variance)."""
    denominator = va ** 2 / (na - 1) + vb ** 2 / (nb - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (va + vb) ** 2 / denominator, np.inf)


def _two_sided_p(estimate, variance, df, scale) -> np.ndarray:
    """t-test p of estimate = 0.

    NaN when the variance is zero up to rounding relative to ``scale`` (the data's magnitude):
    a zero-variance "t = inf" is not evidence.
    """
    tested = variance > (1e-12 * scale) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(estimate) / np.sqrt(variance)
    return np.where(tested, 2 * stats.t.sf(t, df), np.nan)


def _mean_interval(x: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval of the mean along the last axis (vectorised for the coverage simulation).

    Chosen over the bootstrap because it holds its level at few trials: simulated coverage
    94.0-95.5% on normal and lognormal data with CV up to 30% at n = 3-10, where BCa gave
    72-88%. On strongly skewed data (lognormal, CV 50%) it falls to about 92%.
    """
    n = x.shape[-1]
    if n < 2:
        nan = np.full(x.shape[:-1], np.nan)
        return nan, nan
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(x, axis=-1, ddof=1) / np.sqrt(n)
    mean = np.mean(x, axis=-1)
    return mean - half, mean + half


def summarize(df: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per (backend, metric, unit): n, mean, median, sd, cv and the interval of the mean.

    ``ci_method`` names the interval so the report can say which one it prints; it is
    flagged when the CV exceeds ``VERIFIED_MAX_CV``, beyond which the simulated coverage
    of the t interval on skewed data was not verified.
    """
    rows = []
    for (backend, metric, unit), group in df.groupby(
        ["backend", "metric", "unit"], dropna=False, sort=True
    ):
        x = _values(group)
        mean, sd = _mean(x), _sd(x)
        cv = _ratio(sd, mean)
        low, high = _mean_interval(x, confidence)
        method = (MEAN_METHOD + (f", computed at {confidence:.1%}" if confidence != 0.95 else "")
                  + (f" (coverage unverified: CV above {VERIFIED_MAX_CV:.0%})" if abs(cv) > VERIFIED_MAX_CV else ""))
        rows.append({
            "backend": backend, "metric": metric, "unit": unit, "n": x.size,
            "mean": mean, "median": _median(x), "sd": sd, "cv": cv,
            "ci_low": float(low), "ci_high": float(high),
            "ci_method": method if x.size >= 2 else "",
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in input order.

    NaN p-values (tests that could not be run) stay NaN and do not count
    towards the family size, so an untestable metric does not dilute the others.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    m = int(tested.sum())
    order = np.argsort(p[tested], kind="stable")
    stepped = p[tested][order] * (m - np.arange(m))
    ranked = np.empty(m)
    ranked[order] = np.minimum(1.0, np.maximum.accumulate(stepped))
    adjusted[tested] = ranked
    return adjusted


def _fieller(ma, mb, va, vb, cov, df, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Fieller (1954) interval of ma/mb: every r with (ma - r mb)^2 <= t^2 (va - 2 r cov + r^2 vb).

    It inverts the t test of ma - r mb = 0, so it is exact for normal means at any n and
    keeps the skew of a ratio, which a bootstrap of 3 trials cannot. When the baseline mean
    is not clearly above zero (mb^2 <= t^2 vb) the confidence set is unbounded and is
    returned as (-inf, inf).
    """
    t2 = stats.t.ppf(0.5 + confidence / 2, df) ** 2
    a = mb ** 2 - t2 * vb
    half_b = ma * mb - t2 * cov
    root = np.sqrt(np.maximum(half_b ** 2 - a * (ma ** 2 - t2 * va), 0.0))
    bounded = a > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.where(bounded, (half_b - root) / a, -np.inf),
                np.where(bounded, (half_b + root) / a, np.inf))


def _independent_ratio(a: np.ndarray, b: np.ndarray, confidence: float):
    """Fieller interval with Welch-Satterthwaite df (evaluated at the estimated ratio) and Welch's p."""
    na, nb = a.shape[-1], b.shape[-1]
    ma, mb = a.mean(axis=-1), b.mean(axis=-1)
    va, vb = a.var(axis=-1, ddof=1) / na, b.var(axis=-1, ddof=1) / nb
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ma / mb
    low, high = _fieller(ma, mb, va, vb, 0.0, _welch_df(va, ratio ** 2 * vb, na, nb), confidence)
    p = _two_sided_p(ma - mb, va + vb, _welch_df(va, vb, na, nb), np.maximum(abs(ma), abs(mb)))
    return low, high, p


def _paired_ratio(a: np.ndarray, b: np.ndarray, confidence: float):
    """Fieller interval for paired means (df n - 1) and the paired t test's p, a[i] paired with b[i]."""
    n = a.shape[-1]
    ma, mb = a.mean(axis=-1), b.mean(axis=-1)
    va, vb = a.var(axis=-1, ddof=1) / n, b.var(axis=-1, ddof=1) / n
    cov = np.sum((a - ma[..., None]) * (b - mb[..., None]), axis=-1) / ((n - 1) * n)
    low, high = _fieller(ma, mb, va, vb, cov, n - 1, confidence)
    p = _two_sided_p(ma - mb, (a - b).var(axis=-1, ddof=1) / n, n - 1, np.maximum(abs(ma), abs(mb)))
    return low, high, p


def _chosen_ratio(
    a: np.ndarray, b: np.ndarray, confidence: float, pairs: tuple[np.ndarray, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """The analysis the verdict uses: interval of mean(a)/mean(b), its p and whether it is paired.

    Without ``pairs`` it is the independent one. With them (the values of the trials both
    groups have, aligned by round) it is the narrower of the paired and the independent
    interval, each computed at 1 - (1 - confidence) / SELECTION_INFLATION, and its p is
    multiplied by SELECTION_INFLATION (see there), so the chosen interval still covers
    ``confidence`` and its test keeps its level.
    """
    if pairs is None:
        low, high, p = _independent_ratio(a, b, confidence)
        return {"ratio_mean_low": low, "ratio_mean_high": high, "p_test": p,
                "paired": np.zeros(np.shape(p), bool)}
    level = 1 - (1 - confidence) / SELECTION_INFLATION
    ind_low, ind_high, ind_p = _independent_ratio(a, b, level)
    pair_low, pair_high, pair_p = _paired_ratio(*pairs, level)
    with np.errstate(invalid="ignore"):
        paired = (pair_high - pair_low) < (ind_high - ind_low)
    return {"ratio_mean_low": np.where(paired, pair_low, ind_low),
            "ratio_mean_high": np.where(paired, pair_high, ind_high),
            "p_test": np.minimum(1.0, SELECTION_INFLATION * np.where(paired, pair_p, ind_p)),
            "paired": paired}


def _ratio_analyses(
    a: np.ndarray, b: np.ndarray, confidence: float, pairs: tuple[np.ndarray, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Every interval of the ratio of means :func:`compare` reports, along the last axis.

    Independent: Fieller with Welch df (``ratio_indep_*``, Welch's p). Paired: Fieller with
    the paired variance, df n - 1 (``ratio_paired_*``, paired t p; NaN without ``pairs``).
    Plus the one the verdict uses (:func:`_chosen_ratio`).
    """
    independent = _independent_ratio(a, b, confidence)
    paired = (_paired_ratio(*pairs, confidence) if pairs is not None
              else (np.full(np.shape(independent[2]), np.nan),) * 3)
    return (dict(zip(("ratio_indep_low", "ratio_indep_high", "p_welch"), independent))
            | dict(zip(("ratio_paired_low", "ratio_paired_high", "p_paired"), paired))
            | _chosen_ratio(a, b, confidence, pairs))


def _ratio_method(paired: bool, choice: bool, confidence: float) -> str:
    """How the verdict's interval was computed, in the words the report prints."""
    method = "Fieller, paired by round (t, df n-1)" if paired else "Fieller, independent (Welch df)"
    if not choice:
        return method
    level = 1 - (1 - confidence) / SELECTION_INFLATION
    return f"{method}; narrower of paired and independent, each at {level:.1%}"


def _brunner_munzel_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Brunner-Munzel studentized statistic, vectorized (same formula as scipy.stats.brunnermunzel)."""
    nx, ny = x.shape[axis], y.shape[axis]
    pooled = stats.rankdata(np.concatenate([x, y], axis=axis), axis=axis)
    pooled_x, pooled_y = np.split(pooled, [nx], axis=axis)
    own_x, own_y = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    mean_x = pooled_x.mean(axis=axis, keepdims=True)
    mean_y = pooled_y.mean(axis=axis, keepdims=True)
    s_x = np.sum((pooled_x - own_x - mean_x + (nx + 1) / 2) ** 2, axis=axis) / (nx - 1)
    s_y = np.sum((pooled_y - own_y - mean_y + (ny + 1) / 2) ** 2, axis=axis) / (ny - 1)
    diff = np.squeeze(mean_y - mean_x, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return nx * ny * diff / ((nx + ny) * np.sqrt(nx * s_x + ny * s_y))


def _brunner_munzel_p(a: np.ndarray, b: np.ndarray, n_resamples: int, seed: int) -> float:
    """Studentized permutation Brunner-Munzel test (Neubert & Brunner 2007).

    scipy's brunnermunzel uses a t approximation that its own documentation
    says is unreliable below ~10 values per group, and it returns NaN when the
    groups do not overlap at all -- the common case of a clear benchmark
    difference. Permuting the studentized statistic is valid at any n >= 2
    (exact enumeration when n_resamples covers all splits) and gives complete
    separation its exact p-value.
    """
    if _is_constant(np.concatenate([a, b])):
        return np.nan

    def statistic(x, y, axis=-1):
        # Complete separation gives +-inf; scipy's tie tolerance turns inf - inf
        # into NaN, so use a huge finite value instead (same ordering).
        return np.nan_to_num(_brunner_munzel_statistic(x, y, axis), nan=np.nan,
                             posinf=1e300, neginf=-1e300)

    result = stats.permutation_test(
        (a, b), statistic, permutation_type="independent",
        vectorized=True, n_resamples=n_resamples, rng=_rng(seed),
    )
    return float(result.pvalue)


def _direction(metric: str, directions: Mapping[str, str]) -> str:
    direction = directions.get(metric, "lower")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction for {metric!r} must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def _rank_test_min_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p a permutation rank test can reach: complete separation, 2 / C(n_a + n_b, n_a)."""
    return min(1.0, 2 / comb(n_a + n_b, n_a))


def _pair(
    a: np.ndarray, b: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None,
    confidence: float, alpha: float, n_resamples: int, seed: int,
) -> dict:
    """Effect sizes, intervals and raw p-values for backend sample ``a`` against baseline sample ``b``."""
    row = {
        "n_backend": a.size, "n_baseline": b.size, "n_pairs": 0 if pairs is None else pairs[0].size,
        "mean_backend": _mean(a), "mean_baseline": _mean(b),
        "median_backend": _median(a), "median_baseline": _median(b),
    }
    row["ratio_mean"] = _ratio(row["mean_backend"], row["mean_baseline"])
    row["ratio_median"] = _ratio(row["median_backend"], row["median_baseline"])
    row["bm_testable"] = min(a.size, b.size) >= 2 and _rank_test_min_p(a.size, b.size) < alpha
    if min(a.size, b.size) < 2:
        return row | dict.fromkeys(RATIO_COLUMNS, np.nan) | {"paired": False, "ratio_method": "", "p_bm": np.nan}
    with np.errstate(divide="ignore", invalid="ignore"):
        analyses = _ratio_analyses(a, b, confidence, pairs)
    row |= {key: (bool(value) if key == "paired" else float(value)) for key, value in analyses.items()}
    row["ratio_method"] = _ratio_method(row["paired"], pairs is not None, confidence)
    row["p_bm"] = _brunner_munzel_p(a, b, n_resamples, seed) if row["bm_testable"] else np.nan
    return row


def _verdict(row: dict, a: np.ndarray, b: np.ndarray, direction: str, alpha: float) -> str:
    """Plain-words reading of one comparison.

    A difference is claimed only when the Holm-corrected p of the chosen analysis
    (paired or Welch) is below alpha AND its Fieller interval of the ratio of means
    excludes 1. The two nearly coincide (the interval inverts the same t test); the
    interval condition guards the few cases where their degrees of freedom differ.
    """
    n_a, n_b = a.size, b.size
    if min(n_a, n_b) < 2:
        return f"not enough data (n={n_a} vs {n_b})"

    def word(higher: bool) -> str:
        return "better" if higher == (direction == "higher") else "worse"

    if _is_constant(a) and _is_constant(b):
        if a[0] == b[0]:
            return "identical (zero variance)"
        return f"{word(a[0] > b[0])} (zero variance, untested)"
    excludes_one = row["ratio_mean_low"] > 1 or row["ratio_mean_high"] < 1
    if row["p_holm"] < alpha and excludes_one:
        return word(row["ratio_mean_low"] > 1)
    at_n = f"n={n_a}" if n_a == n_b else f"n={n_a} vs {n_b}"
    return f"no detectable difference at {at_n}"


def _trial_pairs(backend: pd.DataFrame, baseline: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """Values of the trials both groups completed, aligned by trial number (= RMIT round).

    None when the frame has no ``trial`` column, a trial number repeats, or fewer than
    2 rounds are shared: the paired analysis then does not apply.
    """
    if "trial" not in backend or "trial" not in baseline:
        return None
    sides = []
    for group in (backend, baseline):
        values = pd.to_numeric(group["value"], errors="coerce").to_numpy(float)
        trials = group["trial"].to_numpy()[~np.isnan(values)]
        if np.unique(trials).size < trials.size:
            return None
        sides.append((trials, values[~np.isnan(values)]))
    (trials_a, a), (trials_b, b) = sides
    _, in_a, in_b = np.intersect1d(trials_a, trials_b, return_indices=True)
    return (a[in_a], b[in_b]) if in_a.size >= 2 else None


def compare(
    df: pd.DataFrame,
    baseline: str,
    directions: Mapping[str, str] | None = None,
    *,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """Each non-baseline backend against ``baseline``, metric by metric.

    Needs columns ``backend, metric, unit, value``; with ``trial`` (trial k of every backend
    ran in round k) the paired analysis is offered too. Ratios are backend/baseline.

    Ratio of means: Fieller (1954) intervals, independent with Welch-Satterthwaite df
    (``ratio_indep_*``, p ``p_welch``) and paired by round (``ratio_paired_*``, paired t p
    ``p_paired``). ``ratio_mean_low/high``, ``p_test`` and ``ratio_method`` are the analysis
    the verdict uses (see :func:`_ratio_analyses`); ``paired`` says which. Bootstraps were
    dropped: at 3-10 trials their "95%" intervals covered 72-88%. The ratio of medians has
    no interval: no method we tried holds its level at these n.

    ``p_bm``: studentized permutation Brunner-Munzel, computed only when ``bm_testable``
    (its smallest attainable p, 2 / C(n_a + n_b, n_a), is below alpha; 3 vs 3 reaches only
    0.1). ``p_holm``: Holm over ``p_test`` across the metrics of one backend. Tests need >= 2
    trials per group; fewer gives NaN and a "not enough data" verdict.
    ``directions`` maps metric -> "lower" | "higher" (better); default "lower".
    """
    directions = directions or {}
    if baseline not in set(df["backend"]):
        raise ValueError(f"baseline backend {baseline!r} not in the results")
    groups = dict(iter(df.groupby(["backend", "metric"])))
    units = df.groupby("metric")["unit"].first()
    rows = []
    for backend in sorted(set(df["backend"]) - {baseline}):
        block = []
        for metric in sorted(units.index):
            if (backend, metric) not in groups and (baseline, metric) not in groups:
                continue
            mine, theirs = (groups.get((name, metric), df.iloc[0:0]) for name in (backend, baseline))
            a, b = _values(mine), _values(theirs)
            row = {"backend": backend, "baseline": baseline, "metric": metric,
                   "unit": units[metric], "direction": _direction(metric, directions),
                   **_pair(a, b, _trial_pairs(mine, theirs), confidence, alpha, n_resamples, seed)}
            block.append((row, a, b))
        for (row, a, b), p in zip(block, holm([row["p_test"] for row, _, _ in block])):
            row["p_holm"] = float(p)
            row["verdict"] = _verdict(row, a, b, row["direction"], alpha)
            rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _brown_forsythe_p(groups: Sequence[np.ndarray]) -> np.ndarray:
    """Brown-Forsythe (Levene on medians) p along the last axis of each group, vectorised over the rest."""
    deviations = [np.abs(g - np.median(g, axis=-1, keepdims=True)) for g in groups]
    sizes = np.array([g.shape[-1] for g in groups])
    total, k = sizes.sum(), len(groups)
    means = [d.mean(axis=-1) for d in deviations]
    grand = sum(d.sum(axis=-1) for d in deviations) / total
    between = sum(n * (m - grand) ** 2 for n, m in zip(sizes, means)) / (k - 1)
    within = sum(((d - m[..., None]) ** 2).sum(axis=-1) for d, m in zip(deviations, means)) / (total - k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats.f.sf(between / within, k - 1, total - k)


@lru_cache(maxsize=None)
def brown_forsythe_power(sizes: tuple[int, ...], alpha: float = 0.05, sd_ratio: float = SPREAD_RATIO,
                         draws: int = POWER_DRAWS, seed: int = 0) -> float:
    """Simulated rejection rate of Brown-Forsythe when one group's sd is ``sd_ratio`` times the others'.

    Normal data, the first group the wide one. Below ``TESTABLE_POWER`` the test is reported as
    not testable: at 3 vs 3 it rejected 0 of 4,000 times even at a 3x sd ratio, so its p is no evidence.
    """
    rng = _rng(seed)
    groups = [rng.standard_normal((draws, n)) * (sd_ratio if i == 0 else 1.0) for i, n in enumerate(sizes)]
    return float(np.mean(_brown_forsythe_p(groups) < alpha))


def variance_tests(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per metric, Brown-Forsythe test (Levene on medians) that backends differ in trial-to-trial spread.

    The median-centred form is used because timing data are skewed, where the
    mean-centred Levene and Bartlett tests reject too often. Backends with
    fewer than 3 values are left out: with 2, both absolute deviations from the
    median equal half the range, so the group has no within-group spread and
    groups of two alone give W = inf, p = 0. Fewer than 2 remaining groups, or
    no spread at all, gives NaN. ``power`` is :func:`brown_forsythe_power` at these
    group sizes; ``testable`` is whether it reaches ``TESTABLE_POWER``.
    """
    rows = []
    for (metric, unit), group in df.groupby(["metric", "unit"], dropna=False, sort=True):
        samples = {backend: _values(g) for backend, g in group.groupby("backend", sort=True)}
        usable = {backend: x for backend, x in samples.items() if x.size >= 3}
        statistic = p_value = power = np.nan
        if len(usable) >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):  # all groups constant -> NaN
                result = stats.levene(*usable.values(), center="median")
            statistic, p_value = float(result.statistic), float(result.pvalue)
            power = brown_forsythe_power(tuple(x.size for x in usable.values()), alpha)
        rows.append({"metric": metric, "unit": unit, "n_groups": len(usable),
                     "backends": ", ".join(map(str, usable)),
                     "statistic": statistic, "p_value": p_value, "power": power,
                     "testable": bool(power >= TESTABLE_POWER)})
    return pd.DataFrame(rows, columns=VARIANCE_COLUMNS)


def _spread(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """p50, p95, p99, p99/p50 and IQR along ``axis`` (numpy's default linear quantiles)."""
    p25, p50, p75, p95, p99 = np.quantile(x, [0.25, 0.50, 0.75, 0.95, 0.99], axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([p50, p95, p99, p99 / p50, p75 - p25])


def latency_spread(
    latencies: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("backend",),
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-query latency percentiles per group, each with a percentile-bootstrap interval.

    ``by=("backend", "trial")`` gives one row per trial. The bootstrap resamples
    individual queries, so a per-backend interval pooled over trials assumes
    queries are exchangeable and leaves out trial-to-trial variation (compare
    the per-trial rows, or use ``search_latency_p50_ms`` in :func:`compare`,
    for that). Resamples are processed in batches so ~10k queries per group
    stay fast and small in memory. An interval whose quantile has fewer than
    ``MIN_TAIL_POINTS`` queries beyond it (e.g. p99 with < 1000 queries) is NaN.
    """
    by = [by] if isinstance(by, str) else list(by)
    names = list(SPREAD_QUANTILES)
    rows = []
    for key, group in latencies.groupby(by, sort=True):
        x = _values(group, "latency_ms")
        row = dict(zip(by, key)) | {"n_queries": x.size}
        point = _spread(x) if x.size else np.full(len(names), np.nan)
        low = high = np.full(len(names), np.nan)
        if x.size >= 2:
            result = stats.bootstrap(
                (x,), _spread, method="percentile", confidence_level=confidence,
                n_resamples=n_resamples, batch=max(1, 1_000_000 // x.size), rng=_rng(seed),
            )
            low, high = result.confidence_interval
        for i, name in enumerate(names):
            enough = all(x.size * min(q, 1 - q) >= MIN_TAIL_POINTS for q in SPREAD_QUANTILES[name])
            row[name] = float(point[i])
            row[f"{name}_low"] = float(low[i]) if enough else np.nan
            row[f"{name}_high"] = float(high[i]) if enough else np.nan
        rows.append(row)
    columns = by + ["n_queries"] + [f"{n}{s}" for n in names for s in ("", "_low", "_high")]
    return pd.DataFrame(rows, columns=columns)


def _claimed(a: np.ndarray, b: np.ndarray, first_step_alpha: float, confidence: float) -> np.ndarray:
    """The report's claim rule on simulated samples (last axis = trials, paired by position).

    Holm is reduced to its first step: the metric under study is taken to be the only real
    effect among m, so it is claimed when its p < alpha / m. This ignores the rare case of a
    null metric rejected first, so the power it gives is a slight underestimate.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        r = _chosen_ratio(a, b, confidence, (a, b))
    return (r["p_test"] < first_step_alpha) & ((r["ratio_mean_low"] > 1) | (r["ratio_mean_high"] < 1))


@lru_cache(maxsize=None)
def claim_power(n: int, cv: float, effect: float, family: int, alpha: float = 0.05,
                confidence: float = 0.95, draws: int = POWER_DRAWS, seed: int = 0) -> float:
    """Probability that :func:`compare` calls a backend whose mean is (1 + effect) x the baseline's.

    Simulates ``draws`` runs of n trials per backend, lognormal noise of CV ``cv`` in both
    (skewed like timing data), no round effect (which would only help the paired analysis),
    and applies the verdict rule with a Holm family of ``family`` metrics (see :func:`_claimed`).
    Fixed seed: the same random numbers at every effect, so the curve over effect is smooth.
    """
    sigma = np.sqrt(np.log1p(cv ** 2))
    noise = np.exp(sigma * _rng(seed).standard_normal((2, draws, n)) - sigma ** 2 / 2)
    return float(np.mean(_claimed((1 + effect) * noise[0], noise[1], alpha / family, confidence)))


@lru_cache(maxsize=None)
def detectable_difference(n: int, cv: float, family: int, alpha: float = 0.05, power: float = 0.8,
                          confidence: float = 0.95) -> float:
    """Smallest relative difference of means the rule detects with ``power`` at n trials per backend.

    Bisection on log(effect) over [0.1%, MAX_EFFECT]; inf when even MAX_EFFECT is not detected.
    """
    def reaches(effect: float) -> bool:
        return claim_power(n, cv, effect, family, alpha, confidence) >= power

    low, high = 1e-3, MAX_EFFECT
    if not reaches(high):
        return np.inf
    for _ in range(12):   # 0.2% relative precision
        middle = np.sqrt(low * high)
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return float(high)


@lru_cache(maxsize=None)
def trials_needed(effect: float, cv: float, family: int, alpha: float = 0.05, power: float = 0.8,
                  confidence: float = 0.95, cap: int = MAX_TRIALS) -> int | None:
    """Smallest trials per backend at which the rule detects ``effect`` with ``power``; None above ``cap``."""
    def reaches(n: int) -> bool:
        return claim_power(n, cv, effect, family, alpha, confidence) >= power

    if not reaches(cap):
        return None
    low, high = 1, cap   # reaches(high) holds; low is below the smallest n with a test
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


def _cv_bounds(cv: float, dof: float, confidence: float) -> tuple[float, float]:
    """Confidence bounds of a CV from the chi-square distribution of the sample variance (normal data)."""
    upper_q, lower_q = stats.chi2.ppf([0.5 + confidence / 2, 0.5 - confidence / 2], dof)
    return cv * np.sqrt(dof / upper_q), cv * np.sqrt(dof / lower_q)


def detectability(
    df: pd.DataFrame,
    family: int,
    effect: float = 0.10,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per metric: what the report's rule can detect at this run's n, and the n needed for ``effect``.

    The noise is the pooled CV across backends, sqrt(sum((n_i - 1) cv_i^2) / sum(n_i - 1)),
    with its ``confidence`` bounds (:func:`_cv_bounds`, df = sum(n_i - 1)); ``n`` is the fewest
    trials any backend completed. ``detectable*`` is :func:`detectable_difference` and
    ``trials*`` :func:`trials_needed` at the pooled CV and at its two bounds, so each is a range
    that carries the uncertainty of the CV. ``family`` is the Holm family size (metrics compared).
    """
    rows = []
    for (metric, unit), group in df.groupby(["metric", "unit"], dropna=False, sort=True):
        dof = weighted = 0.0
        sizes = []
        for _, g in group.groupby("backend"):
            x = _values(g)
            sizes.append(x.size)
            if x.size >= 2 and _mean(x) > 0:
                dof += x.size - 1
                weighted += (x.size - 1) * (_sd(x) / _mean(x)) ** 2
        cv = np.sqrt(weighted / dof) if dof else np.nan
        row = {"metric": metric, "unit": unit, "n": min(sizes), "cv_dof": dof, "cv_pooled": cv,
               "effect": effect}
        cvs = dict(zip(("_low", "", "_high"), (cv, cv, cv) if not dof else
                       (_cv_bounds(cv, dof, confidence)[0], cv, _cv_bounds(cv, dof, confidence)[1])))
        for suffix, value in cvs.items():
            usable = np.isfinite(value) and value > 0 and row["n"] >= 2
            row[f"cv{suffix}"] = value
            row[f"detectable{suffix}"] = (detectable_difference(row["n"], float(value), family, alpha, power,
                                                                confidence) if usable else np.nan)
            row[f"trials{suffix}"] = (trials_needed(effect, float(value), family, alpha, power, confidence)
                                      if np.isfinite(value) and value > 0 else None)
        rows.append(row)
    out = pd.DataFrame(rows, columns=DETECTABILITY_COLUMNS)
    for column in ("trials_low", "trials", "trials_high"):
        out[column] = out[column].astype("Int64")
    return out


def aa_false_positive_rate(
    n_sims: int = 400,
    n: int = 10,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    sigma: float = 0.3,
    n_resamples: int = 999,
) -> float:
    """Fraction of A/A comparisons that :func:`compare` calls "better" or "worse".

    Both groups draw ``n`` values from the same lognormal(0, sigma) -- skewed
    like timing data -- in ``n`` rounds, so the paired-or-independent choice is
    exercised too; every call is a false positive and a calibrated pipeline
    returns at most about ``alpha``.
    """
    rng = _rng(seed)
    labels = np.repeat(["A", "B"], n)
    trials = np.tile(np.arange(1, n + 1), 2)
    called = 0
    for i in range(n_sims):
        sim = pd.DataFrame({"backend": labels, "trial": trials, "metric": "m", "unit": "s",
                            "value": rng.lognormal(0.0, sigma, 2 * n)})
        verdict = compare(sim, "A", alpha=alpha, n_resamples=n_resamples, seed=seed + i)
        called += verdict["verdict"].iloc[0] in ("better", "worse")
    return called / n_sims
