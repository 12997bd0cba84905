"""The answer first: per headline metric, which real store is best, its ratio to the baseline with
the 95% interval, and whether this run can claim the difference or could not have seen it (with the
smallest difference it could have detected). Nothing new is estimated here: the ratios, intervals and
claims are the comparison table's (:func:`comparisons.compare`: the Fieller ratio, the claim rule with
Holm), the detectable differences its power simulation (:func:`comparisons.detectable_text`), the
means :func:`stats.summarize`. The controls (the baseline under a second name and held to a CPU
quota) test the method and are never candidates for best store."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from msbench.analysis import stats
from msbench.report.comparisons import (ALPHA, POWER, compare, detectable_text, handicap_of, ratio_words,
                                        store_dependence)
from msbench.metrics import Metric, compared, direction
from msbench.report.values import Run, confidence_of, default_baseline, trial_values
from msbench.report.page import noted, p_value, with_ci

CLAIMED = ("better", "worse")


@dataclass(frozen=True)
class Verdict:
    """What the report says first: ``summary`` (Markdown: the stores compared, the claimed differences,
    where the store mattered) and ``table`` (one row per metric, the real stores as columns)."""

    summary: str
    table: pd.DataFrame


def _best(means: pd.Series, better: str, baseline: str) -> str:
    """The store with the best mean (ties go to the baseline: no evidence of a difference)."""
    best = means.max() if better == "higher" else means.min()
    top = means[means == best].index
    return baseline if baseline in top else top[0]


def _pick(rows: pd.DataFrame, means: pd.Series, better: str, baseline: str) -> tuple[str, pd.Series | None, str]:
    """(best store, the compare row whose ratio to show, how the difference stands) for one metric.

    A store claimed better than the baseline wins over one that only has the better mean; the baseline
    is claimed best when every other store is claimed worse (its row is then the next best store's).
    Otherwise the best mean is named, unclaimed."""
    by_backend = rows.set_index("backend")
    better_rows = rows[rows["verdict"] == "better"]
    if len(better_rows):
        best = _best(means[better_rows["backend"]], better, baseline)
        return best, by_backend.loc[best], "claimed"
    best = _best(means, better, baseline)
    shown = by_backend.loc[best if best != baseline else _best(means.drop(baseline), better, "")]
    if best == baseline and (rows["verdict"] == "worse").all():
        return best, shown, f"claimed over every other store{_holm(rows['p_holm'].max())}"
    return best, shown, "unclaimed"


def _holm(p: float) -> str:
    text = p_value(p)
    return f" (Holm-adjusted p {text.replace('<', '< ') if text.startswith('<') else '= ' + text})"


def _standing(status: str, row: pd.Series | None, detectable: str) -> str:
    """The difference column: claimed, or why not (with what this run could have seen)."""
    if row is None:
        return "–"
    verdict = row["verdict"]
    if status == "claimed":
        return "claimed" + _holm(row["p_holm"])
    if status.startswith("claimed"):
        return status
    if verdict == "identical (zero variance)":
        return "identical in every trial"
    if "zero variance" in verdict:
        return "the same difference in every trial (zero variance: untested)"
    if verdict.startswith("not enough data"):
        return verdict
    at_n = verdict.removeprefix("no detectable difference at ")
    return f"not detectable at {at_n}; could have seen {detectable}"


def _ratio_cell(best: str, row: pd.Series | None, baseline: str) -> str:
    if row is None:
        return "–"
    ratio = _unbroken(with_ci(row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"], "needs n ≥ 2 each"))
    return ratio if best != baseline else f"next best, {row.name}: {ratio}"


def _best_cell(best: str | None, status: str) -> str:
    """A store is named best only when the run claims it; otherwise the reader learns that no store
    was shown better at this n, and which one merely had the best mean."""
    if best is None:
        return "–"
    return best if status.startswith("claimed") else f"none shown at this n (best mean: {best})"


def _header(backend: str, baseline: str, n: int) -> str:
    return f"{backend} (baseline, n={n})" if backend == baseline else f"{backend} (n={n})"


def _unbroken(text: str) -> str:
    """An interval kept on one line ("[1.2,\u00a03.4]"): a narrow column breaks a cell only between its
    value and its interval, so four stores and the verdict columns fit a screen."""
    return text.replace(", ", ",\u00a0")


def _cell(s: pd.Series, n_trials: int) -> str:
    text = _unbroken(with_ci(s["mean"], s["ci_low"], s["ci_high"], "needs n ≥ 2"))
    return text if s["n"] == n_trials else f"{text} (n={s['n']})"


def _table(run: Run, metrics: list[Metric], tidy: pd.DataFrame, raw: pd.DataFrame, baseline: str,
           stores: list[str]) -> pd.DataFrame:
    summary = stats.summarize(tidy, confidence=confidence_of(tidy)).set_index(["metric", "backend"])
    detectable = detectable_text(tidy, metrics, ranges=False)
    n_trials = tidy.groupby("backend")["trial"].nunique()
    rows = []
    for m in metrics:
        if m.name not in summary.index.get_level_values("metric"):
            continue
        mine = summary.loc[m.name]
        better = direction(m.metric)
        means = mine["mean"].reindex([b for b in stores if b in mine.index]).dropna()
        cmp = raw[(raw["metric"] == m.name) & raw["backend"].isin(means.index)]
        best, row, status = (_pick(cmp, means, better, baseline) if baseline in means.index and len(means) > 1
                             else (None, None, ""))
        rows.append({
            "metric": m.name,
            "what it measures": f"{m.brief}; {mine['unit'].iloc[0]}, {better} is better",
            **{_header(b, baseline, n_trials[b]): _cell(mine.loc[b], n_trials[b]) if b in mine.index else "–"
               for b in stores},
            "best real store": _best_cell(best, status),
            f"ratio to {baseline} [95% CI]": _ratio_cell(best, row, baseline),
            "difference": _standing(status, row, detectable.get(m.name, ("–",))[0]),
        })
    return pd.DataFrame(rows)


def _claims(raw: pd.DataFrame) -> str:
    found = raw[raw["verdict"].isin(CLAIMED)]
    return "; ".join(f"{row['metric']}: {ratio_words(row)}, {row['verdict']}" for _, row in found.iterrows())


def _controls_line(run: Run, baseline: str) -> str:
    """Which backends are controls, and where the handicapped one was seen (where the store mattered)."""
    controls = sorted(run.controls)
    if not controls:
        return "**No controls ran:** this run cannot show that it would see a known slowdown (run with controls)."
    cpu = {c: handicap_of(run, c).get("cpu") for c in controls}
    roles = [f"{c} ({'a second name' if cpu[c] is None else f'held to {cpu[c]:g} CPU'})" for c in controls]
    line = f"**Controls, not candidates:** {' and '.join(roles)} are {baseline} itself and only test the method."
    seen = store_dependence(run)
    if seen:
        mattered = [m for m, v in seen.items() if v.startswith("yes")]
        line += (" The store measurably mattered (its handicapped twin was seen) only in "
                 + (", ".join(mattered) if mattered else "no metric") + ".")
    return line


def verdict(run: Run, baseline: str | None = None) -> Verdict:
    """Per compared headline metric: each real store's mean [95% CI], the best store, its ratio to
    ``baseline`` (default :func:`default_baseline`) [95% CI], and whether the difference is claimed."""
    metrics = compared(run.manifest.params)
    baseline = baseline or default_baseline(run)
    tidy = trial_values(run, metrics)
    tidy = tidy[~tidy["backend"].isin(run.controls)] if len(tidy) else tidy
    ran = set(tidy["backend"])
    stores = ([baseline] if baseline in ran else []) + sorted(ran - {baseline})
    if not stores:
        return Verdict("- **No store completed a trial:** there is nothing to compare (see Trials and Deviations).",
                       noted(pd.DataFrame(columns=["metric", "what it measures"]), ""))
    n = tidy.groupby("backend")["trial"].nunique()
    comparable = baseline in ran and len(stores) > 1
    raw = compare(tidy, baseline, metrics) if comparable else pd.DataFrame(columns=stats.COMPARE_COLUMNS)
    table = _table(run, metrics, tidy, raw, baseline, stores)
    lines = ["**Real stores:** " + ", ".join(f"{b} ({'baseline, ' if b == baseline else ''}{n[b]} trials)"
                                             for b in stores) + "."]
    if not comparable:
        lines.append(f"**Nothing to compare:** only {stores[0]} completed a trial." if len(stores) < 2 else
                     f"**Nothing to compare:** the baseline {baseline} completed no trial.")
    else:
        claims = _claims(raw)
        lines.append(f"**Claimed** (Holm-adjusted p < {ALPHA}, 95% CI excludes 1): " + (claims if claims else "none")
                     + f". Nothing else is detectable at n={min(n[b] for b in stores)}.")
    lines.append(_controls_line(run, baseline))
    note = (f"Mean [95% CI] over completed trials. Best: claimed better than {baseline} (or "
            f"{baseline} when every other store is claimed worse); otherwise none is shown better at this n. "
            f"Ratio of means to {baseline} with its Fieller 95% CI; claimed when the Holm-adjusted p < {ALPHA} "
            f"and the CI excludes 1, else the smallest difference detectable at {POWER:.0%} power (see Power).")
    table.attrs.update(beneath={"what it measures": "metric"}, bold={"difference": "claimed"})
    return Verdict("\n".join(f"- {line}" for line in lines), noted(table, note))
