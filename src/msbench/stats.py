"""Statistics the analysis notebook applies to msbench results.

Inputs are the tidy results frame (``run, backend, provider, trial, phase,
metric, value, unit``; one row per trial and metric) and the per-query latency
frame (``run, backend, provider, trial, query, latency_ms``). A trial is the
unit of replication: every test and interval on the results frame treats the
per-trial values as the independent observations. Only :func:`latency_spread`
works on individual queries, because it describes the latency distribution.

Every bootstrap takes a ``seed`` and builds a fresh generator from it for each
interval, so a number never depends on which other groups were in the frame or
in which order they were computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

DIRECTIONS = ("lower", "higher")

# Below this many observations beyond a quantile on either side, a bootstrap of
# that quantile mostly resamples the same few extreme points, so its interval
# is reported as NaN rather than as a misleadingly narrow range.
MIN_TAIL_POINTS = 10

SUMMARY_COLUMNS = [
    "backend", "metric", "unit", "n", "mean", "median", "sd", "cv",
    "ci_low", "ci_high", "t_low", "t_high",
]
COMPARE_COLUMNS = [
    "backend", "baseline", "metric", "unit", "direction",
    "n_backend", "n_baseline", "mean_backend", "mean_baseline",
    "median_backend", "median_baseline",
    "ratio_mean", "ratio_mean_low", "ratio_mean_high",
    "ratio_median", "ratio_median_low", "ratio_median_high",
    "p_welch", "p_mwu", "p_bm", "p_holm", "verdict",
]
VARIANCE_COLUMNS = ["metric", "unit", "n_groups", "backends", "statistic", "p_value"]
TRIALS_COLUMNS = [
    "metric", "unit", "n_backends", "cv_pooled", "effect",
    "trials_needed", "trials_needed_text",
]
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


def _t_interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean, the textbook reference beside the bootstrap one."""
    if x.size < 2:
        return np.nan, np.nan
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * _sd(x) / np.sqrt(x.size)
    return _mean(x) - half, _mean(x) + half


def _bca_mean_interval(
    x: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """BCa interval of the mean.

    Below 3 values the resampling distribution has too few distinct points to
    mean anything, so the interval is NaN. Constant data give the zero-width
    interval every resample would produce (scipy would return NaN, because the
    BCa acceleration is 0/0 there).
    """
    if x.size < 3:
        return np.nan, np.nan
    if _is_constant(x):
        return float(x[0]), float(x[0])
    with warnings.catch_warnings():
        # Heavily tied data can still defeat BCa; scipy then returns NaN, which we keep.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (x,), np.mean, method="BCa", confidence_level=confidence,
            n_resamples=n_resamples, rng=_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize(
    df: pd.DataFrame, *, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> pd.DataFrame:
    """Per (backend, metric, unit): n, mean, median, sd, cv and two intervals of the mean.

    ``ci_low``/``ci_high`` is the bootstrap BCa interval (robust to the skew of
    timing data); ``t_low``/``t_high`` is the Student-t interval, shown beside it
    so a reader can see when the two disagree (small n or strong skew).
    """
    rows = []
    for (backend, metric, unit), group in df.groupby(
        ["backend", "metric", "unit"], dropna=False, sort=True
    ):
        x = _values(group)
        mean, sd = _mean(x), _sd(x)
        rows.append({
            "backend": backend, "metric": metric, "unit": unit, "n": x.size,
            "mean": mean, "median": _median(x), "sd": sd, "cv": _ratio(sd, mean),
            **dict(zip(("ci_low", "ci_high"),
                       _bca_mean_interval(x, confidence, n_resamples, seed))),
            **dict(zip(("t_low", "t_high"), _t_interval(x, confidence))),
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


def _ratio_interval(
    a: np.ndarray, b: np.ndarray, center, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of center(a)/center(b), resampling a and b independently."""

    def statistic(x, y, axis=-1):
        with np.errstate(divide="ignore", invalid="ignore"):
            return center(x, axis=axis) / center(y, axis=axis)

    result = stats.bootstrap(
        (a, b), statistic, method="percentile", confidence_level=confidence,
        n_resamples=n_resamples, rng=_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


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


def _pair(
    a: np.ndarray, b: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> dict:
    """Effect sizes and raw p-values for backend sample ``a`` against baseline sample ``b``."""
    row = {
        "n_backend": a.size, "n_baseline": b.size,
        "mean_backend": _mean(a), "mean_baseline": _mean(b),
        "median_backend": _median(a), "median_baseline": _median(b),
    }
    row["ratio_mean"] = _ratio(row["mean_backend"], row["mean_baseline"])
    row["ratio_median"] = _ratio(row["median_backend"], row["median_baseline"])
    nan_cols = ("ratio_mean_low", "ratio_mean_high", "ratio_median_low",
                "ratio_median_high", "p_welch", "p_mwu", "p_bm")
    if min(a.size, b.size) < 2:
        return row | dict.fromkeys(nan_cols, np.nan)
    row["ratio_mean_low"], row["ratio_mean_high"] = _ratio_interval(
        a, b, np.mean, confidence, n_resamples, seed)
    row["ratio_median_low"], row["ratio_median_high"] = _ratio_interval(
        a, b, np.median, confidence, n_resamples, seed)
    # With no variance in either group Welch's statistic is +-inf and scipy
    # reports p=0; that is not evidence, so the test is not run.
    row["p_welch"] = (np.nan if _is_constant(a) and _is_constant(b)
                      else float(stats.ttest_ind(a, b, equal_var=False).pvalue))
    row["p_mwu"] = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    row["p_bm"] = _brunner_munzel_p(a, b, n_resamples, seed)
    return row


def _verdict(row: dict, a: np.ndarray, b: np.ndarray, direction: str, alpha: float) -> str:
    """Plain-words reading of one comparison.

    A difference is claimed only when the Holm-corrected Welch p is below alpha
    AND the bootstrap interval of the ratio of means excludes 1, so neither a
    fragile p-value nor a too-narrow small-n bootstrap interval suffices alone.
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

    Needs columns ``backend, metric, unit, value``. Ratios are backend/baseline;
    their intervals are percentile bootstraps resampling each group
    independently (percentile, not BCa: BCa's jackknife acceleration is erratic
    at 3-10 trials and undefined for tied medians, while percentile intervals
    of a ratio stay within the ratio's range).

    p-values: Welch's t (``p_welch``), Mann-Whitney U (``p_mwu``, exact when
    small and untied, so it can never go below 0.1 at 3 vs 3) and studentized
    permutation Brunner-Munzel (``p_bm``). ``p_holm`` is the Holm correction of
    the Welch p-values across the metrics of one backend: Welch tests the mean,
    which is what the ratio reports, tolerates unequal variances, and unlike the
    rank tests still yields usable p-values at 3 trials. Tests need >= 2 trials
    per group; fewer gives NaN and a "not enough data" verdict.
    ``directions`` maps metric -> "lower" | "higher" (better); default "lower".
    """
    directions = directions or {}
    if baseline not in set(df["backend"]):
        raise ValueError(f"baseline backend {baseline!r} not in the results")
    samples = {key: _values(group) for key, group in df.groupby(["backend", "metric"])}
    units = df.groupby("metric")["unit"].first()
    empty = np.empty(0)
    rows = []
    for backend in sorted(set(df["backend"]) - {baseline}):
        block = []
        for metric in sorted(units.index):
            if (backend, metric) not in samples and (baseline, metric) not in samples:
                continue
            a = samples.get((backend, metric), empty)
            b = samples.get((baseline, metric), empty)
            row = {"backend": backend, "baseline": baseline, "metric": metric,
                   "unit": units[metric], "direction": _direction(metric, directions),
                   **_pair(a, b, confidence, n_resamples, seed)}
            block.append((row, a, b))
        for (row, a, b), p in zip(block, holm([row["p_welch"] for row, _, _ in block])):
            row["p_holm"] = float(p)
            row["verdict"] = _verdict(row, a, b, row["direction"], alpha)
            rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def variance_tests(df: pd.DataFrame) -> pd.DataFrame:
    """Per metric, Brown-Forsythe test (Levene on medians) that backends differ in trial-to-trial spread.

    The median-centred form is used because timing data are skewed, where the
    mean-centred Levene and Bartlett tests reject too often. Backends with
    fewer than 3 values are left out: with 2, both absolute deviations from the
    median equal half the range, so the group has no within-group spread and
    groups of two alone give W = inf, p = 0. Fewer than 2 remaining groups, or
    no spread at all, gives NaN.
    """
    rows = []
    for (metric, unit), group in df.groupby(["metric", "unit"], dropna=False, sort=True):
        samples = {backend: _values(g) for backend, g in group.groupby("backend", sort=True)}
        usable = {backend: x for backend, x in samples.items() if x.size >= 3}
        statistic = p_value = np.nan
        if len(usable) >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):  # all groups constant -> NaN
                result = stats.levene(*usable.values(), center="median")
            statistic, p_value = float(result.statistic), float(result.pvalue)
        rows.append({"metric": metric, "unit": unit, "n_groups": len(usable),
                     "backends": ", ".join(map(str, usable)),
                     "statistic": statistic, "p_value": p_value})
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


def _trials_for_power(d: float, alpha: float, power: float, cap: int) -> int | None:
    """Smallest trials per group for a two-sided two-sample t test to reach ``power``.

    With equal n and equal variances Welch's test reduces to Student's with
    df = 2n - 2, whose power under standardized difference d follows the
    noncentral t with noncentrality d * sqrt(n/2). None when cap is not enough.
    """
    if d == np.inf:
        return 2
    n = np.arange(2, cap + 1)
    dof = 2 * n - 2
    crit = stats.t.ppf(1 - alpha / 2, dof)
    ncp = d * np.sqrt(n / 2)
    achieved = stats.nct.sf(crit, dof, ncp) + stats.nct.cdf(-crit, dof, ncp)
    reached = np.flatnonzero(achieved >= power)
    return int(n[reached[0]]) if reached.size else None


def trials_needed(
    df: pd.DataFrame,
    effect: float = 0.10,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    cap: int = 10000,
) -> pd.DataFrame:
    """Per metric, trials per backend needed to detect a relative difference ``effect`` in means.

    The noise is the pooled CV across backends, sqrt(sum((n_i - 1) cv_i^2) /
    sum(n_i - 1)), i.e. the within-backend variance pooled on the relative
    scale, so the standardized effect is effect / cv. ``trials_needed`` is
    <NA> when the CV is unknown (no backend with >= 2 trials and a positive
    mean) or the cap is not enough; ``trials_needed_text`` says which.
    """
    rows = []
    for (metric, unit), group in df.groupby(["metric", "unit"], dropna=False, sort=True):
        dof = weighted = 0.0
        n_backends = 0
        for _, g in group.groupby("backend"):
            x = _values(g)
            if x.size >= 2 and _mean(x) > 0:
                dof += x.size - 1
                weighted += (x.size - 1) * (_sd(x) / _mean(x)) ** 2
                n_backends += 1
        cv = np.sqrt(weighted / dof) if dof else np.nan
        if np.isnan(cv):
            needed, text = None, "unknown (no backend with >= 2 trials)"
        else:
            needed = _trials_for_power(effect / cv if cv > 0 else np.inf, alpha, power, cap)
            text = str(needed) if needed is not None else f"> {cap}"
        rows.append({"metric": metric, "unit": unit, "n_backends": n_backends,
                     "cv_pooled": cv, "effect": effect,
                     "trials_needed": needed, "trials_needed_text": text})
    out = pd.DataFrame(rows, columns=TRIALS_COLUMNS)
    out["trials_needed"] = out["trials_needed"].astype("Int64")
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
    like timing data -- so every such call is a false positive; a calibrated
    pipeline returns about ``alpha``.
    """
    rng = _rng(seed)
    labels = np.repeat(["A", "B"], n)
    called = 0
    for i in range(n_sims):
        sim = pd.DataFrame({"backend": labels, "metric": "m", "unit": "s",
                            "value": rng.lognormal(0.0, sigma, 2 * n)})
        verdict = compare(sim, "A", alpha=alpha, n_resamples=n_resamples, seed=seed + i)
        called += verdict["verdict"].iloc[0] in ("better", "worse")
    return called / n_sims
