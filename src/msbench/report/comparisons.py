"""Is one store better than another, and could this run have seen it? Each store against the
baseline, the A/A pairs, the controls (the baseline under a second name and held to a CPU quota),
differences in spread, and the power of the claim rule at this run's n. The statistics are
:mod:`msbench.analysis.stats`."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from msbench.analysis import stats
from msbench.metrics import Metric, compared, direction, headline
from msbench.report.values import TIME_UNITS, Run, confidence_of, default_baseline, trial_values, without_controls
from msbench.report.page import finite, interval, noted, num, p_value, pct, with_ci

# Resamples of the Brunner-Munzel permutation test (stats' default); module-level so tests can lower it.
N_RESAMPLES = 9999
SEED = 0
ALPHA = 0.05
POWER = 0.8   # the power at which detectable differences and trials needed are stated


def _directions(metrics: list[Metric]) -> dict[str, str]:
    return {m.name: direction(m.metric) for m in metrics}


def compare(tidy: pd.DataFrame, baseline: str, metrics: list[Metric]) -> pd.DataFrame:
    """stats.compare over the headline family (Holm runs over it), rows in headline order."""
    raw = stats.compare(tidy, baseline, _directions(metrics), confidence=confidence_of(tidy), alpha=ALPHA,
                        n_resamples=N_RESAMPLES, seed=SEED)
    order = raw["metric"].map({m.name: i for i, m in enumerate(metrics)})
    return raw.assign(order=order).sort_values(["backend", "order"], ignore_index=True).drop(columns="order")


def _factor_words(row: pd.Series) -> tuple[str, str]:
    """("1.8x faster than minio", " (95% CI 1.5–2.1x)") for one stats.compare row: the ratio turned
    so it reads above 1, in the words of its unit."""
    base = row["baseline"]
    r, lo, hi = row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"]
    larger, smaller = (("slower", "faster") if row["unit"] in TIME_UNITS
                       else ("higher", "lower") if row["direction"] == "higher" else ("larger", "smaller"))
    if not (finite(r) and r > 0):
        return f"different from {base} (ratio undefined: baseline mean 0)", ""
    up = r >= 1
    factor, low, high = (r, lo, hi) if up else (1 / r, 1 / hi if hi else np.inf, 1 / lo if lo else np.inf)
    bounded = finite(lo) and finite(hi) and lo > 0
    if factor < SMALL_FACTOR:   # 1.003x would print as "1x": a small factor reads as a percentage
        return (f"{_percent(factor)} {larger if up else smaller} than {base}",
                f" (95% CI {_percent(low)}–{_percent(high)})" if bounded else "")
    return (f"{num(factor)}x {larger if up else smaller} than {base}",
            f" (95% CI {num(low)}–{num(high)}x)" if bounded else "")


SMALL_FACTOR = 1.1


def _percent(factor: float) -> str:
    """A factor near 1 as the difference in percent (1.003 -> "0.3%", 1.0101 -> "1.0%")."""
    diff = 100 * (factor - 1)
    return f"{diff:.1f}%" if abs(diff) >= 0.1 else f"{diff:.2g}%"


def ratio_words(row: pd.Series) -> str:
    """One stats.compare row's ratio as words: "rustfs is 1.8x faster than minio (95% CI 1.5–2.1x)"."""
    factor, ci = _factor_words(row)
    return f"{row['backend']} is {factor}{ci}"


def _verdict_words(row: pd.Series) -> str:
    """stats.compare's verdict as a sentence: "rustfs is 1.8x faster than minio (95% CI 1.5–2.1x): better"."""
    verdict, r, lo, hi = row["verdict"], row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"]
    if verdict in ("better", "worse"):
        return f"{ratio_words(row)}: {verdict}"
    if "zero variance, untested" in verdict:
        return f"{row['backend']} is {_factor_words(row)[0]} in every trial; zero variance, so untested"
    if verdict.startswith("no detectable"):
        return f"{verdict} (ratio {num(r)}, 95% CI {interval(lo, hi, no_ratio_ci(row))})"
    return verdict


def no_ratio_ci(row: pd.Series) -> str:
    """Why a ratio of means has no finite interval."""
    if min(row["n_backend"], row["n_baseline"]) < 2:
        return "needs n ≥ 2 each"
    if not row["mean_baseline"]:
        return "ratio undefined, other mean is 0"
    return "unbounded: the other mean is not clearly above 0"


def _brunner_munzel_text(row: pd.Series) -> str:
    """Brunner-Munzel p, or why it is not shown (a test that cannot reject at this n is no evidence)."""
    if min(row["n_backend"], row["n_baseline"]) >= 2 and not row["bm_testable"]:
        at_n = (f"n={row['n_backend']}" if row["n_backend"] == row["n_baseline"]
                else f"n={row['n_backend']} vs {row['n_baseline']}")
        return f"not testable at {at_n} (smallest possible p ≥ {ALPHA})"
    return p_value(row["p_bm"])


def detectable_text(tidy: pd.DataFrame, metrics: list[Metric], effect: float = 0.10,
                    ranges: bool = True) -> dict[str, tuple[str, str]]:
    """Per metric: (smallest difference detectable at this run's n, trials needed for ``effect``), each as
    "point (range)" over the CV's 95% bounds, or the point alone without ``ranges``."""
    if tidy.empty:
        return {}
    found = stats.detectability(tidy, tidy["metric"].nunique(), effect, alpha=ALPHA, power=POWER)

    def texts(row: pd.Series) -> tuple[str, str]:
        if not finite(row["cv_pooled"]):
            return ("unknown: no backend with ≥ 2 trials",) * 2
        if row["cv_pooled"] == 0:
            return ("– (zero variance)",) * 2
        detectable = ["> 1000%" if v == np.inf else pct(v) if finite(v) else "– (needs n ≥ 2)"
                      for v in (row[f"detectable{s}"] for s in ("", "_low", "_high"))]
        trials = [f"> {stats.MAX_TRIALS}" if pd.isna(v) else str(int(v))
                  for v in (row[f"trials{s}"] for s in ("", "_low", "_high"))]
        return tuple(t[0] if t[0] == t[1] == t[2] or not ranges else f"{t[0]} ({t[1]}–{t[2]})"
                     for t in (detectable, trials))

    return {row["metric"]: texts(row) for _, row in found.iterrows()}


def _comparison_display(raw: pd.DataFrame, detectable: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The readable form of stats.compare rows (shared by the baseline and the A/A tables)."""
    return pd.DataFrame({
        "backend": raw["backend"], "compared with": raw["baseline"], "metric": raw["metric"],
        "verdict": [_verdict_words(row) for _, row in raw.iterrows()],
        "unit": raw["unit"], "better when": raw["direction"],
        "n (trials, backend / other)": [f"{a} / {b}" for a, b in zip(raw["n_backend"], raw["n_baseline"])],
        "mean, backend": raw["mean_backend"].map(num), "mean, other": raw["mean_baseline"].map(num),
        "ratio of means [95% CI]": [with_ci(row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"],
                                             no_ratio_ci(row)) for _, row in raw.iterrows()],
        "CI method": raw["ratio_method"].map(lambda m: m or "–"),
        "p (chosen test, Holm-adjusted)": raw["p_holm"].map(p_value),
        "p (Welch t)": raw["p_welch"].map(p_value), "p (paired t)": raw["p_paired"].map(p_value),
        "p (Brunner-Munzel)": [_brunner_munzel_text(row) for _, row in raw.iterrows()],
        "ratio of medians (no CI)": raw["ratio_median"].map(num),
        "smallest detectable difference (80% power)": raw["metric"].map(
            lambda m: detectable.get(m, ("–", "–"))[0]),
    })


COMPARISON_NOTE = (
    "Ratios are backend / other. Their 95% CI is a Fieller interval: independent (Welch-Satterthwaite df) or paired "
    "by round (trial k of each backend ran in round k; df n − 1), whichever is narrower; because picking the "
    "narrower favours the one that underestimated the noise, each is computed at {level:.1%} and the chosen p is "
    "multiplied by {k:g}, which keeps 95% coverage (simulated 94-97%) and the test's level. A difference is "
    "claimed only when that p, Holm-adjusted over this backend's headline metrics, is below {alpha} AND the CI "
    "excludes 1. Welch and paired t p-values are shown raw. Brunner-Munzel (studentized permutation) is shown only "
    "where it can reject: its smallest possible p is 2 / C(2n, n), 0.1 at 3 vs 3. The ratio of medians has no CI: no "
    "method we tried holds 95% at these n. The smallest detectable difference is simulated from this rule "
    "(see the power table). ")


def _comparison_note() -> str:
    level = 1 - (1 - 0.95) / stats.SELECTION_INFLATION
    return COMPARISON_NOTE.format(level=level, k=stats.SELECTION_INFLATION, alpha=ALPHA)


def comparison_table(run: Run, baseline: str | None = None) -> pd.DataFrame:
    """Each other backend against ``baseline`` (default: :func:`default_baseline`) on the headline metrics."""
    metrics = compared(run.manifest.params)
    tidy = without_controls(run, trial_values(run, metrics))
    baseline = baseline or default_baseline(run)
    if baseline is None or tidy["backend"].nunique() < 2:
        return noted(_comparison_display(pd.DataFrame(columns=stats.COMPARE_COLUMNS), {}),
                      "No comparison: fewer than two stores completed a trial.")
    table = _comparison_display(compare(tidy, baseline, metrics), detectable_text(tidy, metrics))
    seen = store_dependence(run)
    if seen:
        table.insert(4, "does the store matter here? (positive control)",
                     table["metric"].map(lambda m: seen.get(m, "–")))
    return noted(table, f"Every store against {baseline}. " + _comparison_note()
                  + ("The positive-control column says whether a store held to a known CPU quota was seen in "
                     "this metric at this scale (section 'Can this run see a difference?'); where it was not, "
                     "this phase did not measurably depend on the object store here at this n, and a verdict on "
                     "it says little about the stores." if seen else ""))


def aa_table(run: Run) -> pd.DataFrame:
    """Every pair of backends that run the same store (aliases) compared: an A/A test of the benchmark.

    Any difference called here is a false positive by construction, so this table shows how far the
    verdicts of :func:`comparison_table` can be trusted on this machine.
    """
    metrics = compared(run.manifest.params)
    tidy = trial_values(run, metrics)
    stores = run.manifest.stores
    ran = sorted(set(tidy["backend"]))
    pairs = [(a, b) for a, b in combinations(ran, 2) if stores.get(a) and stores.get(a) == stores.get(b)
             and handicap_of(run, a) == handicap_of(run, b)]
    if not pairs:
        empty = _comparison_display(pd.DataFrame(columns=stats.COMPARE_COLUMNS), {}).assign(**{"A/A reading": []})
        return noted(empty, "No A/A pair ran: an A/A pair is two backends with the same store kind (e.g. minio "
                             "and an alias of it), so any difference between them is a false positive of the "
                             "benchmark itself. Add an alias backend to the run to measure that rate.")
    raw = pd.concat([compare(tidy[tidy["backend"].isin(pair)], pair[0], metrics).assign(backend=pair[1])
                     for pair in pairs], ignore_index=True)
    table = _comparison_display(raw, detectable_text(tidy, metrics))
    table["A/A reading"] = ["FALSE POSITIVE: the same store measured twice differs" if v in ("better", "worse")
                            else "consistent (no difference claimed)" for v in raw["verdict"]]
    return noted(table, "A/A pairs (same store kind under two names: "
                         + ", ".join(f"{a} = {b} ({stores[a]})" for a, b in pairs) + "). "
                         + _comparison_note())


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


def _control_comparisons(run: Run) -> list[tuple[str, str, str, pd.DataFrame, pd.DataFrame]]:
    """Per store with both twins: the A/A comparison and the positive-control comparison, raw."""
    metrics = compared(run.manifest.params)
    tidy = trial_values(run, metrics)
    out = []
    for base, aa, slow in _twins(run, set(tidy["backend"]) if len(tidy) else set()):
        both = [compare(tidy[tidy["backend"].isin([base, twin])], base, metrics) for twin in (aa, slow)]
        out.append((base, aa, slow, *both))
    return out


def store_dependence(run: Run) -> dict[str, str]:
    """Metric -> whether the handicapped twin was claimed worse there (first store with controls)."""
    found = _control_comparisons(run)
    if not found:
        return {}
    slow = found[0][4]
    return {m: ("yes: seen" if v == "worse" else "unknown: not enough trials" if v.startswith("not enough data")
                else "not seen at this n") for m, v in zip(slow["metric"], slow["verdict"])}


def controls_table(run: Run) -> pd.DataFrame:
    """Can this run see a difference? The A/A twin (must show none) beside the handicapped twin (must be
    seen as slower where the phase depends on the store), metric by metric."""
    columns = ["metric", "unit", "A/A: twin / store [95% CI]", "A/A reading",
               "positive control: handicapped / store [95% CI]", "positive-control reading",
               "does this metric depend on the store at this scale?"]
    found = _control_comparisons(run)
    if not found:
        return noted(pd.DataFrame(columns=columns),
                      "No controls ran: run with controls (notebook parameter controls=True, or msbench run "
                      "--controls) to measure the baseline under a second name (A/A) and held to a CPU quota.")
    rows, notes = [], []
    for base, aa, slow, raw_aa, raw_slow in found:
        cpu = handicap_of(run, slow).get("cpu")
        for (_, a), (_, p) in zip(raw_aa.iterrows(), raw_slow.iterrows()):
            claimed_aa, claimed_slow = a["verdict"] in ("better", "worse"), p["verdict"] in ("better", "worse")
            rows.append([
                a["metric"], a["unit"],
                with_ci(a["ratio_mean"], a["ratio_mean_low"], a["ratio_mean_high"], no_ratio_ci(a)),
                "FALSE POSITIVE: difference claimed" if claimed_aa else "no difference claimed (as it must be)",
                with_ci(p["ratio_mean"], p["ratio_mean_low"], p["ratio_mean_high"], no_ratio_ci(p)),
                f"claimed {p['verdict']}" if claimed_slow else p["verdict"],
                (f"yes: the store held to {cpu:g} CPU is seen" if p["verdict"] == "worse" and not claimed_aa
                 else "unclear: the A/A pair differs too" if claimed_aa
                 else "unknown: not enough trials" if p["verdict"].startswith("not enough data")
                 else "claimed better under a handicap: an artefact, read with care" if claimed_slow
                 else "not seen: no measurable dependence on the store at this scale and n (a smaller one can "
                      "hide below what this run detects)"),
            ])
        notes.append(f"{base} against {aa} (the same store under another name: any claimed difference is a false "
                f"positive of the method) and against {slow} (the same store with its processes held to "
                f"{cpu:g} CPU by a cgroup quota, a known slowdown the method must see where a phase "
                "depends on the store).")
    return noted(pd.DataFrame(rows, columns=columns),
                  " ".join(notes) + " Same claim rule as the comparison table: " + _comparison_note())


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
    """What the comparison's decision rule can detect with this run's noise and n, and the n it would need."""
    metrics = compared(run.manifest.params)
    tidy = trial_values(run, metrics)
    columns = ["metric", "unit", "pooled CV [95% CI]",
               f"smallest difference detectable at this n ({POWER:.0%} power)",
               f"trials per backend to detect a {effect:.0%} difference ({POWER:.0%} power)",
               "completed trials per backend"]
    if tidy.empty:
        return noted(pd.DataFrame(columns=columns), "No completed trials: the noise is unknown.")
    found = stats.detectability(tidy, tidy["metric"].nunique(), effect, alpha=ALPHA, power=POWER).set_index("metric")
    texts = detectable_text(tidy, metrics, effect)
    counts = tidy.groupby(["metric", "backend"]).size()
    rows = [[m.name, found.loc[m.name, "unit"],
             with_ci(100 * found.loc[m.name, "cv_pooled"], 100 * found.loc[m.name, "cv_low"],
                      100 * found.loc[m.name, "cv_high"], "needs a backend with ≥ 2 trials") + " %",
             *texts[m.name], ", ".join(f"{b}: {n}" for b, n in counts[m.name].items())]
            for m in metrics if m.name in found.index]
    return noted(pd.DataFrame(rows, columns=columns),
                  "Simulated from the comparison's own decision rule, not from a single t test: lognormal noise "
                  "with the pooled CV, the paired-or-independent Fieller interval and its test, and Holm over the "
                  f"{tidy['metric'].nunique()} compared metrics, assuming the metric in question is the only real "
                  f"difference (so it must pass α/{tidy['metric'].nunique()} at Holm's first step: slightly "
                  "conservative) and no round-to-round correlation (which would let the paired analysis do better). "
                  f"{stats.POWER_DRAWS} simulated runs per point, fixed seed. The noise is the coefficient of "
                  "variation pooled over backends; ranges in brackets are the figures at the 95% bounds of that CV "
                  "(chi-square bounds of the sample variance), and the smallest detectable difference uses the "
                  "fewest trials any backend completed. A difference below the detectable one is usually missed.")
