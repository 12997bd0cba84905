"""How phase times grow with the bytes a phase moves, per store, across the sizes of a sweep.

Pure: tidy frames in, frames out. The frames are a sweep's runs concatenated with a ``size``
column (report.sweep does that): the results of completed trials, and the per-phase S3 summary
of the traffic capture (``bytes_sent``, ``bytes_received``, ``busy_s``).

The fit. Per store and timed metric, every completed trial is a point: x = the GB Milvus moved to
and from the store in that phase (the capture), y = the phase's time. A line y = a + b x reads:
a, the fixed cost (Milvus's own steps, its 1 s load tick, the store's fixed latency), and b, the
seconds per GB the store costs through Milvus. Its intervals must hold at the few points a sweep
has (3-5 sizes x 2 trials), under noise of unknown shape: constant (Milvus's ticks, the load
state's 1 s steps) or growing with the time (a busy machine slows long phases more). Seeded
simulation (tests/unit/test_scaling.py) at 3-5 sizes x 2 trials found that ordinary least squares
(OLS) with Student t intervals covers 95% under constant noise but its slope only 81-86% when the
noise is a constant fraction of the time; weighted least squares with weights 1/fitted^2 (WLS)
covers 95% under that noise but its intercept only 80-90% under constant noise. Each interval here
is therefore the envelope of the two (from the lower of their lower ends to the higher of their
upper ends): it covers at least 95% under either noise and under their mixtures (93.5-99.6% in
the simulation), at the price of width. The estimates are OLS's.

From which size a store differs. At each size run, each store's line and the baseline's predict
the phase's time at the bytes the baseline moved there; their ratio has a Fieller interval (the
two fits are independent: different trials), again the envelope of the OLS and WLS versions. A
store "differs by at least 10% from size X" when, at X and every larger size run, that interval
excludes 1 and the estimated ratio is at least 1.10 (or at most 1/1.10). Each phase is judged on
its own (no correction across phases or sizes: a screening answer, with the per-size comparisons of
analysis.stats in each size's own report for claims).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats as sstats

from msbench.analysis import stats

GB = 1e9
MiB = float(1 << 20)
EFFECT = 0.10      # the difference "differs by at least" speaks of
# The timed metrics fitted, by phase: what each phase's time is, and for loads also the times not on
# Milvus 2.3.5's 1 s load-state tick (rows on the query node).
FITTED = (("insert", "insert_s"), ("flush", "flush_s"), ("index", "index_build_s"),
          ("load_first", "load_first_s"), ("load_first", "load_first_segments_s"),
          ("load_warm", "load_warm_s"), ("load_warm", "load_warm_segments_s"),
          ("load_cold", "load_cold_s"), ("load_cold", "load_cold_segments_s"))
POINT_COLUMNS = ["size", "backend", "trial", "phase", "metric", "seconds", "moved_gb"]
FIT_COLUMNS = ["backend", "phase", "metric", "n", "sizes", "intercept_s", "intercept_low", "intercept_high",
               "s_per_gb", "s_per_gb_low", "s_per_gb_high"]


@dataclass(frozen=True)
class Fit:
    """A line through (GB moved, seconds) points, with what its intervals and predictions need."""

    n: int
    sizes: int                       # distinct sizes among the points
    ols: np.ndarray                  # (intercept, slope), ordinary least squares: the estimates
    ols_cov: np.ndarray              # 2x2 covariance of those, from OLS's residual variance
    wls: np.ndarray                  # the same by least squares weighted 1 / fitted^2
    wls_cov: np.ndarray

    @property
    def df(self) -> int:
        return self.n - 2

    def interval(self, k: int, confidence: float = 0.95) -> tuple[float, float]:
        """The envelope of the OLS and WLS t intervals of coefficient k (0 intercept, 1 slope)."""
        if self.df < 1:
            return np.nan, np.nan
        t = sstats.t.ppf(0.5 + confidence / 2, self.df)
        ends = [(b[k] - t * np.sqrt(c[k, k]), b[k] + t * np.sqrt(c[k, k]))
                for b, c in ((self.ols, self.ols_cov), (self.wls, self.wls_cov))]
        return min(e[0] for e in ends), max(e[1] for e in ends)

    def mean_interval(self, x: float, confidence: float = 0.95) -> tuple[float, float, float]:
        """The line's mean at x (OLS) and the envelope of the OLS and WLS t intervals of it: a band."""
        t = sstats.t.ppf(0.5 + confidence / 2, self.df) if self.df >= 1 else np.nan
        ends = [(m - t * np.sqrt(v), m + t * np.sqrt(v)) for m, v in (self.predict(x), self.predict(x, weighted=True))]
        return self.predict(x)[0], min(e[0] for e in ends), max(e[1] for e in ends)

    def predict(self, x: float, weighted: bool = False) -> tuple[float, float]:
        """(mean, variance of the mean) of the line at x, by OLS or WLS."""
        beta, cov = (self.wls, self.wls_cov) if weighted else (self.ols, self.ols_cov)
        v = np.array([1.0, x])
        return float(v @ beta), float(v @ cov @ v)


def _least_squares(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of y = a + b x: (a, b) and their covariance (residual variance, df n - 2),
    in closed form (the normal equations of two coefficients)."""
    sw, sx, sxx, sy, sxy = w.sum(), w @ x, w @ (x * x), w @ y, w @ (x * y)
    det = sw * sxx - sx * sx
    beta = np.array([sxx * sy - sx * sxy, sw * sxy - sx * sy]) / det
    residual = y - beta[0] - beta[1] * x
    s2 = float(w @ (residual * residual)) / (len(y) - 2) if len(y) > 2 else np.nan
    return beta, np.array([[sxx, -sx], [-sx, sw]]) / det * s2


def fit_line(x, y) -> Fit | None:
    """OLS and WLS (weights 1 / OLS-fitted^2, fitted values floored at a tenth of the mean) of y on x;
    None with fewer than 3 points or fewer than 2 distinct x (no line, or no interval)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.unique(x).size < 2:
        return None
    ols, ols_cov = _least_squares(x, y, np.ones_like(x))
    fitted = np.maximum(ols[0] + ols[1] * x, 0.1 * max(float(np.mean(y)), 1e-9))
    wls, wls_cov = _least_squares(x, y, 1.0 / fitted ** 2)
    return Fit(len(x), 0, ols, ols_cov, wls, wls_cov)


def _welch_df(va: np.ndarray, vb: np.ndarray, na: int, nb: int) -> np.ndarray:
    """Welch-Satterthwaite df of va + vb, the squared standard errors of two estimates (inf without variance)."""
    denominator = va ** 2 / (na - 1) + vb ** 2 / (nb - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (va + vb) ** 2 / denominator, np.inf)


def _fieller(ma, mb, va, vb, df, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Fieller (1954) interval of ma/mb for independent estimates: every r with (ma - r mb)^2 <=
    t^2 (va + r^2 vb); unbounded, (-inf, inf), when mb is not clearly above zero."""
    t2 = sstats.t.ppf(0.5 + confidence / 2, df) ** 2
    a = mb ** 2 - t2 * vb
    half_b = ma * mb
    root = np.sqrt(np.maximum(half_b ** 2 - a * (ma ** 2 - t2 * va), 0.0))
    bounded = a > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.where(bounded, (half_b - root) / a, -np.inf),
                np.where(bounded, (half_b + root) / a, np.inf))


def ratio_at(fit: Fit, baseline: Fit, x: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """The ratio of the two lines at x (OLS estimates) and the envelope of the OLS and WLS Fieller
    intervals of it (independent fits; Welch-Satterthwaite df from each fit's n - 2)."""
    if fit.df < 1 or baseline.df < 1:
        return np.nan, np.nan, np.nan
    lows, highs = [], []
    for weighted in (False, True):
        (ma, va), (mb, vb) = fit.predict(x, weighted), baseline.predict(x, weighted)
        df = _welch_df(np.array(va), np.array(vb), fit.df + 1, baseline.df + 1)
        low, high = _fieller(ma, mb, va, vb, df, confidence)
        lows.append(float(low))
        highs.append(float(high))
    (ma, _), (mb, _) = fit.predict(x), baseline.predict(x)
    return (ma / mb if mb else np.nan), min(lows), max(highs)


def trial_points(results: pd.DataFrame, s3_summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (size, backend, trial, fitted metric): the phase's seconds and the GB Milvus moved in
    that phase (capture: body bytes sent and received, every operation). A trial without a capture
    has no x and is left out of the fits."""
    if results.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    keys = ["size", "backend", "trial"]
    wanted = pd.DataFrame(FITTED, columns=["phase", "metric"])
    times = results.merge(wanted, on=["phase", "metric"])[[*keys, "phase", "metric", "value"]]
    times = times.rename(columns={"value": "seconds"})
    every = s3_summary[s3_summary["operation"] == "all"] if len(s3_summary) else s3_summary
    moved = (every.assign(moved_gb=(every["bytes_sent"] + every["bytes_received"]) / GB)[[*keys, "phase", "moved_gb"]]
             if len(every) else pd.DataFrame(columns=[*keys, "phase", "moved_gb"]))
    return times.merge(moved, on=[*keys, "phase"], how="left")[POINT_COLUMNS]


def fits(points: pd.DataFrame) -> dict[tuple[str, str], Fit]:
    """(backend, metric) -> its line, for every pair with enough points."""
    out = {}
    for (backend, metric), group in points.dropna(subset=["moved_gb", "seconds"]).groupby(["backend", "metric"]):
        fit = fit_line(group["moved_gb"], group["seconds"])
        if fit is not None:
            out[backend, metric] = replace(fit, sizes=group["size"].nunique())
    return out


def fit_table(points: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per store and fitted metric: fixed cost (s) and cost per GB moved (s/GB), each with its interval."""
    phase_of = dict((m, p) for p, m in FITTED)
    rows = []
    for (backend, metric), fit in sorted(fits(points).items()):
        (a_low, a_high), (b_low, b_high) = fit.interval(0, confidence), fit.interval(1, confidence)
        rows.append({"backend": backend, "phase": phase_of[metric], "metric": metric, "n": fit.n, "sizes": fit.sizes,
                     "intercept_s": fit.ols[0], "intercept_low": a_low, "intercept_high": a_high,
                     "s_per_gb": fit.ols[1], "s_per_gb_low": b_low, "s_per_gb_high": b_high})
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def ratios_by_size(points: pd.DataFrame, baseline: str, sizes: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """Each store's predicted time over the baseline's, per fitted metric, at each of ``sizes`` (at the
    GB the baseline moved there): ratio, its interval, and whether it differs by at least EFFECT."""
    lines = fits(points)
    rows = []
    where = points[points["backend"] == baseline].groupby(["metric", "size"])["moved_gb"].mean()
    for (backend, metric), fit in sorted(lines.items()):
        base = lines.get((baseline, metric))
        if backend == baseline or base is None:
            continue
        for size in sizes:
            if (metric, size) not in where.index or not np.isfinite(where[metric, size]):
                continue
            ratio, low, high = ratio_at(fit, base, float(where[metric, size]), confidence)
            beyond = ratio >= 1 + EFFECT or ratio <= 1 / (1 + EFFECT)
            rows.append({"backend": backend, "metric": metric, "size": size, "moved_gb": float(where[metric, size]),
                         "ratio": ratio, "ratio_low": low, "ratio_high": high,
                         "differs": bool(beyond and (low > 1 or high < 1))})
    return pd.DataFrame(rows, columns=["backend", "metric", "size", "moved_gb", "ratio", "ratio_low", "ratio_high",
                                       "differs"])


def differs_from(ratios: pd.DataFrame, sizes: list[str]) -> dict[tuple[str, str], str | None]:
    """(backend, metric) -> the smallest size from which it differs at that size and every larger one
    run, or None: not within the sizes run."""
    out = {}
    for (backend, metric), group in ratios.groupby(["backend", "metric"]):
        flags = dict(zip(group["size"], group["differs"]))
        seen = [s for s in sizes if s in flags]
        first = None
        for i, size in enumerate(seen):
            if all(flags[s] for s in seen[i:]):
                first = size
                break
        out[backend, metric] = first
    return out


def _mean_interval(values: pd.Series) -> tuple[float, float, float]:
    x = values.dropna().to_numpy(float)
    low, high = stats._mean_interval(x, 0.95)
    return (float(np.mean(x)) if len(x) else np.nan), float(low), float(high)


def ceiling(results: pd.DataFrame, s3_summary: pd.DataFrame, phases: tuple[str, ...] = ("load_first", "load_cold")) -> pd.DataFrame:
    """Per size and store: warp's GET MiB/s (the store alone) and, per load phase, the GET rate Milvus
    got while it had a GET open, as a fraction of warp's in the same trial; means over trials with
    Student t 95% intervals."""
    keys = ["size", "backend", "trial"]
    warp = results[(results["phase"] == "store_alone") & (results["metric"] == "warp_get_mib_per_s")]
    warp = warp[[*keys, "value"]].rename(columns={"value": "warp"})
    gets = s3_summary[(s3_summary["operation"] == "GET") & (s3_summary["busy_s"] > 0)] if len(s3_summary) else s3_summary
    rows = []
    for (size, backend), mine in warp.groupby(["size", "backend"]):
        row = {"size": size, "backend": backend, "n": len(mine)}
        row["warp_mib_s"], row["warp_low"], row["warp_high"] = _mean_interval(mine["warp"])
        for phase in phases:
            sel = gets[(gets["phase"] == phase)] if len(gets) else gets
            rate = (sel.assign(milvus=sel["bytes_received"] / MiB / sel["busy_s"])[[*keys, "milvus"]]
                    if len(sel) else pd.DataFrame(columns=[*keys, "milvus"]))
            joined = mine.merge(rate, on=keys)
            row[f"{phase}_mib_s"], _, _ = _mean_interval(joined["milvus"])
            row[f"{phase}_fraction"], row[f"{phase}_fraction_low"], row[f"{phase}_fraction_high"] = \
                _mean_interval(joined["milvus"] / joined["warp"])
        rows.append(row)
    return pd.DataFrame(rows)
