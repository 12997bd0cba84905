"""Why a phase differs: the report's sections on what Milvus asked of each store (the captured S3
requests, traffic.py) and what each store does on its own (warp, ceiling.py).

Every figure here is a mean over completed trials with a Student t 95% interval (stats), the
same as the headline tables; a table says so in its note. Requests are Milvus's only (our own
probes and listings are left out), grouped by the phase whose time window held them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from msbench.analysis import stats
from msbench.report.comparisons import comparison_table
from msbench.report.figures import backend_colors, backend_order, label_levels, no_data, save_figure, styled
from msbench.report.values import Run, default_baseline
from msbench.report.page import noted, num, with_ci
from msbench.report.tables import CI_NOTE

MiB = float(1 << 20)
# the timed metric of each phase the request table covers (what a "phase differs" claim is about)
PHASE_TIME = {"flush": "flush_s", "index": "index_build_s", "load_first": "load_first_s",
              "load_warm": "load_warm_s", "load_cold": "load_cold_s"}
PHASE_ORDER = ["insert", "flush", "index", "load_first", "load_warm", "load_noop", "load_cold", "search",
               "throughput", "footprint", "between phases"]
OPERATION_ORDER = ["PUT", "multipart create", "multipart part", "multipart complete", "GET", "GET range", "HEAD",
                   "LIST", "DELETE", "DELETE multi", "COPY"]


def _ok(run: Run, table: str) -> pd.DataFrame:
    frame = run.table(table)
    if frame is None or frame.empty:
        return pd.DataFrame()
    return run.completed(table)


def _stores(frame: pd.DataFrame, run: Run) -> pd.DataFrame:
    """The stores proper: the baseline's controls are not explained."""
    return frame[~frame["backend"].isin(run.controls)] if len(frame) else frame


def _ci(values: pd.Series) -> tuple[float, float, float]:
    x = values.dropna().to_numpy(dtype=float)
    low, high = stats._mean_interval(x, 0.95)
    return float(np.mean(x)), float(low), float(high)


def _cell(values: pd.Series, scale: float = 1.0) -> str:
    mean, low, high = _ci(values / scale)
    return with_ci(mean, low, high, "n < 2")


def _per_trial(summary: pd.DataFrame) -> pd.DataFrame:
    """Every (backend, trial, phase, operation) present in some trial, zero-filled in the others:
    a trial that made no DELETE in a phase made 0 of them, which the mean must count."""
    keys = ["backend", "trial", "phase", "operation"]
    trials = summary[["backend", "trial"]].drop_duplicates()
    cells = summary[["backend", "phase", "operation"]].drop_duplicates()
    grid = trials.merge(cells, on="backend")
    filled = grid.merge(summary, on=keys, how="left")
    counts = ["requests", "errors", "unanswered", "slowdowns", "retries", "bytes_sent", "bytes_received", "busy_s"]
    filled[counts] = filled.reindex(columns=counts).fillna(0)   # (runs before "unanswered" lack it)
    return filled


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    rank = {p: i for i, p in enumerate(PHASE_ORDER)}
    op_rank = {o: i for i, o in enumerate(["all", *OPERATION_ORDER])}
    ops = frame["operation"] if "operation" in frame else pd.Series("all", index=frame.index)
    return frame.assign(_p=frame["phase"].map(rank).fillna(99), _o=ops.map(op_rank).fillna(98)) \
        .sort_values(["_p", "_o", "backend"]).drop(columns=["_p", "_o"])


def requests_table(run: Run, by_operation: bool = False) -> pd.DataFrame:
    """Per phase and store (and operation): Milvus's requests, the bytes they moved, their latency."""
    summary = _stores(_ok(run, "s3_summary"), run)
    if summary.empty:
        why = "no trial recorded a capture (see each trial's s3_capture)"
        return noted(pd.DataFrame(), f"No S3 requests recorded: {why}.")
    summary = summary[(summary["operation"] == "all") != by_operation]
    rows = []
    for (phase, op, backend), group in _per_trial(summary).groupby(["phase", "operation", "backend"]):
        seen = group[group["requests"] > 0]
        rows.append({
            "phase": phase, **({"operation": op} if by_operation else {}), "backend": backend, "n": len(group),
            "requests": _cell(group["requests"]),
            "MiB sent (PUT bodies)": _cell(group["bytes_sent"], MiB),
            "MiB received (GET bodies)": _cell(group["bytes_received"], MiB),
            "latency p50 ms": _cell(seen["latency_p50_ms"]) if len(seen) else "–",
            "latency p99 ms": _cell(seen["latency_p99_ms"]) if len(seen) else "–",
            "errors / unanswered / retries": f"{int(group['errors'].sum())} / {int(group['unanswered'].sum())} / "
                                              f"{int(group['retries'].sum())}",
        })
    table = _order(pd.DataFrame(rows))
    what = "operation" if by_operation else "phase"
    return noted(table.reset_index(drop=True), (
        f"Milvus's S3 requests per {what} and store, from a packet capture of the store's port (no proxy in the "
        "path; our own probes and listings excluded). Mean per trial [95% CI over trials, Student t]; latency is "
        "from a request's first byte to its response's last, p50/p99 within a trial, then averaged over the "
        "trials that made such requests. Bytes are object bodies (Content-Length). Errors: status >= 400; "
        "unanswered: no response before the capture or the connection ended (e.g. in flight when the capture "
        "stopped); retries: a request repeating one that failed. " + CI_NOTE))


def explain_phases(run: Run, baseline: str | None = None) -> pd.DataFrame:
    """Per store and timed phase: the phase's ratio to the baseline (and whether it is claimed),
    and the operation whose requests differ most in the time they kept open (busy seconds)."""
    baseline = baseline or default_baseline(run)
    summary = _stores(_ok(run, "s3_summary"), run)
    if summary.empty or baseline is None:
        return noted(pd.DataFrame(), "No S3 requests recorded, so no phase can be explained by them.")
    ops = _per_trial(summary[summary["operation"] != "all"])
    means = ops.groupby(["backend", "phase", "operation"])[["requests", "busy_s", "latency_p50_ms"]].mean()
    claims = _claims(run, baseline)
    rows = []
    for backend in sorted(set(ops["backend"]) - {baseline}):
        for phase, metric in PHASE_TIME.items():
            try:
                mine, theirs = means.loc[(backend, phase)], means.loc[(baseline, phase)]
            except KeyError:
                continue
            both = mine.join(theirs.add_suffix("_base"), how="outer").fillna(0)
            delta = both["busy_s"] - both["busy_s_base"]
            op = delta.abs().idxmax()
            r = both.loc[op]
            if not r["requests"] or not r["requests_base"]:
                why = f"{op} requests only on {backend if r['requests'] else baseline}"
            else:
                why = f"{_compared(r['requests'], r['requests_base'], 'more', 'fewer', 'as many')} and " \
                      f"{_compared(r['latency_p50_ms'], r['latency_p50_ms_base'], 'slower', 'faster', 'equally fast')}" \
                      f" {op} requests"
            rows.append({
                "store": backend, "phase": phase, "phase time vs " + baseline: claims.get((backend, metric), "–"),
                "operation differing most": op,
                "requests (store vs baseline)": f"{num(r['requests'])} vs {num(r['requests_base'])}",
                "median request ms": f"{num(r['latency_p50_ms'] if r['requests'] else None)} vs "
                                     f"{num(r['latency_p50_ms_base'] if r['requests_base'] else None)}",
                "seconds with a request open": f"{num(r['busy_s'])} vs {num(r['busy_s_base'])}",
                "reading": why if abs(delta[op]) > 0 else "no difference in requests",
            })
    return noted(pd.DataFrame(rows), (
        f"For each phase, the S3 operation whose requests were open longest more (or less) than on {baseline} "
        "(mean per trial of the union of their open intervals), with its count and median latency. The phase "
        "column repeats the comparison table's verdict: a request difference explains a phase only where the "
        "phase itself differs; elsewhere it is shown so a reader can see how much the stores' requests differ."))


def _compared(mine: float, theirs: float, above: str, below: str, same: str, tolerance: float = 0.05) -> str:
    """A word for mine against theirs: within 5% counts as the same."""
    return above if mine > theirs * (1 + tolerance) else below if mine < theirs * (1 - tolerance) else same


def _claims(run: Run, baseline: str) -> dict[tuple[str, str], str]:
    """(store, metric) -> the comparison table's verdict on it against the baseline."""
    return {(r["backend"], r["metric"]): r["verdict"] for r in comparison_table(run, baseline).to_dict("records")
            if r["compared with"] == baseline}


def warp_table(run: Run) -> pd.DataFrame:
    """Each store on its own: warp's PUT and GET throughput and latency, mean over trials [95% CI]."""
    data = _stores(run.completed("results"), run)
    data = data[data["phase"] == "store_alone"] if len(data) else data
    if data.empty:
        return noted(pd.DataFrame(), "warp did not run (warp_seconds 0, or warp not built: msbench stores install warp).")
    rows = []
    for backend, group in data.groupby("backend"):
        wide = group.pivot_table(index="trial", columns="metric", values="value")
        row = {"backend": backend, "n": len(wide)}
        for op in ("put", "get"):
            if f"warp_{op}_mib_per_s" not in wide:
                continue
            row[f"{op.upper()} MiB/s"] = _cell(wide[f"warp_{op}_mib_per_s"])
            row[f"{op.upper()} p50 ms"] = _cell(wide[f"warp_{op}_latency_p50_ms"])
            row[f"{op.upper()} p99 ms"] = _cell(wide[f"warp_{op}_latency_p99_ms"])
            row[f"{op.upper()} errors"] = int(wide[f"warp_{op}_errors"].sum())
        sizes = wide.filter(like="obj_size_bytes").mean(axis=1)
        row["object size"] = f"{num(sizes.mean() / MiB)} MiB" if len(sizes.dropna()) else "–"
        row["threads"] = num(wide.filter(like="_concurrency").drop(columns="warp_concurrency_from_capture",
                                                                     errors="ignore").mean(axis=1).mean())
        row["warp failed"] = _failures(run, backend, wide)
        rows.append(row)
    return noted(pd.DataFrame(rows), (
        "warp v1.3.1 against each store after the trial's phases, into a bucket of its own: PUT for the set "
        "time, then GET of objects it uploaded first. Object size: the byte-weighted median of what Milvus left "
        "in the bucket; threads: the most GETs Milvus had open at once during its loads (from the capture). "
        "Throughput: bytes of successful requests per second while all threads were busy; latency: whole "
        "request, percentiles over every request. " + CI_NOTE))


def _failures(run: Run, backend: str, wide: pd.DataFrame) -> str:
    """How many trials' warp runs failed, and the first cause recorded (trials.csv)."""
    failed = wide.filter(like="_failed").fillna(0).sum(axis=1)
    if not failed.any():
        return "no"
    trials = run.trials
    notes = trials["store_alone_note"].fillna("") if "store_alone_note" in trials else pd.Series("", trials.index)
    causes = [n for b, n in zip(trials.get("backend", []), notes) if b == backend and n]
    return f"{int((failed > 0).sum())} of {len(wide)} trials" + (f": {causes[0][:300]}" if causes else "")


def milvus_vs_store(run: Run) -> pd.DataFrame:
    """What Milvus achieved from each store against what the store can do: the GET rate of each
    load while Milvus had a GET open, and of the flush's PUTs, over warp's rate, per trial."""
    summary = _stores(_ok(run, "s3_summary"), run)
    data = _stores(run.completed("results"), run)
    if summary.empty or data.empty:
        return noted(pd.DataFrame(), "Needs both the S3 capture and warp in the same trials.")
    warp = data[data["phase"] == "store_alone"].pivot_table(index=["backend", "trial"], columns="metric",
                                                            values="value")
    rows = []
    for phase, op, warp_metric, column in (("load_first", "GET", "warp_get_mib_per_s", "bytes_received"),
                                           ("load_cold", "GET", "warp_get_mib_per_s", "bytes_received"),
                                           ("flush", "PUT", "warp_put_mib_per_s", "bytes_sent")):
        sel = summary[(summary["phase"] == phase) & (summary["operation"] == op) & (summary["busy_s"] > 0)]
        rate = (sel[column] / MiB / sel["busy_s"]).groupby([sel["backend"], sel["trial"]]).sum()
        if warp_metric not in warp:
            continue
        joined = pd.DataFrame({"milvus": rate, "warp": warp[warp_metric]}).dropna()
        for backend, group in joined.groupby(level=0):
            rows.append({"phase": phase, "operation": op, "backend": backend, "n": len(group),
                         "Milvus MiB/s while requests open": _cell(group["milvus"]),
                         "warp MiB/s": _cell(group["warp"]),
                         "Milvus / warp": _cell(group["milvus"] / group["warp"])})
    return noted(pd.DataFrame(rows), (
        "Milvus's rate: the phase's body bytes of that operation over the seconds it had at least one such "
        "request open; warp's rate as in the table above, same trial. A ratio well below 1 says Milvus did not "
        "ask the store for all it can give (the phase is bound elsewhere); near 1, the store is the limit. "
        "Ratios: mean over trials of each trial's ratio [95% CI]."))


@styled
def fig_timeline(run: Run, figures_dir) -> Path:
    """One representative trial per store (its load_first time closest to the store's median):
    every Milvus request over the trial's time, its latency up, coloured by operation, phases shaded."""
    requests = _stores(_ok(run, "s3_requests"), run)
    windows = _ok(run, "phase_windows")
    if windows.empty:
        windows = pd.DataFrame(columns=["backend", "trial", "phase", "start", "end"])
    backends = [b for b in backend_order(run) if len(requests) and b in set(requests["backend"])]
    fig = Figure(figsize=(11, 2.3 * max(1, len(backends)) + 1.0), layout="constrained")
    axes = fig.subplots(max(1, len(backends)), 1, squeeze=False, sharex=True).ravel()
    if not backends:
        no_data(axes[0], "no S3 requests recorded")
        return save_figure(fig, figures_dir, "s3_timeline")
    ops = [o for o in OPERATION_ORDER if o in set(requests["operation"])] + \
        sorted(set(requests["operation"]) - set(OPERATION_ORDER))
    palette = {op: colormaps["tab10"](i % 10) for i, op in enumerate(ops)}
    results = run.completed("results")
    shown = []
    for backend in backends:
        trial = _representative(results, backend)
        mine = requests[(requests["backend"] == backend) & (requests["trial"] == trial)
                        & (requests["client"] == "milvus")]
        spans = windows[(windows["backend"] == backend) & (windows["trial"] == trial)
                        & (windows["phase"] != "store_alone")]   # warp's phase is not captured
        origin = spans["start"].min() if len(spans) else mine["start"].min()
        shown.append((backend, trial, mine, spans, origin))
    end = max(max(spans["end"].max() - origin if len(spans) else 0.0,
                  (mine["start"] + mine["duration_ms"] / 1e3).max() - origin if len(mine) else 0.0)
              for _, _, mine, spans, origin in shown)
    axes[0].set_xlim(-0.01 * end, 1.01 * end)   # shared: every row the same seconds
    for ax, (backend, trial, mine, spans, origin) in zip(axes, shown):
        for i, span in enumerate(spans.itertuples()):
            ax.axvspan(span.start - origin, span.end - origin, color="0.90" if i % 2 else "0.96", zorder=0)
        _phase_labels(ax, spans, origin)
        for op, group in mine.groupby("operation"):
            ax.scatter(group["start"] - origin, group["duration_ms"].clip(lower=0.05), s=6, color=palette[op],
                       label=op, alpha=0.7, linewidths=0)
        ax.set_yscale("log")
        ax.set_ylabel(f"{backend}\ntrial {trial}\nms")
    axes[-1].set_xlabel("seconds since the trial's first phase began")
    handles = [ax.scatter([], [], s=12, color=palette[o], label=o) for o in ops]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(ops)), frameon=False)
    fig.suptitle("Every S3 request Milvus made in one representative trial per store (latency, log scale)")
    return save_figure(fig, figures_dir, "s3_timeline")


def _phase_labels(ax, spans: pd.DataFrame, origin: float, size: float = 7.5) -> None:
    """Each phase's name above its span, staggered in rows so that no two names overlap (their widths
    estimated from the axis's width before layout, which only widens it: about 0.6 em per character)."""
    if spans.empty:
        return
    left, right = ax.get_xlim()
    inches = ax.get_figure().get_figwidth() * ax.get_position().width
    per_char = 0.6 * size / 72 / inches * (right - left)
    centers = [(s.start + s.end) / 2 - origin for s in spans.itertuples()]
    levels = label_levels(centers, [per_char * (len(p) + 1) for p in spans["phase"]])
    for center, phase, level in zip(centers, spans["phase"], levels):
        ax.text(center, 1.02 + 0.13 * level, phase, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=size, clip_on=False)


def _representative(results: pd.DataFrame, backend: str) -> int:
    sel = results[(results["backend"] == backend) & (results["metric"] == "load_first_s")]
    if sel.empty:
        return int(results.loc[results["backend"] == backend, "trial"].min())
    return int(sel.iloc[(sel["value"] - sel["value"].median()).abs().argmin()]["trial"])


@styled
def fig_warp(run: Run, figures_dir) -> Path:
    """warp's PUT and GET MiB/s per store, every trial and the mean with its 95% interval."""
    data = _stores(run.completed("results"), run)
    data = data[data["phase"] == "store_alone"] if len(data) else data
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = backend_colors(run)
    for ax, op in zip(axes, ("put", "get")):
        sel = data[data["metric"] == f"warp_{op}_mib_per_s"] if len(data) else data
        if sel.empty:
            no_data(ax, "warp did not run")
            continue
        names = [b for b in backend_order(run) if b in set(sel["backend"])]
        for i, backend in enumerate(names):
            group = sel[sel["backend"] == backend]
            mean, low, high = _ci(group["value"])
            ax.scatter(np.full(len(group), i), group["value"], color=colors.get(backend), s=14, alpha=0.6)
            if np.isfinite(low):
                ax.errorbar(i + 0.15, mean, yerr=[[mean - low], [high - mean]], fmt="o", color=colors.get(backend),
                            capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel("MiB/s (higher is better)")
        ax.set_title(f"warp {op.upper()}")
        ax.set_ylim(bottom=0)
    fig.suptitle("Each store on its own (warp): trials, and mean with 95% CI")
    return save_figure(fig, figures_dir, "warp")
