"""The answer first: per compared metric, each real store's mean, its claim against the baseline in four
words (better / worse / equivalent within ±X% / not detectable) with the ratio and its claim interval, the
best store where one is claimed better than every other (else the tied leaders), and the smallest
difference this run could have seen. Nothing new is estimated here: the claims are the report's family
(:func:`comparisons.claims`, :mod:`msbench.analysis.stats`), the detectable differences its exact power
(:func:`comparisons.detectable_text`), the means :func:`stats.summarize`. The controls (the baseline
under a second name and held to a CPU quota) test the method and are never candidates for best store."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from msbench.analysis import stats
from msbench.report.comparisons import (CLAIMED, POWER, Claims, claim_word, claims, detectable_text, handicap_of,
                                        ratio_words, real_stores, store_dependence)
from msbench.metrics import Metric, compared
from msbench.report.values import Run, confidence_of, default_baseline, trial_values, without_controls
from msbench.report.page import noted, with_ci


@dataclass(frozen=True)
class Verdict:
    """What the report says first: ``summary`` (Markdown: the stores compared, the family, the claims,
    where the store mattered) and ``table`` (one row per metric, the real stores as columns)."""

    summary: str
    table: pd.DataFrame


def _claim_cell(row: pd.Series) -> str:
    """A store's standing against the baseline on one metric: the word, the ratio and its claim interval
    (the 95% one, without a word, on a metric outside the family), or why there is no interval."""
    caveat = f" ({row['caveat']})" if row["caveat"] else ""
    if row["no_interval"]:
        return f"{claim_word(row) if row['primary'] else 'no claim'}: no interval ({row['no_interval']})"
    if not row["primary"]:
        return f"ratio {_unbroken(with_ci(row['ratio'], row['ratio_low'], row['ratio_high'], ''))}{caveat}"
    ratio = _unbroken(with_ci(row["ratio"], row["claim_low"], row["claim_high"], ""))
    within = f", within ±{row['margin']:.0%}" if row["verdict"] in CLAIMED and row["equivalent"] else ""
    return f"{claim_word(row)}{within}: ratio {ratio}{caveat}"


def _best_cell(found: Claims, metric: str) -> str:
    """The best store only where it is claimed better than every other store; else the tied leaders."""
    if metric not in found.family.metrics:
        return "– (no claims: not a primary metric)"
    best = found.leaders.set_index("metric").loc[metric]
    if best["best"]:
        return f"best: {best['best']}"
    if not best["leaders"]:
        return "none named: the claims contradict each other"
    return f"tied: {', '.join(best['leaders'])}"


def _header(backend: str, baseline: str, n: int) -> str:
    return f"{backend} (baseline, n={n})" if backend == baseline else f"{backend} (n={n})"


def _unbroken(text: str) -> str:
    """An interval kept on one line ("[1.2,\u00a03.4]"): a narrow column breaks a cell only between its
    value and its interval, so four stores and the verdict columns fit a screen."""
    return text.replace(", ", ",\u00a0")


def _cell(s: pd.Series, n_trials: int) -> str:
    text = _unbroken(with_ci(s["mean"], s["ci_low"], s["ci_high"], "needs n ≥ 2"))
    return text if s["n"] == n_trials else f"{text} (n={s['n']})"


def _table(run: Run, metrics: list[Metric], tidy: pd.DataFrame, found: Claims | None,
           stores: tuple[str, ...]) -> pd.DataFrame:
    summary = stats.summarize(tidy, confidence=confidence_of(tidy)).set_index(["metric", "backend"])
    n_trials = tidy.groupby("backend")["trial"].nunique()
    baseline = stores[0]
    detectable = detectable_text(tidy, found, ranges=False) if found else {}
    against = (found.rows[found.rows["other"] == baseline].set_index(["metric", "backend"]) if found
               else pd.DataFrame())
    rows = []
    for m in metrics:
        if m.name not in summary.index.get_level_values("metric"):
            continue
        mine = summary.loc[m.name]
        row = {"metric": m.name, "what it measures": f"{m.brief}; {mine['unit'].iloc[0]}, {m.direction} is better"}
        for b in stores:
            cell = _cell(mine.loc[b], n_trials[b]) if b in mine.index else "–"
            if (m.name, b) in against.index:
                cell += "; " + _claim_cell(against.loc[(m.name, b)])
            row[_header(b, baseline, n_trials[b])] = cell
        row["best real store"] = _best_cell(found, m.name) if found else "–"
        row[f"smallest difference detectable at this n ({POWER:.0%} power)"] = (
            detectable.get(m.name, ("–",))[0] if found and m.name in found.family.metrics else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def _claims_line(found: Claims) -> str:
    """Every claim against the baseline, in words."""
    rows = found.rows[(found.rows["other"] == found.family.baseline) & found.rows["primary"]]
    said = [f"{row['metric']}: {ratio_words(row)}, {claim_word(row)}" for _, row in rows.iterrows()
            if row["verdict"] in (*CLAIMED, "equivalent")]
    return "; ".join(said) if said else "none"


def _best_line(found: Claims) -> str:
    named = found.leaders[found.leaders["best"] != ""]
    tied = found.leaders[found.leaders["best"] == ""]
    best = "; ".join(f"{r.metric}: {r.best}" for r in named.itertuples()) or "none"
    return (f"**Best store** (claimed better than every other store): {best}."
            + (" Elsewhere the leaders are tied: " + "; ".join(f"{r.metric}: {', '.join(r.leaders) or 'none'}"
                                                                for r in tied.itertuples()) + "." if len(tied) else ""))


def _controls_line(run: Run, baseline: str) -> str:
    """Which backends are controls, and where the handicapped one was seen (where the store mattered)."""
    controls = sorted(run.controls)
    if not controls:
        return "**No controls ran:** this run cannot show that it would see a known slowdown (run with controls)."
    cpu = {c: handicap_of(run, c).get("cpu") for c in controls}
    roles = [f"{c} ({'a second name' if cpu[c] is None else f'held to {cpu[c]:g} CPU'})" for c in controls]
    are = "is" if len(roles) == 1 else "are"
    line = f"**Controls, not candidates:** {' and '.join(roles)} {are} {baseline} itself and only test the method."
    seen = store_dependence(run)
    if seen:
        mattered = [m for m, v in seen.items() if v.startswith("yes")]
        line += (" The store measurably mattered (its handicapped twin was claimed slower) in "
                 + ", ".join(mattered) + f" of {', '.join(seen)}." if mattered else
                 f" Its handicapped twin was claimed slower in none of {', '.join(seen)}: at this scale and n the "
                 "store did not measurably matter.")
        line += (f" Each twin's claims are a family of its own ({len(seen)} comparisons against {baseline} on "
                 "those metrics; the handicapped twin's one-sided, only 'slower' claimed), each at most 5% likely "
                 "to hold a false one.")
    else:
        line += " No claims on them: the controls are judged only when both twins (A/A and handicapped) ran."
    return line


def verdict(run: Run, baseline: str | None = None) -> Verdict:
    """Per compared headline metric: each real store's mean [95% CI], its claim against ``baseline``
    (default :func:`default_baseline`), the best store or the tied leaders, and what was detectable."""
    metrics = compared(run.manifest.params)
    baseline = baseline or default_baseline(run)
    tidy = without_controls(run, trial_values(run, metrics))
    stores = real_stores(run, tidy, baseline) if len(tidy) else ()
    if not stores:
        return Verdict("- **No store completed a trial:** there is nothing to compare (see Trials and Deviations).",
                       noted(pd.DataFrame(columns=["metric", "what it measures"]), ""))
    if baseline not in stores:   # the baseline ran nothing: show the others, compare nothing
        stores = tuple(sorted(set(tidy["backend"])))
    n = tidy.groupby("backend")["trial"].nunique()
    found = claims(run, baseline)
    table = _table(run, metrics, tidy, found, stores)
    lines = ["**Real stores:** " + ", ".join(f"{b} ({'baseline, ' if b == baseline else ''}{n[b]} trials)"
                                             for b in stores) + "."]
    if found is None:
        lines.append(f"**Nothing to compare:** only {stores[0]} completed a trial." if len(stores) < 2 else
                     f"**Nothing to compare:** the baseline {baseline} completed no trial.")
    else:
        lines += [f"**What is claimed, and how:** {found.family.statement()}",
                  f"**Claimed against {baseline}:** {_claims_line(found)}. Nothing else is detectable at "
                  f"n={min(n[b] for b in stores)}.", _best_line(found)]
    lines.append(_controls_line(run, baseline))
    note = (f"Mean [95% CI] over completed trials; beside it each store's claim against {baseline} in four words "
            f"(better / worse / equivalent within ±X% / not detectable) with the ratio of geometric means and "
            f"its claim interval (the family's level), or on a metric outside the family the ratio and its 95% "
            f"CI without a claim. Best: the store claimed better than every other store (directly or through "
            f"the baseline), else the tied leaders. The detectable difference is exact for this rule at "
            f"{POWER:.0%} power (see Power).")
    table.attrs.update(beneath={"what it measures": "metric"}, bold={"best real store": "best: "})
    return Verdict("\n".join(f"- {line}" for line in lines), noted(table, note))
