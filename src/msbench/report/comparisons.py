"""Is one store better than another, and could this run have seen it? Each store against the
baseline, the A/A pairs, the controls (the baseline under a second name and held to a CPU quota),
differences in spread, and the power of the claim rule at this run's n. Every claim (better, worse,
equivalent, best store) comes from one family of comparisons (:func:`claims`: the real stores against
the baseline and each other on the PRIMARY metrics) whose error is controlled together; the statistics
are :mod:`msbench.analysis.stats`."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from msbench.analysis import stats
from msbench.metrics import Metric, compared, headline
from msbench.report.values import (BYTE_UNITS, TIME_UNITS, Run, confidence_of, default_baseline, trial_values,
                                   without_controls)
from msbench.report.page import finite, noted, num, p_value, pct, with_ci

# Resamples of the Brunner-Munzel permutation test (stats' default); module-level so tests can lower it.
N_RESAMPLES = 9999
SEED = 0
POWER = 0.8   # the power at which detectable differences and trials needed are stated
ALPHA = 0.05  # level of the Brown-Forsythe spread test: descriptive, not one of the report's claims
# The metrics on which the report makes claims (better, worse, equivalent, best store): the like-for-like
# measure of each published claim, the questions the study was built to answer. Every other compared
# metric is shown with its ratio and interval but no claim words. Each primary metric adds a comparison
# per store pair to the family, and widens every claim interval (the family's Bonferroni level).
PRIMARY = ("insert_rows_per_s", "index_build_s", "load_first_s", "load_warm_s", "search_latency_mean_ms",
           "bucket_bytes_after_gc")
# A run without the footprint after GC (Params.footprint_after_gc false, the standard profile) claims on
# the footprint as found instead.
STANDS_IN = {"bucket_bytes_after_gc": "bucket_bytes"}
# The phases that move the store's bytes, on which the controls must show the method sees a slower store
# (and no difference between a store and itself). The controls test the method, not the stores: each
# twin's claims form a family of its own (the twin against its store on these metrics, twin_family),
# controlled at the same level, and stated separately from the stores' family.
CONTROL_METRICS = ("flush_s", "index_build_s", "load_first_s", "load_warm_s", "load_cold_s")
CLAIMED = ("better", "worse")


@dataclass(frozen=True)
class Claims:
    """What the report claims about one run's stores: the ``family`` whose claims are controlled together,
    its comparisons (``rows``: stats.compare rows, the baseline ones first, metrics in headline order) and
    per primary metric the best store or the tied leaders (``leaders``: stats.leaders)."""

    family: stats.Family
    rows: pd.DataFrame
    leaders: pd.DataFrame
    thresholds: dict[str, stats.Thresholds]


def real_stores(run: Run, tidy: pd.DataFrame, baseline: str) -> tuple[str, ...]:
    """The stores that completed a trial (controls are not stores), the baseline first."""
    ran = set(tidy["backend"]) - run.controls
    return tuple(([baseline] if baseline in ran else []) + sorted(ran - {baseline}))


def thresholds(run: Run, tidy: pd.DataFrame, metrics: list[Metric]) -> dict[str, stats.Thresholds]:
    """Per metric, what a claim must clear: the default equivalence margin and minimum effect, and the step
    the metric is recorded in, in its display unit: one byte for byte counts, the largest recorded
    resolution of a timed wait (its *_resolution_s rows), one hit in top_k x queries for recall."""
    data, params = run.completed("results"), run.manifest.params
    units = tidy.groupby("metric")["unit"].first() if len(tidy) else pd.Series(dtype=str)
    found = {}
    for m in metrics:
        if m.name not in units:
            continue
        steps = data.loc[(data["phase"] == m.phase) & (data["metric"] == m.metric.removesuffix("_s") + "_resolution_s"),
                         "value"]
        resolution = (1 / dict(BYTE_UNITS)[units[m.name]] if m.unit == "bytes"
                      else float(steps.max()) if m.metric.endswith("_s") and steps.notna().any()
                      else 1 / (params.top_k * params.n_queries) if m.metric.startswith("recall_at_") else 0.0)
        found[m.name] = stats.Thresholds(resolution=resolution)
    return found


def claim_family(run: Run, tidy: pd.DataFrame, baseline: str) -> stats.Family | None:
    """The report's family: the real stores against ``baseline`` and each other, on the primary metrics
    this run recorded, at the run's own level; None when there is nothing to compare."""
    stores = real_stores(run, tidy, baseline)
    if baseline not in stores or len(stores) < 2:
        return None
    recorded = set(tidy["metric"])
    primary = (m if m in recorded else STANDS_IN.get(m) for m in PRIMARY)
    return stats.Family(baseline, stores, tuple(m for m in primary if m in recorded), confidence=confidence_of(tidy))


def compare(run: Run, tidy: pd.DataFrame, family: stats.Family, metrics: list[Metric],
            pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """stats.compare with the run's directions and thresholds, rows in the family's order of pairs and
    headline order of metrics; ``pairs`` (e.g. the controls) judged at the family's level."""
    order = {m.name: i for i, m in enumerate(metrics)}
    raw = stats.compare(tidy, family, {m.name: m.direction for m in metrics}, thresholds(run, tidy, metrics),
                        pairs=pairs, n_resamples=N_RESAMPLES, seed=SEED)
    pair_order = {pair: i for i, pair in enumerate(pairs or family.pairs)}
    keys = pd.DataFrame({"pair": [pair_order[p] for p in zip(raw["backend"], raw["other"])],
                         "metric": raw["metric"].map(order)})
    return raw.iloc[keys.sort_values(["pair", "metric"]).index].reset_index(drop=True)


def claims(run: Run, baseline: str | None = None) -> Claims | None:
    """The report's claims on ``run`` (baseline: :func:`default_baseline`); None with fewer than two stores."""
    metrics = compared(run.manifest.params)
    tidy = without_controls(run, trial_values(run, metrics))
    baseline = baseline or default_baseline(run)
    family = claim_family(run, tidy, baseline) if baseline and len(tidy) else None
    if family is None:
        return None
    rows = compare(run, tidy, family, metrics)
    return Claims(family, rows, stats.leaders(rows, family), thresholds(run, tidy, metrics))


def _factor_words(row: pd.Series, low: float, high: float) -> tuple[str, str]:
    """("1.8x faster than minio", " (CI 1.5–2.1x)") for one stats.compare row: the ratio of geometric means
    turned so it reads above 1, in the words of its unit, with the interval (low, high) given."""
    other, r = row["other"], row["ratio"]
    larger, smaller = (("slower", "faster") if row["unit"] in TIME_UNITS
                       else ("higher", "lower") if row["direction"] == "higher" else ("larger", "smaller"))
    if not (finite(r) and r > 0):
        return f"not comparable with {other}", ""
    up = r >= 1
    factor, low, high = (r, low, high) if up else (1 / r, 1 / high, 1 / low)
    if factor == 1:
        return f"the same as {other}", (f" (CI {_percent(1 / low)} {smaller} to {_percent(high)} {larger})"
                                        if finite(low) and finite(high) else "")
    if factor < SMALL_FACTOR:   # 1.003x would print as "1x": a small factor reads as a percentage
        return (f"{_percent(factor)} {larger if up else smaller} than {other}",
                f" (CI {_percent(low)} to {_percent(high)})" if finite(low) and finite(high) else "")
    return (f"{num(factor)}x {larger if up else smaller} than {other}",
            f" (CI {num(low)}–{num(high)}x)" if finite(low) and finite(high) else "")


SMALL_FACTOR = 1.1


def _percent(factor: float) -> str:
    """A factor near 1 as the difference in percent (1.003 -> "0.3%", 1.0101 -> "1.0%")."""
    diff = 100 * (factor - 1)
    return f"{diff:.1f}%" if abs(diff) >= 0.1 else f"{diff:.2g}%"


def ratio_words(row: pd.Series, claim: bool = True) -> str:
    """One stats.compare row's ratio as words with its claim interval (or the 95% one):
    "rustfs is 1.8x faster than minio (CI 1.5–2.1x)"."""
    factor, ci = _factor_words(row, *((row["claim_low"], row["claim_high"]) if claim
                                      else (row["ratio_low"], row["ratio_high"])))
    return f"{row['backend']} is {factor}{ci}"


def claim_word(row: pd.Series) -> str:
    """The claim on one comparison in the report's four words (equivalence with its margin)."""
    if row["verdict"] == "equivalent":
        return f"equivalent within ±{row['margin']:.0%}"
    return row["verdict"]


def verdict_words(row: pd.Series) -> str:
    """One stats.compare row as a sentence: "rustfs is 1.8x faster than minio (CI 1.5–2.1x): better"."""
    caveat = f" [{row['caveat']}]" if row["caveat"] else ""
    n = (f"n={row['n_backend']}" if row["n_backend"] == row["n_other"]
         else f"n={row['n_backend']} vs {row['n_other']}")
    if row["no_interval"]:
        return f"{'not detectable' if row['primary'] else 'no claim'}: no interval ({row['no_interval']})"
    if not row["primary"]:
        return f"no claim (not a primary metric): {ratio_words(row, claim=False)}{caveat}"
    if row["verdict"] in CLAIMED:
        within = f", by less than {row['margin']:.0%}" if row["equivalent"] else ""
        return f"{ratio_words(row)}: {row['verdict']}{within}{caveat}"
    if row["verdict"] == "equivalent":
        same = "identical in every trial, " if row["identical"] else ""
        return f"{same}{claim_word(row)}: {ratio_words(row)}{caveat}"
    return f"not detectable at {n}: {ratio_words(row)}{caveat}"


def interval_text(row: pd.Series, low: str = "ratio_low", high: str = "ratio_high") -> str:
    """A ratio with an interval of one stats.compare row, or why there is none."""
    return with_ci(row["ratio"], row[low], row[high], row["no_interval"] or "not a primary metric")


def _brunner_munzel_text(row: pd.Series, baseline: str, alpha: float) -> str:
    """Brunner-Munzel p (against the baseline only), or why it is not shown (a test that cannot reject at
    this n is no evidence)."""
    if row["other"] != baseline:
        return "–"
    if min(row["n_backend"], row["n_other"]) >= 2 and not row["bm_testable"]:
        at_n = (f"n={row['n_backend']}" if row["n_backend"] == row["n_other"]
                else f"n={row['n_backend']} vs {row['n_other']}")
        return f"not testable at {at_n} (smallest possible p ≥ {alpha:.2g})"
    return p_value(row["p_bm"])


def detectable_text(tidy: pd.DataFrame, found: Claims, effect: float = 0.10,
                    ranges: bool = True) -> dict[str, tuple[str, str, str]]:
    """Per metric: (smallest difference the family's rule detects at this run's n, trials needed for
    ``effect``, trials needed to call two alike stores equivalent), each as "point (range)" over the CV's
    bounds, or the point alone without ``ranges``."""
    if tidy.empty:
        return {}
    table = stats.detectability(tidy, found.family, effect, POWER, found.thresholds)

    def texts(row: pd.Series) -> tuple[str, str, str]:
        if not finite(row["cv_pooled"]):
            return ("unknown: no store with ≥ 2 trials",) * 3
        detectable = ["> 1000%" if v == np.inf else pct(v) if finite(v) else "– (needs n ≥ 2)"
                      for v in (row[f"detectable{s}"] for s in ("", "_low", "_high"))]
        trials = [[f"> {stats.MAX_TRIALS}" if pd.isna(v) else str(int(v))
                   for v in (row[f"{kind}{s}"] for s in ("", "_low", "_high"))]
                  for kind in ("trials", "trials_equivalence")]
        return tuple(t[0] if t[0] == t[1] == t[2] or not ranges else f"{t[0]} ({t[1]}–{t[2]})"
                     for t in (detectable, *trials))

    return {row["metric"]: texts(row) for _, row in table.iterrows()}


DISPLAY_COLUMNS = [
    "backend", "compared with", "metric", "verdict", "unit", "better when", "n (trials, backend / other)",
    "mean, backend", "mean, other", "ratio of geometric means [95% CI]", "claim interval [family level]", "method",
    "p (family-adjusted): difference", "p (family-adjusted): equivalence", "p (Brunner-Munzel)",
    "ratio of arithmetic means (no CI)", f"smallest detectable difference ({POWER:.0%} power)"]


def _comparison_display(raw: pd.DataFrame, family: stats.Family,
                        detectable: dict[str, tuple[str, str, str]]) -> pd.DataFrame:
    """The readable form of stats.compare rows (shared by the comparison and the A/A tables)."""
    alpha = 1 - family.confidence
    return pd.DataFrame({
        "backend": raw["backend"], "compared with": raw["other"], "metric": raw["metric"],
        "verdict": [verdict_words(row) for _, row in raw.iterrows()],
        "unit": raw["unit"], "better when": raw["direction"],
        "n (trials, backend / other)": [f"{a} / {b}" for a, b in zip(raw["n_backend"], raw["n_other"])],
        "mean, backend": raw["mean_backend"].map(num), "mean, other": raw["mean_other"].map(num),
        "ratio of geometric means [95% CI]": [interval_text(row) for _, row in raw.iterrows()],
        "claim interval [family level]": [
            interval_text(row, "claim_low", "claim_high") if row["primary"] else "– (no claim)"
            for _, row in raw.iterrows()],
        "method": raw["method"].map(lambda m: m or "–"),
        "p (family-adjusted): difference": raw["p_claim"].map(p_value),
        "p (family-adjusted): equivalence": raw["p_equivalent"].map(p_value),
        "p (Brunner-Munzel)": [_brunner_munzel_text(row, family.baseline, alpha) for _, row in raw.iterrows()],
        "ratio of arithmetic means (no CI)": raw["ratio_mean"].map(num),
        f"smallest detectable difference ({POWER:.0%} power)": raw["metric"].map(
            lambda m: detectable.get(m, ("–",))[0]),
    }, columns=DISPLAY_COLUMNS)


def method_note(family: stats.Family) -> str:
    """How every claim of the report is made, for the notes of the tables that show claims."""
    return (f"{family.statement()} Ratios are backend / other, of geometric means (the typical factor between "
            "two stores), on the log scale: paired by round when every trial of the smaller group has its "
            "round partner (trial k of each store ran in round k; t on the log ratios, df n − 1), else "
            "independent (Welch's standard error, df min(n) − 1, which holds at any difference in noise). The "
            f"95% CI is computed at the run's level; the claim interval at the family's ({100 * family.level:.4g}%). A difference is claimed "
            "(better / worse) when the claim interval excludes ±(the larger of 1% and the metric's recorded "
            "resolution); 'equivalent within ±X%' when it lies inside ±X% (5% by default); else 'not "
            "detectable'. A value recorded in steps (bytes, polled times) carries its rounding variance, so a "
            f"constant group is never taken as exact. Marked where a CV exceeds {stats.RATIO_VERIFIED_MAX_CV:.0%}: "
            "beyond it the coverage was verified only for lognormal noise. The family-adjusted p of a claim is "
            f"below {1 - family.confidence:.2g} exactly when it is made. Brunner-Munzel (studentized permutation) "
            "is descriptive, shown only where it can reject (its smallest possible p is 2 / C(2n, n), 0.1 at "
            "3 vs 3). The smallest detectable difference is exact for this rule (see the power table). ")


def comparison_table(run: Run, baseline: str | None = None) -> pd.DataFrame:
    """Every store against ``baseline`` (default: :func:`default_baseline`) on the compared metrics, then the
    pairs of other stores on the primary metrics (the comparisons a best store rests on)."""
    found = claims(run, baseline)
    if found is None:
        return noted(pd.DataFrame(columns=DISPLAY_COLUMNS), "No comparison: fewer than two stores completed a trial.")
    metrics = compared(run.manifest.params)
    tidy = without_controls(run, trial_values(run, metrics))
    table = _comparison_display(found.rows, found.family, detectable_text(tidy, found))
    seen = store_dependence(run)
    if seen:
        table.insert(4, "does the store matter here? (positive control)",
                     table["metric"].map(lambda m: seen.get(m, "–")))
    return noted(table, f"Every store against {found.family.baseline}, then the other pairs on the primary "
                        "metrics. " + method_note(found.family)
                  + ("The positive-control column says whether a store held to a known CPU quota was seen in "
                     "this metric at this scale (section 'Can this run see a difference?'); where it was not, "
                     "this phase did not measurably depend on the object store here at this n, and a verdict on "
                     "it says little about the stores." if seen else ""))


def aa_table(run: Run) -> pd.DataFrame:
    """Every pair of backends that run the same store (aliases) compared: an A/A test of the benchmark.

    Any difference claimed here is a false positive by construction, so this table shows how far the
    verdicts of :func:`comparison_table` can be trusted on this machine. Judged by the family's rule,
    at its level.
    """
    metrics = compared(run.manifest.params)
    tidy = trial_values(run, metrics)
    stores = run.manifest.stores
    ran = sorted(set(tidy["backend"]))
    pairs = [(b, a) for a, b in combinations(ran, 2) if stores.get(a) and stores.get(a) == stores.get(b)
             and handicap_of(run, a) == handicap_of(run, b)]
    found = claims(run)
    if not pairs or found is None:
        return noted(pd.DataFrame(columns=[*DISPLAY_COLUMNS, "A/A reading"]),
                     "No A/A pair ran: an A/A pair is two backends with the same store kind (e.g. minio "
                     "and an alias of it), so any difference between them is a false positive of the "
                     "benchmark itself. Add an alias backend to the run to measure that rate.")
    raw = compare(run, tidy, found.family, metrics, pairs)
    table = _comparison_display(raw, found.family, detectable_text(without_controls(run, tidy), found))
    table["A/A reading"] = ["FALSE POSITIVE: the same store measured twice differs" if v in CLAIMED
                            else "consistent (no difference claimed)" for v in raw["verdict"]]
    return noted(table, "A/A pairs (same store kind under two names: "
                        + ", ".join(f"{b} = {a} ({stores[a]})" for b, a in pairs) + "). "
                        + method_note(found.family))


def handicap_of(run: Run, backend: str) -> dict:
    return run.manifest.handicaps.get(backend, {})


def _twins(run: Run, ran: set[str]) -> list[tuple[str, str, str]]:
    """(store, its A/A twin, its handicapped twin) for every store that ran with both controls."""
    stores = run.manifest.stores
    out = []
    for base in sorted(ran):
        if handicap_of(run, base):
            continue
        same = [b for b in sorted(ran - {base}) if stores.get(b) == stores.get(base)]
        aa = next((b for b in same if not handicap_of(run, b)), None)
        slow = next((b for b in same if handicap_of(run, b)), None)
        if aa and slow and base not in {aa for _, aa, _ in out}:
            out.append((base, aa, slow))
    return out


def twin_family(base: str, twin: str, metrics: tuple[str, ...], handicapped: bool,
                confidence: float = 0.95) -> stats.Family:
    """A control's own family: the twin against its store on ``metrics``. The A/A twin is two-sided (a
    difference either way is a false claim); the handicapped twin one-sided, only "worse" claimed: a CPU
    quota cannot speed a store up, and a control that asks whether the method sees a known slowdown
    should not spend half its error on the other side (docs/method.md, "Controls")."""
    return stats.Family(base, (base, twin), metrics, pairwise=False, confidence=confidence,
                        expected="worse" if handicapped else None)


@dataclass(frozen=True)
class Controls:
    """One store's controls judged: its A/A twin and its handicapped twin, each against it in a family of
    its own (:func:`twin_family`) on the CONTROL_METRICS the run recorded, with their stats.compare rows."""

    store: str
    aa: str
    slow: str
    aa_family: stats.Family
    slow_family: stats.Family
    aa_rows: pd.DataFrame
    slow_rows: pd.DataFrame


def control_comparisons(run: Run) -> list[Controls]:
    """Per store with both twins, the two controls judged (:class:`Controls`)."""
    metrics = compared(run.manifest.params)
    tidy = trial_values(run, metrics)
    out = []
    for base, aa, slow in _twins(run, set(tidy["backend"]) if len(tidy) else set()):
        recorded = tuple(m for m in CONTROL_METRICS if m in set(tidy["metric"]))
        families = [twin_family(base, twin, recorded, twin == slow, confidence_of(tidy)) for twin in (aa, slow)]
        rows = [compare(run, tidy[tidy["backend"].isin(f.stores)], f, metrics) for f in families]
        out.append(Controls(base, aa, slow, *families, *rows))
    return out


def store_dependence(run: Run) -> dict[str, str]:
    """Control metric -> whether the handicapped twin was claimed worse there (first store with controls)."""
    found = control_comparisons(run)
    if not found:
        return {}
    slow = found[0].slow_rows
    slow = slow[slow["primary"]]
    return {row["metric"]: ("yes: seen" if row["verdict"] == "worse" else f"unknown: {row['no_interval']}"
                            if row["no_interval"] else "not seen at this n") for _, row in slow.iterrows()}


def controls_table(run: Run) -> pd.DataFrame:
    """Can this run see a difference? The A/A twin (must show none) beside the handicapped twin (must be
    seen as slower where the phase depends on the store), metric by metric, by the report's claim rule."""
    columns = ["metric", "unit", "A/A: twin / store [claim interval]", "A/A reading",
               "positive control: handicapped / store [claim interval]", "positive-control reading",
               "does this metric depend on the store at this scale?"]
    found = control_comparisons(run)
    if not found:
        return noted(pd.DataFrame(columns=columns),
                      "No controls table: it needs both of the baseline's twins, the A/A one and the handicapped "
                      "one (notebook parameter controls=True, or msbench run --controls; a run with only one "
                      "twin shows it among the stores' figures, without claims).")
    rows, notes = [], []
    for control in found:
        cpu = handicap_of(run, control.slow).get("cpu")
        for (_, a), (_, p) in zip(control.aa_rows.iterrows(), control.slow_rows.iterrows()):
            if not a["primary"]:
                rows.append([a["metric"], a["unit"], interval_text(a), "no claim (not a control metric)",
                             interval_text(p), "no claim (not a control metric)", "– (no claims on this metric)"])
                continue
            claimed_aa = a["verdict"] in CLAIMED
            rows.append([
                a["metric"], a["unit"], interval_text(a, "claim_low", "claim_high"),
                "FALSE POSITIVE: difference claimed" if claimed_aa
                else f"no difference claimed (as it must be): {claim_word(a)}",
                interval_text(p, "claim_low", "claim_high"),
                f"claimed {p['verdict']}" if p["verdict"] in CLAIMED else claim_word(p),
                (f"yes: the store held to {cpu:g} CPU is seen" if p["verdict"] == "worse" and not claimed_aa
                 else "unclear: the A/A pair differs too" if claimed_aa
                 else f"unknown: {p['no_interval']}" if p["no_interval"]
                 else "not seen: no measurable dependence on the store at this scale and n (a smaller one can "
                      "hide below what this run detects)"),
            ])
        notes.append(f"{control.store} against {control.aa} (the same store under another name: any claimed "
                     f"difference is a false positive of the method) and against {control.slow} (the same store "
                     f"with its processes held to {cpu:g} CPU by a cgroup quota, a known slowdown the method must "
                     "see where a phase depends on the store).")
    first = found[0]
    return noted(pd.DataFrame(rows, columns=columns),
                  " ".join(notes) + " The controls test the method, not the stores: each twin's claims are a family "
                  f"of its own, with the report's claim rule. The A/A twin: {method_note(first.aa_family)}The "
                  f"handicapped twin: {first.slow_family.statement()} Its claim interval is two-sided at "
                  f"{100 * first.slow_family.level:.4g}%; only its bound on the slower side is read.")


def variance_table(run: Run) -> pd.DataFrame:
    """Per headline metric: each backend's trial-to-trial sd and the Brown-Forsythe test that they differ,
    shown only where it could detect a 3x spread difference at this run's n."""
    metrics = headline(run.manifest.params)
    tidy = trial_values(run, metrics)
    tests = stats.variance_tests(tidy, ALPHA).set_index("metric") if len(tidy) else pd.DataFrame()
    rows = []
    for m in metrics:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        if sel.empty:
            continue
        spread = sel.groupby("backend")["value"].agg(["count", "std", "mean"])
        t = tests.loc[m.name]
        power = f"{pct(t['power'])} power against a {stats.SPREAD_RATIO:g}x sd ratio"
        sizes = "/".join(str(int(n)) for n in spread["count"][spread["count"] >= 3])
        if not finite(t["p_value"]):
            p, reading = "–", "not testable: needs 2 backends with ≥ 3 trials each, not all constant"
        elif not t["testable"]:
            p, reading = f"not testable at n={sizes}", f"not testable at n={sizes} ({power})"
        else:
            p = p_value(t["p_value"])
            reading = ("spread differs between backends" if t["p_value"] < ALPHA
                       else f"no difference in spread detected ({power})")
        rows.append([m.name, sel["unit"].iloc[0],
                     "; ".join(f"{b}: sd {num(s['std'])}, CV {pct(s['std'] / s['mean'] if s['mean'] else np.nan)}"
                               f" (n={int(s['count'])})" for b, s in spread.iterrows()),
                     t["backends"] or "–", num(t["statistic"]), p, reading])
    return noted(pd.DataFrame(rows, columns=["metric", "unit", "trial-to-trial spread per backend",
                                              "backends tested (≥ 3 trials)", "Brown-Forsythe W", "p", "reading"]),
                  "Do the backends differ in how repeatable they are? Brown-Forsythe (Levene on medians) over "
                  f"per-trial values; p < {ALPHA} means the spreads differ. Not corrected for multiple metrics. "
                  f"Its power is simulated at this run's group sizes for one backend with {stats.SPREAD_RATIO:g}x "
                  f"the sd of the others (normal data); below {stats.TESTABLE_POWER:.0%} the test is shown as "
                  "not testable (at 3 vs 3 it almost never rejects), as a p-value there would be no evidence.")


def power_table(run: Run, effect: float = 0.10) -> pd.DataFrame:
    """What the report's claim rule can detect with this run's noise and n, and the n it would need."""
    metrics = compared(run.manifest.params)
    tidy = without_controls(run, trial_values(run, metrics))
    columns = ["metric", "unit", "claims made", "pooled CV [95% CI]",
               f"smallest difference detectable at this n ({POWER:.0%} power)",
               f"trials per store to detect a {effect:.0%} difference ({POWER:.0%} power)",
               f"trials per store to call two alike stores equivalent ({POWER:.0%} power)",
               "completed trials per store"]
    found = claims(run)
    if tidy.empty or found is None:
        return noted(pd.DataFrame(columns=columns), "No comparison: fewer than two stores completed a trial.")
    table = stats.detectability(tidy, found.family, effect, POWER, found.thresholds).set_index("metric")
    texts = detectable_text(tidy, found, effect)
    counts = tidy.groupby(["metric", "backend"]).size()
    rows = [[m.name, table.loc[m.name, "unit"], "yes" if m.name in found.family.metrics else "no (not primary)",
             with_ci(100 * table.loc[m.name, "cv_pooled"], 100 * table.loc[m.name, "cv_low"],
                     100 * table.loc[m.name, "cv_high"], "needs a store with ≥ 2 trials") + " %",
             *texts[m.name], ", ".join(f"{b}: {n}" for b, n in counts[m.name].items())]
            for m in metrics if m.name in table.index]
    family = found.family
    return noted(pd.DataFrame(rows, columns=columns),
                  f"Exact for the report's claim rule (not simulated, not a single t test): the paired t on log "
                  f"ratios at the family's level ({family.size} comparisons, each at {100 * family.level:.4g}%, "
                  f"{1 - family.confidence:.0%} over the family), lognormal noise with the CV pooled over the "
                  "stores, no round-to-round correlation (one would let the pairing do better), differences "
                  "claimed beyond the 1% floor (or the resolution). Equivalence: two stores alike called "
                  f"equivalent within the metric's margin (±{stats.EQUIVALENCE:.0%}). Metrics outside the family are "
                  "shown as if they were in it. Ranges in brackets are the figures at the bounds of the CV "
                  "(chi-square bounds of the log variance); the detectable difference uses the fewest trials any "
                  "store completed. A difference below the detectable one is usually missed.")
