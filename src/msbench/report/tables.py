"""The report's descriptive tables: each store's figures with n, spread and a 95% interval, search
latency percentiles, every planned trial and how it ended, and what the results depend on."""
from __future__ import annotations

import pandas as pd

from msbench.analysis import stats
from msbench.report.comparisons import SEED
from msbench.metrics import headline
from msbench.report.values import Run, confidence_of, trial_values
from msbench.report.page import first_line, interval, noted, num, pct, with_ci

CI_NOTE = ("95% CI of the mean: Student t interval over trials (simulated coverage 94-95.5% on normal and lognormal "
           "data at 3-10 trials and CV up to {cv:.0%}; above that CV it can fall to about 92% on skewed data and says "
           "so; a bootstrap was dropped: its '95%' covered 72-88% at these n). A trial is one fresh stack "
           "(store + Milvus) that inserts, indexes, loads and searches.").format(cv=stats.VERIFIED_MAX_CV)


def summary_table(run: Run) -> pd.DataFrame:
    """Per headline metric and backend: n, mean, median, sd, CV and the 95% interval of the mean with its method."""
    metrics = headline(run.manifest.params)
    tidy = trial_values(run, metrics)
    columns = ["metric", "what it measures", "unit", "backend", "n (trials)", "mean", "median", "sd",
               "CV (sd/mean)", "95% CI of mean", "CI method"]
    rows = []
    if len(tidy):
        summary = stats.summarize(tidy, confidence=confidence_of(tidy)).set_index(["metric", "backend"])
        for m in metrics:
            for backend in sorted(summary.loc[m.name].index) if m.name in summary.index else []:
                s = summary.loc[(m.name, backend)]
                rows.append([m.name, m.what, s["unit"], backend, int(s["n"]), num(s["mean"]), num(s["median"]),
                             num(s["sd"]), pct(s["cv"]),
                             interval(s["ci_low"], s["ci_high"], "needs n ≥ 2"), s["ci_method"] or "–"])
    return noted(pd.DataFrame(rows, columns=columns),
                  f"Headline measurements per backend, completed trials only. {CI_NOTE} "
                  "Bytes in decimal units (1 MB = 10^6 bytes).")


def latency_spread_table(run: Run) -> pd.DataFrame:
    """Search latency percentiles per backend (all trials pooled) and per trial, each with a 95% CI."""
    lat = run.completed("latencies")
    lat = lat[~lat["warmup"].astype(bool)] if len(lat) else lat
    names = {"p50_ms": "p50 (ms)", "p95_ms": "p95 (ms)", "p99_ms": "p99 (ms)", "p99_p50": "p99 / p50",
             "iqr_ms": "IQR p75 − p25 (ms)"}
    columns = ["backend", "trial", "queries (n)", *(f"{label} [95% CI]" for label in names.values())]
    if lat.empty:
        return noted(pd.DataFrame(columns=columns), "No search latencies: no completed trial reached the search phase.")
    kwargs = {"n_resamples": 1000, "seed": SEED}
    spread = pd.concat([stats.latency_spread(lat, by="backend", **kwargs).assign(trial="all, pooled"),
                        stats.latency_spread(lat, by=["backend", "trial"], **kwargs)], ignore_index=True)
    spread["order"] = spread["trial"].map(lambda t: -1 if isinstance(t, str) else t)
    spread = spread.sort_values(["backend", "order"], ignore_index=True)
    table = spread[["backend", "trial", "n_queries"]].set_axis(columns[:3], axis=1)
    for key, label in names.items():
        table[f"{label} [95% CI]"] = [with_ci(*v, "< 10 queries beyond the quantile") for v in
                                     zip(spread[key], spread[f"{key}_low"], spread[f"{key}_high"])]
    return noted(table, "Serial single-query search latency, warm-up queries excluded. CIs are percentile "
                         "bootstraps over queries (1000 resamples); the pooled rows treat all queries of a backend as "
                         "exchangeable and so leave out trial-to-trial variation: read the per-trial rows for that.")


def trials_table(run: Run) -> pd.DataFrame:
    """Every planned trial in execution order: status, duration, and for a failure its phase and cause."""
    trials = run.trials
    planned = pd.DataFrame([vars(t) for t in run.manifest.order], columns=["seq", "backend", "trial"])
    recorded = trials[["seq", "backend", "trial", "status", "duration_s", "failed_phase", "error"]] if len(trials) \
        else pd.DataFrame(columns=["seq", "backend", "trial", "status", "duration_s", "failed_phase", "error"])
    both = recorded.merge(planned, on=["seq", "backend", "trial"], how="outer").sort_values("seq", ignore_index=True)
    stores = run.manifest.stores
    return noted(pd.DataFrame({
        "seq (execution order)": both["seq"], "backend": both["backend"],
        "store": both["backend"].map(lambda b: stores.get(b, "–")), "trial": both["trial"],
        "status": both["status"].fillna("not run (no record)"),
        "duration (s)": both["duration_s"].map(num),
        "failed phase": both["failed_phase"].astype("string").fillna(""),
        "cause": both["error"].map(first_line),
    }), "Every planned trial. A failed trial stops at its failed phase; its earlier measurements are kept in the "
        "run folder but left out of every statistic here.")


def _ran(run: Run) -> list[tuple[str, str, str]]:
    """What each trial recorded of what really ran (Milvus's own version, images and their digests), each
    distinct value once with the trials that ran it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in run.records:
        facts = {"milvus reported version": r.ran.get("milvus_version"),
                 **{f"image {ref}": digest for ref, digest in (r.ran.get("images") or {}).items()}}
        for item, value in facts.items():
            if value:
                seen.setdefault((item, str(value)), []).append(f"{r.backend} #{r.trial}")
    total = len(run.records)
    return [("ran", item, f"{value} ({'every trial' if len(who) == total else ', '.join(who)})")
            for (item, value), who in sorted(seen.items())]


def environment_table(run: Run) -> pd.DataFrame:
    """Host, versions, binary hashes (first 12 hex digits) and workload parameters, one per row."""
    m = run.manifest
    rows = [("run", label, getattr(m, key)) for key, label in (
        ("run", "id"), ("created", "created"), ("profile", "profile"), ("provider", "provider"),
        ("trials", "trials per backend"), ("order_seed", "seed of the trial order"))]
    rows += [("msbench", key, value) for key, value in m.msbench.items()]
    rows += [("host", key.removesuffix("_bytes"), f"{value / 1e9:,.1f} GB" if key.endswith("_bytes") else value)
             for key, value in m.host.items()]
    rows += [("Milvus", key, str(value)[:12] if key == "sha256" else value) for key, value in m.milvus.items()]
    rows += [("package", name, version or "not installed") for name, version in m.packages.items()]
    for section, facts in [*((f"store: {b}", f) for b, f in m.components.items()),
                           *((f"tool: {t}", f if isinstance(f, dict) else {"version": f}) for t, f in m.tools.items())]:
        rows += [(section, key, str(value)[:12] if key == "sha256" else value) for key, value in (facts or {}).items()]
    rows += [("parameter", key, ", ".join(map(str, value)) or "none" if isinstance(value, list) else value)
             for key, value in m.params.as_dict().items()]
    rows += _ran(run)
    table = pd.DataFrame(rows, columns=["section", "item", "value"])
    table["value"] = table["value"].map(lambda v: "–" if v is None else str(v))
    return noted(table, "What the results depend on besides the stores: the run's manifest.json, and what each trial "
                        "recorded of what ran (trial.json: ran).")
