"""Statistics the analysis notebook and the report apply to msbench results.

Inputs are the tidy results frame (``run, backend, provider, trial, phase,
metric, value, unit``; one row per trial and metric) and the per-query latency
frame (``run, backend, provider, trial, query, latency_ms``). A trial is the
unit of replication: every test and interval on the results frame treats the
per-trial values as the independent observations. Only :func:`latency_spread`
works on individual queries, because it describes the latency distribution.

Every claim the report makes about stores (better, worse, equivalent within a
margin, best store) comes from one rule (:func:`compare`, :func:`leaders`): the
ratio of geometric means on the log scale, paired by round, read off intervals
that hold together over a declared :class:`Family` of comparisons, so the chance
of any false claim in the report is at most 1 - confidence. Its error rates are
simulated by :func:`simulate_rule` (tests/unit/test_stats.py checks each case);
its power is exact (:func:`claim_power`). Intervals of means are Student t,
chosen because their simulated coverage matches their label at 3-10 trials,
where bootstraps did not. Every resampling or simulation takes a ``seed`` and
builds a fresh generator from it, so a number never depends on which other
groups were in the frame or in which order they were computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
from scipy import optimize, stats

DIRECTIONS = ("lower", "higher")
VERDICTS = ("better", "worse", "equivalent", "not detectable")

# Below this many observations beyond a quantile on either side, a bootstrap of
# that quantile mostly resamples the same few extreme points, so its interval
# is reported as NaN rather than as a misleadingly narrow range.
MIN_TAIL_POINTS = 10

SUMMARY_COLUMNS = [
    "backend", "metric", "unit", "n", "mean", "median", "sd", "cv", "ci_low", "ci_high", "ci_method",
]
COMPARE_COLUMNS = [
    "backend", "other", "metric", "unit", "direction", "primary",
    "n_backend", "n_other", "n_pairs", "mean_backend", "mean_other", "cv_backend", "cv_other", "ratio_mean",
    "ratio", "ratio_low", "ratio_high", "claim_low", "claim_high", "method", "df", "floor", "margin",
    "p_claim", "p_equivalent", "verdict", "equivalent", "identical", "no_interval", "caveat", "bm_testable", "p_bm",
]
VARIANCE_COLUMNS = ["metric", "unit", "n_groups", "backends", "statistic", "p_value", "power", "testable"]
DETECTABILITY_COLUMNS = [
    "metric", "unit", "n", "cv_dof", "cv_pooled", "cv_low", "cv", "cv_high", "effect",
    "detectable_low", "detectable", "detectable_high", "trials_low", "trials", "trials_high",
    "margin", "trials_equivalence_low", "trials_equivalence", "trials_equivalence_high",
]
MEAN_METHOD = "Student t"
PAIRED_METHOD = "paired by round: t on log ratios (df n − 1)"
INDEPENDENT_METHOD = "independent: Welch standard error on logs, df min(n) − 1 (Hsu)"
# Largest CV at which the simulated coverage of the mean's t interval was verified (tests/unit/test_stats.py).
VERIFIED_MAX_CV = 0.30
# ... and of the ratio intervals and claims: exact for lognormal noise at any CV, but with normal noise
# a store at CV 25% against one at 5% was covered 94.2% (30%: 93.4%), at 20% 94.6% (tests/unit/test_stats.py).
RATIO_VERIFIED_MAX_CV = 0.20
# Defaults of Thresholds: "equivalent within ±5%"; no difference below 1% is claimed.
EQUIVALENCE = 0.05
MINIMUM_EFFECT = 0.01
# Simulation size of the Brown-Forsythe power (SE about 0.01 at 0.8); quantiles in numerical integrals.
POWER_DRAWS = 2000
QUADRATURE = 2000
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



# --- the claim rule: every verdict of the report --------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """What a claim on one metric must clear, as fractions of the baseline (ratios, both ways alike).

    ``equivalence``: "equivalent within ±X" when the claim interval of the ratio lies inside
    [1/(1+X), 1+X] (symmetric on the log scale, so A is equivalent to B exactly when B is to A).
    ``minimum_effect``: no difference is claimed unless the interval excludes [1/(1+f), 1+f], f the
    larger of this and ``resolution`` (the step the metric is recorded in, in its unit) over the
    smaller geometric mean, so a sub-resolution offset is never a finding.
    """

    equivalence: float = EQUIVALENCE
    minimum_effect: float = MINIMUM_EFFECT
    resolution: float = 0.0

    def __post_init__(self):
        if not (self.equivalence > 0 and self.minimum_effect >= 0 and self.resolution >= 0):
            raise ValueError(f"thresholds need equivalence > 0, minimum_effect >= 0 and resolution >= 0, got {self}")


@dataclass(frozen=True)
class Family:
    """The comparisons whose claims are controlled together: every non-baseline store against the
    baseline and, with ``pairwise``, every pair of non-baseline stores (needed to name a best store),
    each on every primary metric (``metrics``; others are shown without claim words).

    Every claim (better, worse, equivalent, best store) is read off an interval at :attr:`level`,
    ``1 - (1 - confidence) / size`` (Bonferroni). A false claim of any kind on one comparison needs
    its interval to miss the true ratio (the three words partition the ratio axis; see
    :func:`_claims`), and a best store is false only if one of the claims it rests on is, so the
    chance of any false claim in the family is at most ``1 - confidence``, under any dependence.
    Step-down schemes (Holm, gatekeeping that passes on the level of a decided comparison) do not
    carry over: every comparison can make a true claim (equivalence where the stores are alike), so
    passing its level on would spend it twice -- e.g. Holm over comparisons that are all truly alike
    and all decided "equivalent" ends by testing the last one at the full level. Power therefore
    comes from the family's size: few primary metrics, and ``pairwise`` only when a best store is wanted.

    ``expected`` ("better" or "worse") makes the family one-sided, for a hypothesis whose direction is
    known before the run (a store held to a CPU quota can only be slower): it claims that difference
    and nothing else (no equivalence, nothing the other way), so each claim is false only when its
    interval misses the true ratio on one side, and :attr:`level` is ``1 - 2 (1 - confidence) / size``:
    its lower bound (on that side) is a one-sided bound at ``1 - (1 - confidence) / size``.
    """

    baseline: str
    stores: tuple[str, ...]
    metrics: tuple[str, ...]
    pairwise: bool = True
    confidence: float = 0.95
    expected: str | None = None

    def __post_init__(self):
        if self.baseline not in self.stores:
            raise ValueError(f"baseline {self.baseline!r} is not one of the stores {self.stores}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")
        if self.expected not in (None, "better", "worse"):
            raise ValueError(f"expected must be None, 'better' or 'worse', got {self.expected!r}")

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(store, other) of every comparison on one metric: the baseline ones first."""
        others = [s for s in self.stores if s != self.baseline]
        return tuple([(s, self.baseline) for s in others]
                     + (list(combinations(others, 2)) if self.pairwise else []))

    @property
    def size(self) -> int:
        return len(self.pairs) * len(self.metrics)

    @property
    def claim_error(self) -> float:
        """Each comparison's share of the family's error (Bonferroni)."""
        return (1 - self.confidence) / max(self.size, 1)

    @property
    def level(self) -> float:
        """The level of each claim interval (two-sided; a one-sided family reads one bound of it)."""
        return 1 - (2 * self.claim_error if self.expected else self.claim_error)

    def statement(self) -> str:
        """The family and its error control in one sentence, for the report."""
        others = len(self.stores) - 1
        among = others * (others - 1) // 2
        pairs = (f" and {'the pair' if among == 1 else f'the {among} pairs'} of the other stores"
                 if self.pairwise and others > 1 else "")
        words = (f"Only '{self.expected}' is claimed (one-sided: the direction is known before the run)"
                 if self.expected else "Claims (better, worse, equivalent, best store) are made")
        bound = (f"each read off a one-sided bound at {100 * (1 - self.claim_error):.4g}%"
                 if self.expected else f"each read off an interval at {100 * self.level:.4g}%")
        return (f"{words} on {len(self.metrics)} primary metric"
                f"{'s' if len(self.metrics) != 1 else ''} ({', '.join(self.metrics)}) and controlled together: "
                f"{others} store{'s' if others != 1 else ''} against {self.baseline}{pairs}, {self.size} comparisons "
                f"in all, {bound}, so the chance of any false claim "
                f"among them is at most {1 - self.confidence:.0%} (Bonferroni); other metrics are shown "
                "without claims.")


def _rounding_variance(resolution: float, logs: np.ndarray) -> np.ndarray:
    """Variance on the log scale of recording a value in steps of ``resolution``: (step / value)^2 / 12.

    Added to each group's variance, so a group constant up to its resolution (byte counts) is never
    taken as known exactly, and an offset within the resolution is never significant."""
    return (resolution / np.exp(logs.mean(axis=-1))) ** 2 / 12


def _log_difference(la: np.ndarray, lb: np.ndarray, shared: int, resolution: float = 0.0):
    """Estimate, standard error and df of log(ratio of geometric means) of a over b, along the last axis.

    The first ``shared`` trials of each group ran in the same rounds. Paired by round (t on the log
    ratios of the rounds) when every trial of the smaller group has its partner: exact at any
    variance ratio and round effect for lognormal data. Otherwise independent: Welch's standard
    error with df min(n_a, n_b) - 1 (Hsu 1938), which holds its level at every variance ratio --
    Welch's own df does not at these n and levels: its exact size at 3 vs 3 is 4.4x nominal at
    alpha 0.000625 (variance ratio 250), 8x at 3 vs 2. Both have df min(n_a, n_b) - 1, so no choice
    between them is made on the data (choosing the narrower, the previous rule, missed up to 1.5x as
    often). Where the pairs' log ratios do not vary at all the paired analysis has no noise to go
    on and the independent one is used.

    Why logs: with a store at CV 30% and the baseline at 5% (lognormal), the mean of the skewed
    group is skewed, and the Fieller interval of the ratio of arithmetic means missed on one side 2x
    as often as its level at 95% and 3-5x at the family's levels (n = 5-10), where the t interval on
    logs is exact. With symmetric (normal) noise the log scale errs the other way, less: the same
    30% vs 5% covered 93.4% at n=5, 20% vs 5% 94.6% (hence RATIO_VERIFIED_MAX_CV). The estimand is the ratio of
    geometric means: the typical factor between two stores, the same whichever way a metric is
    expressed (time or throughput).
    """
    na, nb = la.shape[-1], lb.shape[-1]
    var_a, var_b = (_rounding_variance(resolution, x) for x in (la, lb))
    df = min(na, nb) - 1
    estimate = la.mean(axis=-1) - lb.mean(axis=-1)
    se = np.sqrt((la.var(axis=-1, ddof=1) + var_a) / na + (lb.var(axis=-1, ddof=1) + var_b) / nb)
    if shared == min(na, nb) >= 2:
        rounds = la[..., :shared] - lb[..., :shared]
        varying = np.ptp(rounds, axis=-1) > 1e-12
        estimate = np.where(varying, rounds.mean(axis=-1), estimate)
        se = np.where(varying, np.sqrt((rounds.var(axis=-1, ddof=1) + var_a + var_b) / shared), se)
        return estimate, se, df, varying
    return estimate, se, df, np.zeros(np.shape(estimate), bool)


def _claims(estimate, se, df: int, level: float, floor, margin):
    """(above, below, equivalent): what an interval at ``level`` of the log ratio supports.

    above/below: it lies beyond +floor / -floor (a difference larger than the floor); equivalent:
    inside (-margin, margin). Each is false only where the interval misses the true log ratio r:
    "above" needs r <= floor < low, "below" r >= -floor > high, "equivalent" |r| >= margin with the
    interval inside (-margin, margin). So a comparison makes a false claim of any kind with
    probability at most 1 - level. Equivalence is the two one-sided tests at (1 - level) / 2 each
    (TOST), which need no adjustment between them; across comparisons the family's level pays."""
    half = stats.t.ppf(0.5 + level / 2, df) * se
    low, high = estimate - half, estimate + half
    return low > floor, high < -floor, (low > -margin) & (high < margin)


@dataclass(frozen=True)
class _Decision:
    """One comparison's analysis on the log scale, arrays over any leading axes (simulated runs)."""

    estimate: np.ndarray     # log ratio of geometric means
    se: np.ndarray
    df: int
    paired: np.ndarray
    floor: np.ndarray        # log(1 + the smallest difference claimed)
    margin: float            # log(1 + the equivalence margin)
    above: np.ndarray        # the claim interval lies above +floor
    below: np.ndarray
    equivalent: np.ndarray


def _decision(la: np.ndarray, lb: np.ndarray, shared: int, thresholds: Thresholds, level: float) -> _Decision:
    """The analysis of logs ``la`` against ``lb`` (:func:`_log_difference`) and its claims at ``level``."""
    estimate, se, df, paired = _log_difference(la, lb, shared, thresholds.resolution)
    smaller = np.exp(np.minimum(la.mean(axis=-1), lb.mean(axis=-1)))
    floor = np.log1p(np.maximum(thresholds.minimum_effect, thresholds.resolution / smaller))
    margin = float(np.log1p(thresholds.equivalence))
    return _Decision(estimate, se, df, paired, floor, margin, *_claims(estimate, se, df, level, floor, margin))


def _family_p(estimate, se, df: int, floor, margin, size: int, toward: int = 0) -> tuple[float, float]:
    """Family-adjusted p of the directional claim and of equivalence: a claim is made exactly when its
    p is below 1 - confidence (each is 2 x size x the one-sided t tail at the claim's boundary). In a
    one-sided family (``toward``: the sign of the log ratio it claims) the claim's p is size x the tail
    on that side, and equivalence is not claimed (nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):   # zero error (constant groups): a sure p, 0 or 1
        if toward:
            return min(1.0, size * float(stats.t.sf(np.divide(toward * estimate - floor, se), df))), np.nan
        direction = stats.t.sf(np.divide(abs(estimate) - floor, se), df)
        equivalence = max(stats.t.sf(np.divide(margin - estimate, se), df), stats.t.sf(np.divide(margin + estimate, se), df))
    return min(1.0, 2 * size * float(direction)), min(1.0, 2 * size * float(equivalence))


def _in_rounds(mine: pd.DataFrame, theirs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """Both groups' values with the trials they share (same trial number = same round) first, in the
    same order: (a, b, shared). shared is 0 without a ``trial`` column or when a trial number repeats."""
    if "trial" not in mine or "trial" not in theirs:
        return _values(mine), _values(theirs), 0
    sides = [pd.Series(pd.to_numeric(g["value"], errors="coerce").to_numpy(float), index=g["trial"].to_numpy())
             .dropna() for g in (mine, theirs)]
    if any(side.index.has_duplicates for side in sides):
        return _values(mine), _values(theirs), 0
    common = sides[0].index.intersection(sides[1].index).sort_values()
    a, b = (np.r_[side[common].to_numpy(), side.drop(common).to_numpy()] for side in sides)
    return a, b, common.size


def _cv_caveat(*groups: np.ndarray) -> str:
    cvs = [abs(_ratio(_sd(x), _mean(x))) for x in groups if x.size >= 2]
    worst = max(cvs, default=np.nan)
    return (f"coverage unverified: CV {worst:.0%} above the {RATIO_VERIFIED_MAX_CV:.0%} verified"
            if worst > RATIO_VERIFIED_MAX_CV else "")


def _comparison(a: np.ndarray, b: np.ndarray, shared: int, thresholds: Thresholds, direction: str,
                family: Family, primary: bool, confidence: float) -> dict:
    """One row of :func:`compare` for sample a (the store) against sample b (the other)."""
    row = {"n_backend": a.size, "n_other": b.size, "n_pairs": shared,
           "mean_backend": _mean(a), "mean_other": _mean(b), "ratio_mean": _ratio(_mean(a), _mean(b)),
           "cv_backend": _ratio(_sd(a), _mean(a)), "cv_other": _ratio(_sd(b), _mean(b)),
           "margin": thresholds.equivalence, "caveat": _cv_caveat(a, b)}
    empty = dict.fromkeys(("ratio", "ratio_low", "ratio_high", "claim_low", "claim_high", "floor",
                           "p_claim", "p_equivalent"), np.nan) | {
        "method": "", "df": np.nan, "verdict": "not detectable" if primary else "", "equivalent": False,
        "identical": False}
    if min(a.size, b.size) < 2:
        return row | empty | {"no_interval": f"needs ≥ 2 trials of each (n={a.size} vs {b.size})"}
    if min(a.min(), b.min()) <= 0:
        return row | empty | {"no_interval": "a value ≤ 0: no ratio on the log scale"}
    d = _decision(np.log(a), np.log(b), shared, thresholds, family.level)
    estimate, se, floor = float(d.estimate), float(d.se), float(d.floor)
    half, claim_half = (stats.t.ppf(0.5 + level / 2, d.df) * se for level in (confidence, family.level))
    row |= {"ratio": np.exp(estimate), "ratio_low": np.exp(estimate - half), "ratio_high": np.exp(estimate + half),
            "method": PAIRED_METHOD if d.paired else INDEPENDENT_METHOD, "df": d.df, "floor": np.expm1(floor),
            "no_interval": "", "identical": bool(_is_constant(np.r_[a, b]))}
    if not primary:
        return row | {"claim_low": np.nan, "claim_high": np.nan, "p_claim": np.nan, "p_equivalent": np.nan,
                      "verdict": "", "equivalent": False}
    higher_is_better = direction == "higher"
    toward = 0 if family.expected is None else 1 if (family.expected == "worse") != higher_is_better else -1
    p_claim, p_equivalent = _family_p(estimate, se, d.df, floor, d.margin, family.size, toward)
    if toward:   # one-sided: the expected difference or nothing
        verdict = family.expected if (d.above if toward > 0 else d.below) else "not detectable"
        equivalent = False
    else:
        verdict = (("better" if bool(d.above) == higher_is_better else "worse") if d.above or d.below
                   else "equivalent" if d.equivalent else "not detectable")
        equivalent = bool(d.equivalent)
    return row | {"claim_low": np.exp(estimate - claim_half), "claim_high": np.exp(estimate + claim_half),
                  "p_claim": p_claim, "p_equivalent": p_equivalent, "verdict": verdict, "equivalent": equivalent}


def compare(
    df: pd.DataFrame,
    family: Family,
    directions: Mapping[str, str] | None = None,
    thresholds: Mapping[str, Thresholds] | None = None,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    confidence: float | None = None,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """The family's comparisons, and descriptive ones: one row per (backend, other, metric).

    Rows: every store against the baseline on every metric in ``df`` (claims on the family's
    primary metrics, none on the others), and with ``family.pairwise`` every pair of other stores on
    the primary metrics. ``pairs`` replaces those pairs (e.g. the controls against the baseline), on
    every metric: they are judged exactly as a comparison of the family would be, at its level.
    Needs ``backend, metric, unit, value``; with ``trial`` (trial k of every store ran in round k)
    the analysis is paired by round (:func:`_log_difference`).

    ``ratio`` is the ratio of geometric means (backend / other) with its interval at ``confidence``
    (default the family's) in ``ratio_low/high``; ``claim_low/high`` is the interval at the family's
    level that the ``verdict`` reads (:func:`_claims`): "better" / "worse" (beyond ``floor``),
    "equivalent" (inside ±``margin``), "not detectable"; "" on metrics outside the family.
    ``equivalent`` is also set beside a directional verdict when the difference lies within the
    margin. ``p_claim`` / ``p_equivalent``: family-adjusted p of those claims. ``identical``: every
    trial of both gave the same value. ``no_interval`` says why there is none (too few trials, a
    value <= 0); ``caveat`` flags a CV above VERIFIED_MAX_CV. ``ratio_mean`` (arithmetic) is shown
    without interval. ``p_bm``: studentized permutation Brunner-Munzel (descriptive, against the
    baseline only), computed only when ``bm_testable`` (its smallest attainable p is below 1 -
    confidence; 3 vs 3 reaches only 0.1). ``directions`` maps metric -> "lower" | "higher" (better,
    default "lower"); ``thresholds`` maps metric -> :class:`Thresholds` (default for the rest).
    """
    directions, thresholds = directions or {}, thresholds or {}
    confidence = confidence or family.confidence
    groups = dict(iter(df.groupby(["backend", "metric"])))
    units = df.groupby("metric")["unit"].first()
    empty = df.iloc[0:0]
    rows = []
    for backend, other in (pairs or family.pairs):
        against_baseline = other == family.baseline
        for metric in sorted(units.index):
            primary = metric in family.metrics
            mine, theirs = (groups.get((name, metric), empty) for name in (backend, other))
            if not (primary or against_baseline or pairs) or (mine.empty and theirs.empty):
                continue
            a, b, shared = _in_rounds(mine, theirs)
            row = {"backend": backend, "other": other, "metric": metric, "unit": units[metric],
                   "direction": _direction(metric, directions), "primary": primary}
            row |= _comparison(a, b, shared, thresholds.get(metric, Thresholds()), row["direction"], family,
                               primary, confidence)
            row["bm_testable"] = (against_baseline and min(a.size, b.size) >= 2
                                  and _rank_test_min_p(a.size, b.size) < 1 - confidence)
            row["p_bm"] = _brunner_munzel_p(a, b, n_resamples, seed) if row["bm_testable"] else np.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _closure(better: np.ndarray) -> np.ndarray:
    """Transitive closure of "claimed better than" over the last two axes (store x store): a chain of
    claims each beyond the floor is a claim beyond it too, and is true whenever its links are."""
    closed = better.copy()
    for _ in range(better.shape[-1]):
        closed = closed | (np.matmul(closed.astype(np.int64), closed.astype(np.int64)) > 0)
    return closed


def _leaders(better: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best, leaders) from "claimed better than" (..., K, K): the index of the store claimed better than
    every other (-1 if none) and the stores no other is claimed better than (the tied leaders; none
    when the claims contradict each other in a cycle, which needs a false claim)."""
    closed = _closure(better)
    k = better.shape[-1]
    beats_all = (closed | np.eye(k, dtype=bool)).all(axis=-1) & ~np.diagonal(closed, axis1=-2, axis2=-1)
    best = np.where(beats_all.any(axis=-1), beats_all.argmax(axis=-1), -1)
    return best, ~closed.any(axis=-2)


def leaders(comparisons: pd.DataFrame, family: Family) -> pd.DataFrame:
    """Per primary metric: ``best`` (the store claimed better than every other store, directly or
    through a chain of claims; "" if none) and ``leaders`` (the stores no other is claimed better
    than: the best alone, or the tied leaders). Only the family's comparisons count."""
    index = {s: i for i, s in enumerate(family.stores)}
    pairs = set(family.pairs)
    in_family = comparisons[comparisons["primary"].astype(bool).to_numpy()
                            & np.array([pair in pairs for pair in zip(comparisons["backend"], comparisons["other"])],
                                       dtype=bool)]
    rows = []
    for metric in family.metrics:
        better = np.zeros((len(index), len(index)), bool)
        for row in in_family[in_family["metric"] == metric].itertuples():
            if row.verdict in ("better", "worse"):
                winner, loser = (row.backend, row.other) if row.verdict == "better" else (row.other, row.backend)
                better[index[winner], index[loser]] = True
        best, leading = _leaders(better)
        rows.append({"metric": metric, "best": family.stores[best] if best >= 0 else "",
                     "leaders": tuple(s for s, lead in zip(family.stores, leading) if lead)})
    return pd.DataFrame(rows, columns=["metric", "best", "leaders"])


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



# --- power of the claim rule, and what a run can detect --------------------------------------------


def _log_sd(cv: float) -> float:
    """sd of the logs of lognormal values with this CV."""
    return float(np.sqrt(np.log1p(cv ** 2)))


def _critical_t(n: int, comparisons: int, confidence: float) -> float:
    """The t a comparison's estimate must clear (in standard errors) in a family of ``comparisons``."""
    return float(stats.t.ppf(1 - (1 - confidence) / (2 * comparisons), n - 1))


def claim_power(n: int, cv: float, effect: float, comparisons: int, confidence: float = 0.95,
                minimum_effect: float = MINIMUM_EFFECT) -> float:
    """Chance that a store whose geometric mean is (1 + effect) x the baseline's is claimed different
    (in that direction) by the rule, in a family of ``comparisons`` at ``confidence``.

    n trials each, both at CV ``cv`` (lognormal), paired by round without a round effect (one shared
    by the stores would only help). Exact, not simulated: the claim is the event that the paired t
    of the log ratios, shifted by the floor, clears the family's critical t, and that statistic is
    noncentral t with n - 1 df. Symmetric on the log scale: effect e and 1/(1+e) - 1 have equal power.
    """
    if n < 2:
        return 0.0
    shift = abs(np.log1p(effect)) - np.log1p(minimum_effect)
    if cv == 0:
        return float(shift > 0)
    noncentrality = shift * np.sqrt(n) / (np.sqrt(2) * _log_sd(cv))
    return float(stats.nct.sf(_critical_t(n, comparisons, confidence), n - 1, noncentrality))


def equivalence_power(n: int, cv: float, comparisons: int, confidence: float = 0.95,
                      margin: float = EQUIVALENCE, effect: float = 0.0) -> float:
    """Chance that the rule calls a store equivalent within ±``margin`` when its geometric mean is
    (1 + effect) x the baseline's (setting as :func:`claim_power`).

    The claim interval lies inside ±margin when the estimate is within margin - t s of 0, s its
    standard error; integrated over the distribution of s (chi, n - 1 df) at QUADRATURE quantiles."""
    if n < 2:
        return 0.0
    bound, shift = np.log1p(margin), np.log1p(effect)
    if cv == 0:
        return float(abs(shift) < bound)
    spread = np.sqrt(2 / n) * _log_sd(cv)   # sd of the estimate
    s = spread * np.sqrt(stats.chi2.ppf((np.arange(QUADRATURE) + 0.5) / QUADRATURE, n - 1) / (n - 1))
    half = _critical_t(n, comparisons, confidence) * s
    inside = (stats.norm.cdf((bound - half - shift) / spread) - stats.norm.cdf((half - bound - shift) / spread))
    return float(np.mean(np.maximum(inside, 0.0)))


@lru_cache(maxsize=None)
def detectable_difference(n: int, cv: float, comparisons: int, confidence: float = 0.95, power: float = 0.8,
                          minimum_effect: float = MINIMUM_EFFECT) -> float:
    """Smallest relative difference of geometric means the rule claims with ``power`` at n trials each;
    inf beyond MAX_EFFECT."""
    def shortfall(log_effect: float) -> float:
        return claim_power(n, cv, float(np.expm1(log_effect)), comparisons, confidence, minimum_effect) - power

    low, high = np.log1p(minimum_effect), np.log1p(MAX_EFFECT)
    if n < 2 or shortfall(high) < 0:
        return np.inf
    if shortfall(low) >= 0:   # no noise: anything beyond the floor is claimed
        return float(minimum_effect)
    return float(np.expm1(optimize.brentq(shortfall, low, high, rtol=1e-4)))


def _fewest_trials(reaches: Callable[[int], bool], cap: int) -> int | None:
    """Smallest n in [2, cap] where ``reaches`` (monotone in n) holds; None if not even at cap."""
    if not reaches(cap):
        return None
    low, high = 1, cap
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


@lru_cache(maxsize=None)
def trials_needed(effect: float, cv: float, comparisons: int, confidence: float = 0.95, power: float = 0.8,
                  minimum_effect: float = MINIMUM_EFFECT, cap: int = MAX_TRIALS) -> int | None:
    """Trials per store at which the rule claims ``effect`` with ``power``; None above ``cap``."""
    return _fewest_trials(
        lambda n: claim_power(n, cv, effect, comparisons, confidence, minimum_effect) >= power, cap)


@lru_cache(maxsize=None)
def trials_for_equivalence(cv: float, comparisons: int, confidence: float = 0.95, margin: float = EQUIVALENCE,
                           power: float = 0.8, cap: int = MAX_TRIALS) -> int | None:
    """Trials per store at which two stores that are alike are called equivalent within ±``margin``
    with ``power``; None above ``cap``."""
    return _fewest_trials(lambda n: equivalence_power(n, cv, comparisons, confidence, margin) >= power, cap)


def _cv_bounds(log_variance: float, dof: float, confidence: float) -> tuple[float, float]:
    """Confidence bounds of a CV from the chi-square distribution of the sample variance of the logs."""
    upper_q, lower_q = stats.chi2.ppf([0.5 + confidence / 2, 0.5 - confidence / 2], dof)
    return tuple(float(np.sqrt(np.expm1(log_variance * dof / q))) for q in (upper_q, lower_q))


def detectability(
    df: pd.DataFrame,
    family: Family,
    effect: float = 0.10,
    power: float = 0.8,
    thresholds: Mapping[str, Thresholds] | None = None,
) -> pd.DataFrame:
    """Per metric: what the family's rule can detect at this run's n, and the trials it would need.

    The noise is the CV of lognormal values with the log variance pooled over the stores (weights
    n_i - 1), with chi-square bounds at the family's confidence; ``n`` is the fewest trials any
    store completed. ``detectable*`` is :func:`detectable_difference`, ``trials*`` :func:`trials_needed`
    for ``effect``, ``trials_equivalence*`` :func:`trials_for_equivalence` at the metric's margin,
    each at the pooled CV and its two bounds, all at the family's size and confidence (the run's level).
    """
    thresholds = thresholds or {}
    rows = []
    for (metric, unit), group in df.groupby(["metric", "unit"], dropna=False, sort=True):
        rule = thresholds.get(metric, Thresholds())
        dof = squares = 0.0
        sizes, logs = [], []
        for _, g in group.groupby("backend"):
            x = _values(g)
            sizes.append(x.size)
            if x.size >= 2 and x.min() > 0:
                dof += x.size - 1
                squares += (x.size - 1) * np.var(np.log(x), ddof=1)
                logs.append(np.log(x))
        variance = squares / dof if dof else np.nan
        floor = (max(rule.minimum_effect, rule.resolution / np.exp(np.mean(np.concatenate(logs))))
                 if logs else rule.minimum_effect)
        row = {"metric": metric, "unit": unit, "n": min(sizes), "cv_dof": dof, "effect": effect,
               "margin": rule.equivalence, "cv_pooled": float(np.sqrt(np.expm1(variance)))}
        bounds = _cv_bounds(variance, dof, family.confidence) if dof and variance > 0 else (row["cv_pooled"],) * 2
        for suffix, cv in zip(("_low", "", "_high"), (bounds[0], row["cv_pooled"], bounds[1])):
            known = bool(np.isfinite(cv))
            row[f"cv{suffix}"] = cv
            row[f"detectable{suffix}"] = (detectable_difference(row["n"], cv, family.size, family.confidence, power,
                                                                floor) if known else np.nan)
            row[f"trials{suffix}"] = (trials_needed(effect, cv, family.size, family.confidence, power, floor)
                                      if known else None)
            row[f"trials_equivalence{suffix}"] = (trials_for_equivalence(cv, family.size, family.confidence,
                                                                         rule.equivalence, power) if known else None)
        rows.append(row)
    out = pd.DataFrame(rows, columns=DETECTABILITY_COLUMNS)
    for column in out.columns[out.columns.str.startswith("trials")]:
        out[column] = out[column].astype("Int64")
    return out


# --- the rule's own operating characteristics, by simulation ----------------------------------------


@dataclass(frozen=True)
class RuleCheck:
    """What :func:`simulate_rule` found; every rate with its Monte Carlo standard error."""

    draws: int
    false_claim: float   # runs with at least one false claim: better, worse, equivalent or best store
    false_best: float    # runs naming a best store that is not better than every other beyond the floor
    coverage: float      # ratio intervals at ``confidence`` (stores against the baseline) covering the truth
    intervals: int       # how many intervals ``coverage`` counts
    power: float         # comparisons whose true ratio is beyond the floor, claimed in its direction

    @property
    def false_claim_se(self) -> float:
        return monte_carlo_se(self.false_claim, self.draws)

    @property
    def coverage_se(self) -> float:
        return monte_carlo_se(self.coverage, self.intervals)


def monte_carlo_se(rate: float, draws: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / draws))


def _normal_log_shift(cv: np.ndarray) -> np.ndarray:
    """E log(1 + cv z), z standard normal (Gauss-Hermite): puts normal noise on a given geometric mean."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE // 20)
    values = np.maximum(1 + cv[..., None] * nodes, 1e-9)
    return np.log(values) @ weights / weights.sum()


def simulate_rule(
    geomeans: np.ndarray,
    cv: np.ndarray | float,
    trials: Sequence[int],
    *,
    pairwise: bool = True,
    confidence: float = 0.95,
    thresholds: Thresholds = Thresholds(),
    round_effect: float = 0.0,
    noise: str = "lognormal",
    draws: int = 4000,
    seed: int = 0,
) -> RuleCheck:
    """The claim rule of :func:`compare` and :func:`leaders` on ``draws`` simulated runs.

    ``geomeans``: true geometric means, stores x metrics, the baseline first; ``cv`` their CVs
    (broadcast); ``trials`` per store (trial k of each ran in round k; a store with fewer lost its
    last rounds). ``round_effect``: the share of each value's log variance that all stores share in
    a round. ``noise``: "lognormal", or "normal" (mean x (1 + cv z), placed so that its geometric
    mean is the given one). Every metric is primary and lower is better. The same functions decide
    as in the report (:func:`_decision`, :func:`_leaders`), vectorised over the runs.
    """
    truth = np.log(np.asarray(geomeans, float))
    stores, metrics = truth.shape
    sd = np.broadcast_to(np.asarray(cv, float), truth.shape)
    rng = _rng(seed)
    shape = (draws, stores, metrics, max(trials))
    z = np.sqrt(round_effect) * rng.standard_normal((draws, 1, metrics, shape[-1])) + np.sqrt(
        1 - round_effect) * rng.standard_normal(shape)
    if noise == "lognormal":
        logs = truth[..., None] + np.sqrt(np.log1p(sd ** 2))[..., None] * z
    elif noise == "normal":
        logs = np.log(np.maximum(1 + sd[..., None] * z, 1e-9)) + (truth - _normal_log_shift(sd))[..., None]
    else:
        raise ValueError(f"noise must be 'lognormal' or 'normal', got {noise!r}")
    names = tuple(f"s{i}" for i in range(stores))
    family = Family(names[0], names, tuple(f"m{j}" for j in range(metrics)), pairwise, confidence)
    true_floor = np.log1p(np.maximum(thresholds.minimum_effect, thresholds.resolution / np.exp(truth.min(axis=0))))
    false = np.zeros(draws, bool)
    better = np.zeros((draws, metrics, stores, stores), bool)
    covered = counted = hits = beyond = 0
    for store, other in family.pairs:
        i, j = names.index(store), names.index(other)
        la, lb = logs[:, i, :, :trials[i]], logs[:, j, :, :trials[j]]
        d = _decision(la, lb, min(trials[i], trials[j]), thresholds, family.level)
        r = truth[i] - truth[j]
        false |= ((d.above & ~(r > true_floor)) | (d.below & ~(r < -true_floor))
                  | (d.equivalent & ~(np.abs(r) < np.log1p(thresholds.equivalence)))).any(axis=-1)
        better[:, :, i, j], better[:, :, j, i] = d.below, d.above
        real = np.abs(r) > true_floor
        hits += int(np.sum(np.where(r > 0, d.above, d.below) & real))
        beyond += draws * int(real.sum())
        if other == family.baseline:
            half = stats.t.ppf(0.5 + confidence / 2, d.df) * d.se
            covered += int(np.sum(np.abs(d.estimate - r) <= half))
            counted += d.estimate.size
    best, _ = _leaders(better)
    truly_better = (truth[:, None, :] - truth[None, :, :] < -true_floor) | np.eye(stores, dtype=bool)[..., None]
    wrong_best = (best >= 0) & ~truly_better.all(axis=1).T[np.arange(metrics), np.maximum(best, 0)]
    false_best = wrong_best.any(axis=-1)
    return RuleCheck(draws, float(np.mean(false | false_best)), float(np.mean(false_best)), covered / counted,
                     counted, hits / beyond if beyond else np.nan)
