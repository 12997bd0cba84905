"""Tables and figures of the analysis notebook, built from one run (``results.load_run``).

The report is read as HTML without its code, so every table says in its own columns what each
number measures, its unit, n and its 95% interval, and carries a note (``table.attrs["note"]``)
that :func:`show` renders as its caption. The statistics are :mod:`msbench.stats`; only completed
trials (status "ok") are analysed, because a failed trial stopped at a broken stack; failed trials
are listed by :func:`trials_table` and :func:`deviations` instead. Figures are drawn on
``matplotlib.figure.Figure`` objects (Agg, no pyplot state), so the notebook's own backend is
never touched; each is written as PNG and SVG and its PNG path returned.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import ceil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from msbench import stats

Run = dict[str, Any]

# Resamples of the Brunner-Munzel permutation test (stats' default); module-level so tests can lower it.
N_RESAMPLES = 9999
SEED = 0
ALPHA = 0.05
POWER = 0.8   # the power at which detectable differences and trials needed are stated


@dataclass(frozen=True)
class Metric:
    """One headline measurement: where it is recorded, its raw unit, and what it means."""

    phase: str
    metric: str
    unit: str
    what: str
    label: str = ""   # needed only when the metric name repeats across phases
    diagnostic: bool = False   # evidence about the method (shown), not a performance to compare

    @property
    def name(self) -> str:
        return self.label or self.metric


_BYTES_OUT = ("Bytes the store sent to Milvus during this load(), from the kernel's TCP counters of its "
              "connections (a connection closed meanwhile is not counted: a lower bound; missing where the "
              "counters cannot see the store, see Deviations)")
HEADLINE: list[Metric] = [
    Metric("insert", "insert_rows_per_s", "rows/s", "Insert throughput: rows per second over the batched insert() calls (before flush)"),
    Metric("flush", "flush_s", "s", "flush(): seal the inserted segments and write them to object storage"),
    Metric("index", "index_build_s", "s", "Index build: create_index() until every row is indexed"),
    Metric("footprint", "bucket_bytes", "bytes", "Bucket size at the end of the trial, as found (after the loads; "
           "no forced compaction; Milvus GC every 5 s)"),
    Metric("footprint", "disk_allocated_bytes", "bytes", "Disk space the store's data directories occupy (allocated blocks) at the end of the trial"),
    Metric("footprint", "bucket_bytes_after_gc", "bytes", "Bucket size after a forced compaction and Milvus garbage "
           "collection settled (GC every 5 s, dropped files kept 1 s): footprint at a defined point"),
    Metric("footprint", "disk_allocated_bytes_after_gc", "bytes", "The store's allocated disk bytes at that same point"),
    Metric("load_first", "load_first_s", "s", "First load() after the index build (the published 'cold load' definition)"),
    Metric("load_warm", "load_warm_s", "s", "release() then load(): a real reload from object storage"),
    Metric("load_warm", "store_bytes_served_during_load", "bytes", f"{_BYTES_OUT}; a real reload should be well above zero",
           "store_bytes_served_during_load [load_warm]", diagnostic=True),
    Metric("load_noop", "load_noop_s", "s", "load() on an already loaded collection: returns without reading; "
           "what a 9 ms 'warm load' measures"),
    Metric("load_noop", "store_bytes_served_during_load", "bytes", f"{_BYTES_OUT}; about zero, as nothing is read",
           "store_bytes_served_during_load [load_noop]", diagnostic=True),
    Metric("load_cold", "load_cold_s", "s", "load() after restarting Milvus and the store and dropping the OS page cache"),
    Metric("load_cold", "first_search_after_cold_s", "s", "Time to the first successful search after the cold load"),
    Metric("search", "search_latency_mean_ms", "ms", "Mean latency of serial single-vector searches (warm-up queries excluded)"),
    Metric("search", "search_latency_p50_ms", "ms", "Median latency of serial searches within one trial"),
    Metric("search", "search_latency_p95_ms", "ms", "95th-percentile latency of serial searches within one trial"),
    Metric("search", "search_latency_p99_ms", "ms", "99th-percentile latency of serial searches within one trial"),
    Metric("search", "search_qps_serial", "queries/s", "Serial searches per second (1 / mean latency)"),
]

# Published claim -> our measurements of it (the like-for-like one first) and what to keep in mind.
CLAIMS: dict[str, tuple[tuple[str, str], ...]] = {
    "insert_throughput": (("insert_rows_per_s", "Batches of {batch_size:,} rows here, 5,000 there."),),
    "index_build_time": (("index_build_s", "Build time grows with the number and dimension of vectors."),),
    "load_cold": (
        ("load_first_s", "Same definition as published: the first load after the index build."),
        ("load_cold_s", "Stricter than published: Milvus and the store were restarted and the page cache "
                        "dropped first{cache_note}."),
    ),
    "load_warm": (
        ("load_warm_s", "A real reload (release() then load()). The published 9 ms / 27 ms are too fast to have "
                        "read anything: compare load_noop_s."),
        ("load_noop_s", "load() on a loaded collection, which returns without reading: the control for what the "
                        "published 'warm load' measured."),
    ),
    "search_latency_mean": (("search_latency_mean_ms", "Here {measured} serial single-vector queries per trial after "
                             "{warmup_queries} warm-up, top_k={top_k}; the published query count and nq are not stated."),),
    "storage_footprint": (
        ("bucket_bytes_after_gc", "Bucket bytes after a forced compaction and Milvus GC settled: a defined point. "
                                  "The published GC timing is not stated."),
        ("bucket_bytes", "Bucket bytes as found at the end of the trial, without forced compaction."),
    ),
}
PUBLISHED_SETUP = {"milvus": "2.6.7", "n_vectors": 1_000_000, "dim": 768, "batch_size": 5_000,
                   "hardware": "16 cores, 32 GB RAM, NVMe SSD", "index": "HNSW M=16 efConstruction=200"}

BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("bytes", 1.0))
FOOTPRINT_PREFIXES = ("insert_log", "stats_log", "delta_log", "index_files", "other")
TIME_UNITS = ("s", "ms")
CI_NOTE = ("95% CI of the mean: Student t interval over trials (simulated coverage 94-95.5% on normal and lognormal "
           "data at 3-10 trials and CV up to {cv:.0%}; above that CV it can fall to about 92% on skewed data and says "
           "so; a bootstrap was dropped: its '95%' covered 72-88% at these n). A trial is one fresh stack "
           "(store + Milvus) that inserts, indexes, loads and searches.").format(cv=stats.VERIFIED_MAX_CV)


# --- data ---------------------------------------------------------------------------------------


def direction(metric: str) -> str:
    """Which way is better: throughput, QPS and recall up, everything else (time, bytes) down."""
    higher = metric.endswith("_rows_per_s") or "qps" in metric or metric.startswith("recall_")
    return "higher" if higher else "lower"


def headline(run: Run) -> list[Metric]:
    """HEADLINE plus the metrics whose names depend on the run's parameters (top_k, concurrency)."""
    params = run["manifest"].get("params", {})
    k = params.get("top_k", 10)
    recall = Metric("search", f"recall_at_{k}", "fraction",
                    f"Recall@{k}: share of the true {k} nearest neighbours among the {k} returned")
    qps = [Metric("throughput", f"search_qps_c{c}", "queries/s",
                  f"Searches per second with {c} concurrent clients over {params.get('throughput_seconds', '?')} s")
           for c in params.get("concurrency", [])]
    return [*HEADLINE, recall, *qps]


def compared(run: Run) -> list[Metric]:
    """The headline metrics that measure performance: what comparisons, power and the forest plot use."""
    return [m for m in headline(run) if not m.diagnostic]


def _completed(run: Run, table: str) -> pd.DataFrame:
    """Rows of ``table`` ("results" or "latencies") that belong to completed trials."""
    trials, frame = run["trials"], run[table]
    if trials.empty or "status" not in trials or frame.empty:
        return frame.iloc[0:0]
    ok = trials.loc[trials["status"] == "ok", ["backend", "trial"]]
    return frame.merge(ok, on=["backend", "trial"])


def _byte_unit(largest: float) -> str:
    """The largest decimal unit not above the data, so a table shows 1.58 MB, not 1577226 bytes."""
    return next((unit for unit, factor in BYTE_UNITS if largest >= factor), "bytes")


def _tidy(run: Run, metrics: list[Metric], byte_unit: str | None = None) -> pd.DataFrame:
    """Completed trials' values of ``metrics``, keyed by Metric.name, bytes rescaled for display.

    ``byte_unit`` forces one unit on every byte metric (a stacked bar needs a common scale);
    otherwise each byte metric gets the unit that suits its own values.
    """
    data = _completed(run, "results")
    factors = dict(BYTE_UNITS)
    frames = []
    for m in metrics:
        sel = data[(data["phase"] == m.phase) & (data["metric"] == m.metric)]
        if sel.empty:
            continue
        unit = m.unit
        if unit == "bytes":
            unit = byte_unit or _byte_unit(sel["value"].abs().max())
        frames.append(sel.assign(metric=m.name, value=sel["value"] / factors.get(unit, 1.0), unit=unit))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*data.columns])


def _backends(run: Run) -> list[str]:
    """Every backend the run asked for or recorded, sorted: the same axis and colours in every figure."""
    recorded = set(run["trials"]["backend"]) if "backend" in run["trials"] else set()
    return sorted(set(run["manifest"].get("backends", [])) | recorded)


def default_baseline(run: Run) -> str | None:
    """The run's planned baseline (MinIO when it ran: the store the published study replaces) when it
    completed a trial, else MinIO, else the first alphabetically."""
    ran = sorted(set(_completed(run, "results")["backend"]))
    planned = run["manifest"].get("baseline")
    return planned if planned in ran else "minio" if "minio" in ran else (ran[0] if ran else None)


def _control_names(run: Run) -> set[str]:
    """The baseline's A/A and handicapped twins: shown in their own section, not compared as stores."""
    return set(run["manifest"].get("controls") or {})


def _without_controls(run: Run, tidy: pd.DataFrame) -> pd.DataFrame:
    return tidy[~tidy["backend"].isin(_control_names(run))]


def _directions(metrics: list[Metric]) -> dict[str, str]:
    return {m.name: direction(m.metric) for m in metrics}


def _compare(tidy: pd.DataFrame, baseline: str, metrics: list[Metric]) -> pd.DataFrame:
    """stats.compare over the headline family (Holm runs over it), rows in headline order."""
    raw = stats.compare(tidy, baseline, _directions(metrics), alpha=ALPHA, n_resamples=N_RESAMPLES, seed=SEED)
    order = raw["metric"].map({m.name: i for i, m in enumerate(metrics)})
    return raw.assign(order=order).sort_values(["backend", "order"], ignore_index=True).drop(columns="order")


# --- formatting ---------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    return x is not None and not pd.isna(x) and np.isfinite(float(x))


def _num(x: Any, digits: int = 3) -> str:
    """Three significant digits, thousands grouped; "–" for a number that could not be computed."""
    if not _finite(x):
        return "–"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 10 ** digits else f"{x:.{digits}g}"


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if _finite(x) else "–"


def _p(p: Any) -> str:
    return "–" if not _finite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _interval(lo: Any, hi: Any, why: str) -> str:
    return f"[{_num(lo)}, {_num(hi)}]" if _finite(lo) and _finite(hi) else f"[no CI: {why}]"


def _with_ci(x: Any, lo: Any, hi: Any, why: str) -> str:
    return f"{_num(x)} {_interval(lo, hi, why)}"


def _noted(frame: pd.DataFrame, note: str) -> pd.DataFrame:
    frame.attrs["note"] = note
    return frame


def show(table: pd.DataFrame):
    """The table with its note as caption and no index: what the code-free HTML report shows."""
    styler = table.style.hide(axis="index").set_properties(**{"text-align": "left"})
    styler = styler.set_table_styles([{"selector": "caption",
                                       "props": "caption-side: top; text-align: left; font-weight: normal;"}])
    return styler.set_caption(table.attrs.get("note", ""))


def folded(table: pd.DataFrame, summary: str):
    """A long table behind a <details> line: there for whoever wants it, not in the way."""
    from IPython.display import HTML

    return HTML(f"<details><summary>{summary} ({len(table)} rows)</summary>{show(table).to_html()}</details>")


# --- tables ---------------------------------------------------------------------------------


def summary_table(run: Run) -> pd.DataFrame:
    """Per headline metric and backend: n, mean, median, sd, CV and the 95% interval of the mean with its method."""
    metrics = headline(run)
    tidy = _tidy(run, metrics)
    columns = ["metric", "what it measures", "unit", "backend", "n (trials)", "mean", "median", "sd",
               "CV (sd/mean)", "95% CI of mean", "CI method"]
    rows = []
    if len(tidy):
        summary = stats.summarize(tidy).set_index(["metric", "backend"])
        for m in metrics:
            for backend in sorted(summary.loc[m.name].index) if m.name in summary.index else []:
                s = summary.loc[(m.name, backend)]
                rows.append([m.name, m.what, s["unit"], backend, int(s["n"]), _num(s["mean"]), _num(s["median"]),
                             _num(s["sd"]), _pct(s["cv"]),
                             _interval(s["ci_low"], s["ci_high"], "needs n ≥ 2"), s["ci_method"] or "–"])
    return _noted(pd.DataFrame(rows, columns=columns),
                  f"Headline measurements per backend, completed trials only. {CI_NOTE} "
                  "Bytes in decimal units (1 MB = 10^6 bytes).")


def _verdict_words(row: pd.Series) -> str:
    """stats.compare's verdict as a sentence: "rustfs is 1.8x faster than minio (95% CI 1.5–2.1x): better"."""
    backend, base, verdict = row["backend"], row["baseline"], row["verdict"]
    r, lo, hi = row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"]
    larger, smaller = (("slower", "faster") if row["unit"] in TIME_UNITS
                       else ("higher", "lower") if row["direction"] == "higher" else ("larger", "smaller"))
    if _finite(r) and r > 0:
        up = r >= 1
        factor = f"{_num(r if up else 1 / r)}x {larger if up else smaller} than {base}"
        ci = (f" (95% CI {_num(lo if up else 1 / hi)}–{_num(hi if up else 1 / lo)}x)"
              if _finite(lo) and _finite(hi) and lo > 0 else "")
    else:
        factor, ci = f"different from {base} (ratio undefined: baseline mean 0)", ""
    if verdict in ("better", "worse"):
        return f"{backend} is {factor}{ci}: {verdict}"
    if "zero variance, untested" in verdict:
        return f"{backend} is {factor} in every trial; zero variance, so untested"
    if verdict.startswith("no detectable"):
        return f"{verdict} (ratio {_num(r)}, 95% CI {_interval(lo, hi, _no_ratio_ci(row))})"
    return verdict


def _no_ratio_ci(row: pd.Series) -> str:
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
    return _p(row["p_bm"])


def _detectable_text(tidy: pd.DataFrame, metrics: list[Metric], effect: float = 0.10) -> dict[str, tuple[str, str]]:
    """Per metric: (smallest difference detectable at this run's n, trials needed for ``effect``), each as
    "point (range)" over the CV's 95% bounds."""
    if tidy.empty:
        return {}
    found = stats.detectability(tidy, tidy["metric"].nunique(), effect, alpha=ALPHA, power=POWER)

    def texts(row: pd.Series) -> tuple[str, str]:
        if not _finite(row["cv_pooled"]):
            return ("unknown: no backend with ≥ 2 trials",) * 2
        if row["cv_pooled"] == 0:
            return ("– (zero variance)",) * 2
        detectable = ["> 1000%" if v == np.inf else _pct(v) if _finite(v) else "– (needs n ≥ 2)"
                      for v in (row[f"detectable{s}"] for s in ("", "_low", "_high"))]
        trials = [f"> {stats.MAX_TRIALS}" if pd.isna(v) else str(int(v))
                  for v in (row[f"trials{s}"] for s in ("", "_low", "_high"))]
        return tuple(f"{t[0]} ({t[1]}–{t[2]})" for t in (detectable, trials))

    return {row["metric"]: texts(row) for _, row in found.iterrows()}


def _comparison_display(raw: pd.DataFrame, detectable: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The readable form of stats.compare rows (shared by the baseline and the A/A tables)."""
    return pd.DataFrame({
        "backend": raw["backend"], "compared with": raw["baseline"], "metric": raw["metric"],
        "verdict": [_verdict_words(row) for _, row in raw.iterrows()],
        "unit": raw["unit"], "better when": raw["direction"],
        "n (trials, backend / other)": [f"{a} / {b}" for a, b in zip(raw["n_backend"], raw["n_baseline"])],
        "mean, backend": raw["mean_backend"].map(_num), "mean, other": raw["mean_baseline"].map(_num),
        "ratio of means [95% CI]": [_with_ci(row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"],
                                             _no_ratio_ci(row)) for _, row in raw.iterrows()],
        "CI method": raw["ratio_method"].map(lambda m: m or "–"),
        "p (chosen test, Holm-adjusted)": raw["p_holm"].map(_p),
        "p (Welch t)": raw["p_welch"].map(_p), "p (paired t)": raw["p_paired"].map(_p),
        "p (Brunner-Munzel)": [_brunner_munzel_text(row) for _, row in raw.iterrows()],
        "ratio of medians (no CI)": raw["ratio_median"].map(_num),
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
    metrics = compared(run)
    tidy = _without_controls(run, _tidy(run, metrics))
    baseline = baseline or default_baseline(run)
    if baseline is None or tidy["backend"].nunique() < 2:
        return _noted(_comparison_display(pd.DataFrame(columns=stats.COMPARE_COLUMNS), {}),
                      "No comparison: fewer than two stores completed a trial.")
    table = _comparison_display(_compare(tidy, baseline, metrics), _detectable_text(tidy, metrics))
    seen = _store_dependence(run)
    if seen:
        table.insert(4, "does the store matter here? (positive control)",
                     table["metric"].map(lambda m: seen.get(m, "–")))
    return _noted(table, f"Every store against {baseline}. " + _comparison_note()
                  + ("The positive-control column says whether a store held to a known CPU quota was seen in "
                     "this metric at this scale (section 'Can this run see a difference?'); where it was not, "
                     "this phase did not measurably depend on the object store here at this n, and a verdict on "
                     "it says little about the stores." if seen else ""))


def aa_table(run: Run) -> pd.DataFrame:
    """Every pair of backends that run the same store (aliases) compared: an A/A test of the benchmark.

    Any difference called here is a false positive by construction, so this table shows how far the
    verdicts of :func:`comparison_table` can be trusted on this machine.
    """
    metrics = compared(run)
    tidy = _tidy(run, metrics)
    stores = run["manifest"].get("stores", {})
    ran = sorted(set(tidy["backend"]))
    pairs = [(a, b) for a, b in combinations(ran, 2) if stores.get(a) and stores.get(a) == stores.get(b)
             and _handicap(run, a) == _handicap(run, b)]
    if not pairs:
        empty = _comparison_display(pd.DataFrame(columns=stats.COMPARE_COLUMNS), {}).assign(**{"A/A reading": []})
        return _noted(empty, "No A/A pair ran: an A/A pair is two backends with the same store kind (e.g. minio "
                             "and an alias of it), so any difference between them is a false positive of the "
                             "benchmark itself. Add an alias backend to the run to measure that rate.")
    raw = pd.concat([_compare(tidy[tidy["backend"].isin(pair)], pair[0], metrics).assign(backend=pair[1])
                     for pair in pairs], ignore_index=True)
    table = _comparison_display(raw, _detectable_text(tidy, metrics))
    table["A/A reading"] = ["FALSE POSITIVE: the same store measured twice differs" if v in ("better", "worse")
                            else "consistent (no difference claimed)" for v in raw["verdict"]]
    return _noted(table, "A/A pairs (same store kind under two names: "
                         + ", ".join(f"{a} = {b} ({stores[a]})" for a, b in pairs) + "). "
                         + _comparison_note())


def _handicap(run: Run, backend: str) -> dict:
    return (run["manifest"].get("handicaps") or {}).get(backend, {})


def _twins(run: Run, ran: set[str]) -> list[tuple[str, str, str]]:
    """(store, its A/A twin, its handicapped twin) for every store that ran with both controls."""
    stores = run["manifest"].get("stores", {})
    out = []
    for base in sorted(ran):
        if _handicap(run, base):
            continue
        same = [b for b in sorted(ran - {base}) if stores.get(b) == stores.get(base)]
        aa = next((b for b in same if not _handicap(run, b)), None)
        slow = next((b for b in same if _handicap(run, b)), None)
        if aa and slow and base not in {aa for _, aa, _ in out}:
            out.append((base, aa, slow))
    return out


def _control_comparisons(run: Run) -> list[tuple[str, str, str, pd.DataFrame, pd.DataFrame]]:
    """Per store with both twins: the A/A comparison and the positive-control comparison, raw."""
    metrics = compared(run)
    tidy = _tidy(run, metrics)
    out = []
    for base, aa, slow in _twins(run, set(tidy["backend"]) if len(tidy) else set()):
        both = [_compare(tidy[tidy["backend"].isin([base, twin])], base, metrics) for twin in (aa, slow)]
        out.append((base, aa, slow, *both))
    return out


def _store_dependence(run: Run) -> dict[str, str]:
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
        return _noted(pd.DataFrame(columns=columns),
                      "No controls ran: run with controls (notebook parameter controls=True, or msbench run "
                      "--controls) to measure the baseline under a second name (A/A) and held to a CPU quota.")
    rows, notes = [], []
    for base, aa, slow, raw_aa, raw_slow in found:
        cpu = _handicap(run, slow).get("cpu")
        for (_, a), (_, p) in zip(raw_aa.iterrows(), raw_slow.iterrows()):
            claimed_aa, claimed_slow = a["verdict"] in ("better", "worse"), p["verdict"] in ("better", "worse")
            rows.append([
                a["metric"], a["unit"],
                _with_ci(a["ratio_mean"], a["ratio_mean_low"], a["ratio_mean_high"], _no_ratio_ci(a)),
                "FALSE POSITIVE: difference claimed" if claimed_aa else "no difference claimed (as it must be)",
                _with_ci(p["ratio_mean"], p["ratio_mean_low"], p["ratio_mean_high"], _no_ratio_ci(p)),
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
    return _noted(pd.DataFrame(rows, columns=columns),
                  " ".join(notes) + " Same claim rule as the comparison table: " + _comparison_note())


def variance_table(run: Run) -> pd.DataFrame:
    """Per headline metric: each backend's trial-to-trial sd and the Brown-Forsythe test that they differ,
    shown only where it could detect a 3x spread difference at this run's n."""
    metrics = headline(run)
    tidy = _tidy(run, metrics)
    tests = stats.variance_tests(tidy, ALPHA).set_index("metric") if len(tidy) else pd.DataFrame()
    rows = []
    for m in metrics:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        if sel.empty:
            continue
        spread = sel.groupby("backend")["value"].agg(["count", "std", "mean"])
        t = tests.loc[m.name]
        power = f"{_pct(t['power'])} power against a {stats.SPREAD_RATIO:g}x sd ratio"
        sizes = "/".join(str(int(n)) for n in spread["count"][spread["count"] >= 3])
        if not _finite(t["p_value"]):
            p, reading = "–", "not testable: needs 2 backends with ≥ 3 trials each, not all constant"
        elif not t["testable"]:
            p, reading = f"not testable at n={sizes}", f"not testable at n={sizes} ({power})"
        else:
            p = _p(t["p_value"])
            reading = ("spread differs between backends" if t["p_value"] < ALPHA
                       else f"no difference in spread detected ({power})")
        rows.append([m.name, sel["unit"].iloc[0],
                     "; ".join(f"{b}: sd {_num(s['std'])}, CV {_pct(s['std'] / s['mean'] if s['mean'] else np.nan)}"
                               f" (n={int(s['count'])})" for b, s in spread.iterrows()),
                     t["backends"] or "–", _num(t["statistic"]), p, reading])
    return _noted(pd.DataFrame(rows, columns=["metric", "unit", "trial-to-trial spread per backend",
                                              "backends tested (≥ 3 trials)", "Brown-Forsythe W", "p", "reading"]),
                  "Do the backends differ in how repeatable they are? Brown-Forsythe (Levene on medians) over "
                  f"per-trial values; p < {ALPHA} means the spreads differ. Not corrected for multiple metrics. "
                  f"Its power is simulated at this run's group sizes for one backend with {stats.SPREAD_RATIO:g}x "
                  f"the sd of the others (normal data); below {stats.TESTABLE_POWER:.0%} the test is shown as "
                  "not testable (at 3 vs 3 it almost never rejects), as a p-value there would be no evidence.")


def latency_spread_table(run: Run) -> pd.DataFrame:
    """Search latency percentiles per backend (all trials pooled) and per trial, each with a 95% CI."""
    lat = _completed(run, "latencies")
    lat = lat[~lat["warmup"].astype(bool)] if len(lat) else lat
    names = {"p50_ms": "p50 (ms)", "p95_ms": "p95 (ms)", "p99_ms": "p99 (ms)", "p99_p50": "p99 / p50",
             "iqr_ms": "IQR p75 − p25 (ms)"}
    columns = ["backend", "trial", "queries (n)", *(f"{label} [95% CI]" for label in names.values())]
    if lat.empty:
        return _noted(pd.DataFrame(columns=columns), "No search latencies: no completed trial reached the search phase.")
    kwargs = {"n_resamples": 1000, "seed": SEED}
    spread = pd.concat([stats.latency_spread(lat, by="backend", **kwargs).assign(trial="all, pooled"),
                        stats.latency_spread(lat, by=["backend", "trial"], **kwargs)], ignore_index=True)
    spread["order"] = spread["trial"].map(lambda t: -1 if isinstance(t, str) else t)
    spread = spread.sort_values(["backend", "order"], ignore_index=True)
    table = spread[["backend", "trial", "n_queries"]].set_axis(columns[:3], axis=1)
    for key, label in names.items():
        table[f"{label} [95% CI]"] = [_with_ci(*v, "< 10 queries beyond the quantile") for v in
                                     zip(spread[key], spread[f"{key}_low"], spread[f"{key}_high"])]
    return _noted(table, "Serial single-query search latency, warm-up queries excluded. CIs are percentile "
                         "bootstraps over queries (1000 resamples); the pooled rows treat all queries of a backend as "
                         "exchangeable and so leave out trial-to-trial variation: read the per-trial rows for that.")


def power_table(run: Run, effect: float = 0.10) -> pd.DataFrame:
    """What the comparison's decision rule can detect with this run's noise and n, and the n it would need."""
    metrics = compared(run)
    tidy = _tidy(run, metrics)
    columns = ["metric", "unit", "pooled CV [95% CI]",
               f"smallest difference detectable at this n ({POWER:.0%} power)",
               f"trials per backend to detect a {effect:.0%} difference ({POWER:.0%} power)",
               "completed trials per backend"]
    if tidy.empty:
        return _noted(pd.DataFrame(columns=columns), "No completed trials: the noise is unknown.")
    found = stats.detectability(tidy, tidy["metric"].nunique(), effect, alpha=ALPHA, power=POWER).set_index("metric")
    texts = _detectable_text(tidy, metrics, effect)
    counts = tidy.groupby(["metric", "backend"]).size()
    rows = [[m.name, found.loc[m.name, "unit"],
             _with_ci(100 * found.loc[m.name, "cv_pooled"], 100 * found.loc[m.name, "cv_low"],
                      100 * found.loc[m.name, "cv_high"], "needs a backend with ≥ 2 trials") + " %",
             *texts[m.name], ", ".join(f"{b}: {n}" for b, n in counts[m.name].items())]
            for m in metrics if m.name in found.index]
    return _noted(pd.DataFrame(rows, columns=columns),
                  "Simulated from the comparison's own decision rule, not from a single t test: lognormal noise "
                  "with the pooled CV, the paired-or-independent Fieller interval and its test, and Holm over the "
                  f"{tidy['metric'].nunique()} compared metrics, assuming the metric in question is the only real "
                  f"difference (so it must pass α/{tidy['metric'].nunique()} at Holm's first step: slightly "
                  "conservative) and no round-to-round correlation (which would let the paired analysis do better). "
                  f"{stats.POWER_DRAWS} simulated runs per point, fixed seed. The noise is the coefficient of "
                  "variation pooled over backends; ranges in brackets are the figures at the 95% bounds of that CV "
                  "(chi-square bounds of the sample variance), and the smallest detectable difference uses the "
                  "fewest trials any backend completed. A difference below the detectable one is usually missed.")


def trials_table(run: Run) -> pd.DataFrame:
    """Every planned trial in execution order: status, duration, and for a failure its phase and cause."""
    trials = run["trials"]
    planned = pd.DataFrame(run["manifest"].get("order", []), columns=["seq", "backend", "trial"])
    recorded = trials[["seq", "backend", "trial", "status", "duration_s", "failed_phase", "error"]] if len(trials) \
        else pd.DataFrame(columns=["seq", "backend", "trial", "status", "duration_s", "failed_phase", "error"])
    both = recorded.merge(planned, on=["seq", "backend", "trial"], how="outer").sort_values("seq", ignore_index=True)
    stores = run["manifest"].get("stores", {})
    return _noted(pd.DataFrame({
        "seq (execution order)": both["seq"], "backend": both["backend"],
        "store": both["backend"].map(lambda b: stores.get(b, "–")), "trial": both["trial"],
        "status": both["status"].fillna("not run (no record)"),
        "duration (s)": both["duration_s"].map(_num),
        "failed phase": both["failed_phase"].astype("string").fillna(""),
        "cause": both["error"].map(_first_line),
    }), "Every planned trial. A failed trial stops at its failed phase; its earlier measurements are kept in the "
        "run folder but left out of every statistic here.")


def _first_line(text: Any, limit: int = 200) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    line = text.strip().splitlines()[0].rstrip(":")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _kind_backend(run: Run, kind: str, ran: set[str]) -> str | None:
    """The backend that ran store ``kind`` here: the one named like it, else the first alias."""
    stores = run["manifest"].get("stores", {})
    found = sorted(b for b in ran if stores.get(b, b) == kind)
    return kind if kind in found else (found[0] if found else None)


def _setup_pairs(run: Run) -> list[tuple[str, str, str]]:
    """(what, here, published) for each way this run's setup differs from the published one."""
    manifest = run["manifest"]
    params, host = manifest.get("params", {}), manifest.get("host", {})
    ours = {
        "Milvus": manifest.get("milvus", {}).get("version", "unknown"),
        "data": f"{params.get('n_vectors', 0):,} x {params.get('dim', 0)}-d {params.get('dataset', '')} vectors, "
                f"batches of {params.get('batch_size', 0):,}",
        "hardware": f"{host.get('cores', '?')} cores, {host.get('memory_bytes', 0) / 1e9:.0f} GB RAM, "
                    f"{host.get('disk_device', 'unknown disk')}",
        "index": f"{params.get('index_type')} M={params.get('hnsw_m')} efConstruction={params.get('hnsw_ef_construction')}"
                 if params.get("index_type") == "HNSW" else f"{params.get('index_type')} nlist={params.get('ivf_nlist')}",
    }
    theirs = {"Milvus": PUBLISHED_SETUP["milvus"], "hardware": PUBLISHED_SETUP["hardware"],
              "index": PUBLISHED_SETUP["index"],
              "data": f"{PUBLISHED_SETUP['n_vectors']:,} x {PUBLISHED_SETUP['dim']}-d random vectors, "
                      f"batches of {PUBLISHED_SETUP['batch_size']:,}"}
    return [(what, ours[what], theirs[what]) for what in ours if ours[what] != theirs[what]]


def published_vs_reproduced(run: Run, reference_csv: str | Path) -> pd.DataFrame:
    """Each published claim (one row per measurement of ours that tests it) beside our figures and verdict."""
    published = pd.read_csv(reference_csv).set_index("metric")
    metrics = headline(run)
    by_metric = {m.metric: m for m in metrics}
    tidy = _tidy(run, metrics)
    ran = set(tidy["backend"])
    pair = {kind: _kind_backend(run, kind, ran) for kind in ("rustfs", "minio")}
    raw = (_compare(tidy[tidy["backend"].isin(pair.values())], pair["minio"], metrics)
           .set_index("metric") if None not in pair.values() else pd.DataFrame())
    ours = _tidy(run, [by_metric[m] for claims in CLAIMS.values() for m, _ in claims], byte_unit="GB")
    summary = stats.summarize(ours) if len(ours) else pd.DataFrame(
        columns=stats.SUMMARY_COLUMNS)
    setup = "; ".join(f"{what} {here} here vs {there} published" for what, here, there in _setup_pairs(run))
    context = _caveat_context(run)
    controls = _control_names(run)
    rows = []
    for claim, measures in CLAIMS.items():
        pub = published.loc[claim]
        pub_ratio = pub["rustfs"] / pub["minio"]
        for metric, caveat in measures:
            m = by_metric[metric]
            mine = summary[summary["metric"] == m.name]
            figures = "; ".join(f"{s.backend}: {_with_ci(s.mean, s.ci_low, s.ci_high, 'needs n ≥ 2')} (n={s.n})"
                                for s in mine.itertuples() if s.backend not in controls) or "no completed measurement here"
            our_minio = next((f"{_with_ci(s.mean, s.ci_low, s.ci_high, 'needs n ≥ 2')} (n={s.n})"
                              for s in mine.itertuples() if s.backend == pair["minio"]), "not measured here")
            row = raw.loc[m.name] if m.name in raw.index else None
            missing = [kind for kind in pair if pair[kind] is None or not (mine["backend"] == pair[kind]).any()]
            if missing:
                why = ("not available on this machine" if not set(missing) & set(run["manifest"].get("backends", []))
                       else "requested but without a completed measurement")
                verdict, ratio = f"not measured here ({' and '.join(missing)} {why})", "–"
            else:
                ratio = _with_ci(row["ratio_mean"], row["ratio_mean_low"], row["ratio_mean_high"], _no_ratio_ci(row))
                if row["verdict"] in ("better", "worse"):
                    verdict = "direction reproduced" if (row["ratio_mean"] > 1) == (pub_ratio > 1) else "reversed"
                else:
                    verdict = f"no detectable difference here (n={row['n_backend']} vs {row['n_baseline']})"
            rows.append([claim, pub["unit"], _num(pub["rustfs"]), _num(pub["minio"]), _num(pub_ratio),
                         pub["better"], m.name, mine["unit"].iloc[0] if len(mine) else m.unit, our_minio, figures,
                         ratio, verdict,
                         caveat.format(**context) + (f" Setup: {setup}." if setup else "")])
    return _noted(pd.DataFrame(rows, columns=[
        "published claim", "published unit", "published RustFS", "published MinIO", "published ratio RustFS/MinIO",
        "better when", "our metric", "our unit", "ours: MinIO mean [95% CI] (n trials)",
        "ours: mean [95% CI] (n trials) per backend",
        "our ratio RustFS/MinIO [95% CI]", "verdict", "caveats"]),
        "Published: Min Yin, milvus.io blog (Milvus 2.6.7, RustFS 1.0.0-alpha.68 vs MinIO, about three repetitions, "
        "no intervals). 'direction reproduced' / 'reversed' need our RustFS vs MinIO difference to pass the same "
        "test as the comparison table (Holm-adjusted p and a Fieller CI of the ratio excluding 1). Means carry a "
        "Student t 95% CI, ratios a Fieller 95% CI (methods as in the summary and comparison tables).")


def _caveat_context(run: Run) -> dict[str, Any]:
    """Values the claim caveats quote: workload parameters and whether the page cache was dropped."""
    params = run["manifest"].get("params", {})
    dropped = _completed(run, "results").query("metric == 'page_cache_dropped'")["value"]
    missed = int((dropped == 0).sum())
    return {**params, "measured": params.get("n_queries", 0) - params.get("warmup_queries", 0),
            "cache_note": f" (but the page cache was not dropped in {missed} of {len(dropped)} trials)" if missed else ""}


def environment_table(run: Run) -> pd.DataFrame:
    """Host, versions, binary hashes (first 12 hex digits) and workload parameters, one per row."""
    m = run["manifest"]
    host = m.get("host", {})
    rows = [("run", label, m.get(key)) for key, label in (
        ("run", "id"), ("created", "created"), ("profile", "profile"), ("provider", "provider"),
        ("trials", "trials per backend"), ("order_seed", "seed of the trial order"))]
    rows += [("host", key.removesuffix("_bytes"), f"{value / 1e9:,.1f} GB" if key.endswith("_bytes") else value)
             for key, value in host.items()]
    milvus = m.get("milvus", {})
    rows += [("Milvus", key, str(value)[:12] if key == "sha256" else value) for key, value in milvus.items()]
    rows += [("package", name, version or "not installed") for name, version in m.get("packages", {}).items()]
    for section, facts in [*((f"store: {b}", f) for b, f in m.get("components", {}).items()),
                           *((f"tool: {t}", f if isinstance(f, dict) else {"version": f})
                             for t, f in m.get("tools", {}).items())]:
        rows += [(section, key, str(value)[:12] if key == "sha256" else value) for key, value in (facts or {}).items()]
    rows += [("parameter", key, ", ".join(map(str, value)) or "none" if isinstance(value, list) else value)
             for key, value in m.get("params", {}).items()]
    table = pd.DataFrame(rows, columns=["section", "item", "value"])
    table["value"] = table["value"].map(lambda v: "–" if v is None else str(v))
    return _noted(table, "What the results depend on besides the stores: recorded in the run's manifest.json.")


def _trial_notes(run: Run, column: str) -> dict[tuple[str, int], str]:
    """(backend, trial) -> the trials.csv ``column`` where a trial wrote one (older runs lack it)."""
    trials = run["trials"]
    if column not in trials:
        return {}
    return {(b, int(t)): " ".join(n.split()) for b, t, n in zip(trials["backend"], trials["trial"], trials[column])
            if isinstance(n, str) and n.strip()}


def _load_retry_deviations(run: Run) -> list[str]:
    """One line per completed trial whose load() was refused before a try succeeded: its load
    times are those of the successful tries, after the failed ones."""
    data = _completed(run, "results")
    tries = data[data["metric"].isin(["load_retries", "load_failed_attempts"]) & (data["value"] > 0)]
    took = data[data["metric"] == "load_failed_attempts_s"].set_index(["backend", "trial", "phase"])["value"]
    errors = _trial_notes(run, "load_failures")
    out = []
    for (backend, trial), group in tries.groupby(["backend", "trial"]):
        parts = []
        for phase, n in group.groupby("phase", sort=False)["value"].max().items():
            seconds = took.get((backend, trial, phase))
            parts.append(f"{phase} needed {n:.0f} retr{'y' if n == 1 else 'ies'}"
                         + (f" (failed attempts took {seconds:.1f} s)" if _finite(seconds) else ""))
        why = errors.get((backend, int(trial)))
        out.append(f"{backend} trial {trial}: {'; '.join(parts)}; its load times are the successful tries'"
                   + (f". Failed attempts: {_first_line(why, 600)}." if why else "."))
    return out


def _unseen_bytes_deviations(run: Run) -> list[str]:
    """One line per backend whose TCP counter could not see the store's traffic (NaN bytes served)."""
    data = _completed(run, "results")
    served = data[data["metric"] == "store_bytes_served_during_load"]
    notes = _trial_notes(run, "bytes_served_note")
    out = []
    for backend, group in served[served["value"].isna()].groupby("backend"):
        trials = sorted(set(group["trial"]))
        why = sorted({notes[backend, int(t)].removeprefix("store_bytes_served_during_load is NaN: ")
                      for t in trials if (backend, int(t)) in notes}) or ["no reason recorded"]
        out.append(f"{backend}: the TCP counter could not see the store's traffic in {len(trials)} of "
                   f"{served[served['backend'] == backend]['trial'].nunique()} trials, so their "
                   f"store_bytes_served_during_load is NaN and does not show whether a load read data: {'; '.join(why)}.")
    return out


def deviations(run: Run) -> list[str]:
    """Plain sentences on everything that makes this run weaker than planned or unlike the published study."""
    out = []
    results = run["results"]
    for metric, what, consequence in (
            ("page_cache_dropped", "The OS page cache was not dropped before the cold load",
             "load_cold_s may have been served from memory rather than from disk"),
            ("store_restarted", "The store was not restarted before the cold load",
             "load_cold_s read from a store that was already warm")):
        flags = results[results["metric"] == metric] if len(results) else results
        missed = flags[flags["value"] == 0]
        if len(missed):
            which = "any trial" if len(missed) == len(flags) else f"{len(missed)} of {len(flags)} trials"
            out.append(f"{what} in {which} ({metric} = 0; {', '.join(sorted(set(missed['backend'])))}): "
                       f"{consequence}.")
    trials = run["trials"]
    failed = trials[trials["status"] != "ok"] if len(trials) else trials
    for t in failed.itertuples():
        out.append(f"{t.backend} trial {t.trial} (seq {t.seq}) failed in phase '{t.failed_phase}': "
                   f"{_first_line(t.error) or 'no cause recorded'}. It is left out of every statistic.")
    planned = pd.DataFrame(run["manifest"].get("order", []), columns=["backend", "trial"])
    ok = trials[trials["status"] == "ok"] if len(trials) else trials
    counts = ok["backend"].value_counts() if len(ok) else pd.Series(dtype=int)
    for backend in _backends(run):
        n_planned = int((planned["backend"] == backend).sum())
        n_recorded = int((trials["backend"] == backend).sum()) if len(trials) else 0
        if n_recorded < n_planned:
            out.append(f"{backend}: {n_planned - n_recorded} of {n_planned} planned trials have no record "
                       "(skipped, or the run was interrupted).")
        if not counts.get(backend, 0):
            out.append(f"{backend} was requested but completed no trial: it appears in no statistic.")
    for backend, why in run["manifest"].get("skipped", {}).items():
        out.append(f"{backend} did not run: {why}")
    notes = ok.dropna(subset=["s3_capture_note"]) if "s3_capture_note" in ok else pd.DataFrame(
        columns=["backend", "s3_capture_note"])
    for (backend, note), group in notes[notes["s3_capture_note"] != ""].groupby(["backend", "s3_capture_note"]):
        out.append(f"{backend}: S3 requests not (fully) recorded in {len(group)} trial(s): {note}.")
    stalled = ok[ok["stalls"].fillna("") != ""] if "stalls" in ok else ok.iloc[0:0]
    for t in stalled.itertuples():
        out.append(f"{t.backend} trial {t.trial}: a server fell silent and came back ({t.stalls}); the trial "
                   f"completed and its figures for those phases include the wait.")
    out += _load_retry_deviations(run) + _unseen_bytes_deviations(run)
    few = {b: n for b, n in counts.items() if n < 5}
    if few:
        out.append("Fewer than 5 completed trials for " + ", ".join(f"{b} (n={n})" for b, n in sorted(few.items()))
                   + ": intervals and tests need n ≥ 2, rank tests cannot reject below 4 trials per backend, "
                     "Brown-Forsythe hardly ever at this n, and only large differences can be detected (see the "
                     "power table).")
    out += [f"{what.capitalize()}: {here} here; {there} in the published study."
            for what, here, there in _setup_pairs(run)]
    ran = set(counts.index)
    if not {"rustfs", "minio"} <= {run["manifest"].get("stores", {}).get(b, b) for b in ran}:
        out.append("RustFS and MinIO did not both complete a trial here, so the published RustFS-vs-MinIO "
                   "claims can only be set beside the figures of the stores that did run.")
    return out


# --- figures --------------------------------------------------------------------------------


def _save(fig: Figure, figures_dir: str | Path, name: str) -> Path:
    """PNG for the report, SVG for print; no timestamp in the SVG so reruns give identical files."""
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=110)
    fig.set_layout_engine("none")   # keep the layout just computed: the SVG gets the same, twice as fast
    fig.savefig(folder / f"{name}.svg", metadata={"Date": None})
    return png


def _colors(run: Run) -> dict[str, Any]:
    """One colour per backend, the same in every figure."""
    return {b: colormaps["tab10"](i % 10) for i, b in enumerate(_backends(run))}


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey")


def _grid(metrics: list[Metric], title: str, draw: Callable[[Any, Metric], None], legend: dict | None = None) -> Figure:
    """One small panel per metric, four to a row."""
    ncols = max(1, min(4, len(metrics)))
    nrows = max(1, ceil(len(metrics) / ncols))
    fig = Figure(figsize=(max(3.9 * ncols, 5.0), 3.1 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, m in zip(axes, metrics):
        draw(ax, m)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(title)
    if legend:
        fig.legend(handles=[Line2D([], [], marker="o", ls="", color=c, label=b) for b, c in legend.items()],
                   loc="outside lower center", ncols=min(6, len(legend)), frameon=False)
    return fig


def _log_x(ax) -> None:
    """Log x axis labelled 0.5, 1, 2, 5 rather than 5 x 10^-1."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _unit_label(sel: pd.DataFrame, m: Metric) -> str:
    unit = sel["unit"].iloc[0] if len(sel) else m.unit
    return f"{unit} ({direction(m.metric)} is better)"


def _draw_strip(run: Run, tidy: pd.DataFrame) -> Callable[[Any, Metric], None]:
    """Panel drawer: a box of the quartiles with every trial's value on it, one column per backend, n below."""
    colors, backends = _colors(run), _backends(run)

    def draw(ax, m: Metric) -> None:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        for i, backend in enumerate(backends):
            v = sel.loc[sel["backend"] == backend, "value"].to_numpy(float)
            if v.size:
                ax.boxplot([v], positions=[i], widths=0.5, showfliers=False, manage_ticks=False,
                           medianprops={"color": "black"})
                ax.scatter(i + np.linspace(-0.12, 0.12, v.size), v, color=colors[backend], s=18, zorder=3)
        ax.set_xticks(range(len(backends)),
                      [f"{b}\nn={int((sel['backend'] == b).sum()) if len(sel) else 0}" for b in backends], fontsize=8)
        ax.set_xlim(-0.6, len(backends) - 0.4)
        ax.set_title(m.name, fontsize=9)
        ax.set_ylabel(_unit_label(sel, m), fontsize=8)
        if sel.empty:
            _no_data(ax)

    return draw


def fig_trials(run: Run, figures_dir: str | Path) -> Path:
    """Every completed trial's value of each headline metric, by backend (strip over box)."""
    metrics = headline(run)
    fig = _grid(metrics, f"Per-trial values by backend, run {run['manifest'].get('run', '')}: each dot one completed "
                         "trial, box = quartiles, n = trials under each backend", _draw_strip(run, _tidy(run, metrics)))
    return _save(fig, figures_dir, "trials_by_backend")


def fig_recall(run: Run, figures_dir: str | Path) -> Path:
    """Recall per backend: a store must not change what Milvus returns, so these should coincide."""
    recall = next(m for m in headline(run) if m.metric.startswith("recall_at_"))
    fig = _grid([recall], "Recall per backend\n(each dot one completed trial; n below)",
                _draw_strip(run, _tidy(run, [recall])))
    return _save(fig, figures_dir, "recall")


def fig_drift(run: Run, figures_dir: str | Path) -> Path:
    """Each headline metric against execution order: a trend means the machine drifted during the run."""
    metrics = headline(run)
    tidy, colors = _tidy(run, metrics), _colors(run)

    def draw(ax, m: Metric) -> None:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        for backend, group in sel.groupby("backend"):
            ax.scatter(group["seq"], group["value"], color=colors[backend], s=18)
        ax.set_title(m.name, fontsize=9)
        ax.set_xlabel("execution order (seq)", fontsize=8)
        ax.set_ylabel(_unit_label(sel, m), fontsize=8)
        if sel.empty:
            _no_data(ax)

    fig = _grid(metrics, f"Drift check: each completed trial's value against its position in the run "
                         f"(n = {tidy[['backend', 'trial']].drop_duplicates().shape[0]} trials)", draw,
                legend={b: colors[b] for b in sorted(set(tidy["backend"]))})
    return _save(fig, figures_dir, "drift")


def fig_latency_ecdf(run: Run, figures_dir: str | Path) -> Path:
    """Empirical CDF of every measured search latency per backend (warm-up queries excluded)."""
    lat = _completed(run, "latencies")
    lat = lat[~lat["warmup"].astype(bool)] if len(lat) else lat
    colors = _colors(run)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for backend, group in lat.groupby("backend"):
        x = np.sort(group["latency_ms"].to_numpy(float))
        ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color=colors[backend],
                label=f"{backend} (n={x.size} queries, {group['trial'].nunique()} trials)")
    if len(lat):
        _log_x(ax)
        ax.legend(loc="lower right", fontsize=8)
    else:
        _no_data(ax, "no search latencies: no completed trial reached the search phase")
    ax.set_xlabel("search latency of one query (ms, log scale)")
    ax.set_ylabel("fraction of queries with latency ≤ x")
    ax.set_title(f"Serial search latency, warm-up queries excluded (n = {len(lat)} queries in all)")
    return _save(fig, figures_dir, "latency_ecdf")


def fig_forest(run: Run, figures_dir: str | Path, baseline: str | None = None) -> Path:
    """Ratio of means to the baseline with its 95% Fieller CI, per headline metric and backend (log scale)."""
    metrics = compared(run)
    tidy, colors = _without_controls(run, _tidy(run, metrics)), _colors(run)
    baseline = baseline or default_baseline(run)
    raw = (_compare(tidy, baseline, metrics) if baseline and tidy["backend"].nunique() >= 2
           else pd.DataFrame(columns=stats.COMPARE_COLUMNS))
    raw = raw[raw["ratio_mean"].astype(float) > 0]
    names = [m.name for m in metrics if m.name in set(raw["metric"])]
    fig = Figure(figsize=(9, 1.5 + 0.32 * max(len(names), 4)), layout="constrained")
    ax = fig.subplots()
    backends = sorted(set(raw["backend"]))
    for k, backend in enumerate(backends):
        g = raw[raw["backend"] == backend]
        y = g["metric"].map(names.index).to_numpy() + (k - (len(backends) - 1) / 2) * 0.8 / max(len(backends), 1)
        r, lo, hi = (g[c].to_numpy(float) for c in ("ratio_mean", "ratio_mean_low", "ratio_mean_high"))
        err = np.clip(np.nan_to_num(np.vstack([np.where(lo > 0, r - lo, 0), hi - r]), nan=0.0, posinf=0.0), 0, None)
        ax.errorbar(r, y, xerr=err, fmt="none", ecolor=colors[backend], capsize=2,
                    label=f"{backend} (n={int(g['n_backend'].max())}) vs {baseline} (n={int(g['n_baseline'].max())})")
        called = g["verdict"].isin(["better", "worse"]).to_numpy()
        ax.scatter(r, y, s=30, zorder=3, edgecolors=colors[backend],
                   facecolors=[colors[backend] if c else "white" for c in called])
    if names:
        ax.axvline(1, color="grey", ls="--", lw=1)
        _log_x(ax)
        ax.set_yticks(range(len(names)), [f"{n} ({direction(n)} is better)" for n in names], fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        fig.legend(loc="outside lower center", ncols=min(3, len(backends)), fontsize=8, frameon=False)
    else:
        _no_data(ax, "nothing to compare: fewer than two backends completed a trial")
    ax.set_xlabel(f"ratio of means, backend / {baseline} (log scale; 1 = no difference; unitless)")
    fig.suptitle(f"Ratio of means to {baseline} with 95% Fieller CI, paired or independent as in the comparison "
                 f"table (n trials per backend in the legend)\n"
                 f"filled dot = difference claimed (Holm-adjusted p < {ALPHA} and CI excludes 1)", fontsize=10)
    return _save(fig, figures_dir, "forest")


def fig_footprint(run: Run, figures_dir: str | Path) -> Path:
    """Mean bucket bytes per Milvus prefix (stacked) beside the store's allocated disk, per backend."""
    parts = [Metric("footprint", f"bucket_{p}_bytes", "bytes", p) for p in FOOTPRINT_PREFIXES]
    disk = Metric("footprint", "disk_allocated_bytes", "bytes", "disk allocated by the store")
    raw = _completed(run, "results")
    unit = _byte_unit(raw.loc[raw["metric"].isin([m.metric for m in (*parts, disk)]), "value"].max())
    tidy = _tidy(run, [*parts, disk], byte_unit=unit)
    means = tidy.pivot_table(index="backend", columns="metric", values="value", aggfunc="mean") if len(tidy) \
        else pd.DataFrame()
    n = tidy.groupby("backend")["trial"].nunique() if len(tidy) else {}
    fig = Figure(figsize=(max(6.5, 1.6 * len(means) + 3), 5.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(means))
    bottom = np.zeros(len(means))
    for i, m in enumerate(parts):
        height = means[m.name].fillna(0).to_numpy() if m.name in means else np.zeros(len(means))
        ax.bar(x - 0.2, height, 0.38, bottom=bottom, color=colormaps["Set2"](i), label=f"bucket: {m.what}/")
        bottom += height
    if disk.name in means:
        ax.bar(x + 0.2, means[disk.name].to_numpy(), 0.38, color="lightgrey", hatch="//", edgecolor="grey",
               label=disk.what)
    if len(means):
        ax.set_xticks(x, [f"{b}\nn={n[b]}" for b in means.index])
        fig.legend(fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    else:
        _no_data(ax, "no footprint measured: no completed trial")
    ax.set_ylabel(f"mean per trial ({unit})")
    fig.suptitle("Bucket contents by Milvus prefix (left, stacked) and the store's disk use (right)\n"
                 "at the end of each trial, no forced GC; mean of n completed trials", fontsize=10)
    return _save(fig, figures_dir, "footprint")
