"""The sweep's section of the report (``results.load_sweep``): from which size the store matters.

Built from the sizes' runs (each analysed as any run, completed trials only) by
:mod:`msbench.analysis.scaling`: per store and phase the line of phase time against the GB the
phase moved (fixed cost, seconds per GB, their intervals), from which size each store differs from
the baseline by at least 10%, a figure per phase (time against bucket size, a line and band per
store, the handicapped control included), and each store's own ceiling (warp) beside what Milvus
got from it at each size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from msbench.analysis import scaling
from msbench.metrics import HEADLINE
from msbench.report.figures import _log_x, backend_colors, backend_order, no_data, save_figure, styled
from msbench.report.page import noted, num, with_ci
from msbench.report.values import default_baseline
from msbench.results import Run, Sweep

BRIEF = {m.metric: m.brief for m in HEADLINE} | {"insert_s": "insert: the batched insert() calls"}
FIT_NOTE = (
    "Each completed trial of each size is a point: x = the GB Milvus moved to and from the store in that phase "
    "(packet capture, every S3 request's body bytes), y = the phase's time. Fixed cost = the line's intercept "
    "(Milvus's own steps), s per GB = its slope (the store, through Milvus). Estimates by least squares; each "
    "95% interval is the envelope of the ordinary (OLS) and the 1/fitted^2-weighted (WLS) Student t intervals, "
    "which a seeded simulation at 3-5 sizes x 2 trials found to cover at least 95% whether the noise is constant "
    "or grows with the time (OLS alone: slope 81-86% under the latter; WLS alone: intercept 80-90% under the "
    "former). 'Differs by >= 10% from': the smallest size from which, at that size and every larger one run, "
    "the two lines' ratio at the GB the baseline moved there has a Fieller 95% interval (the same envelope) "
    "excluding 1 and an estimate beyond 10%; each phase on its own, no correction across phases or sizes.")


def _ordered(sweep: Sweep) -> list[str]:
    return [p.label for p in sorted(sweep.manifest.points, key=lambda p: p.target_bytes) if p.label in sweep.runs]


def frames(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, s3_summary) of every size's completed trials, with a ``size`` column."""
    results = [run.completed("results").assign(size=label) for label, run in sweep.runs.items()]
    summaries = [run.completed("s3_summary").assign(size=label) for label, run in sweep.runs.items()]
    return (pd.concat(results, ignore_index=True) if results else pd.DataFrame(),
            pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame())


def _largest(sweep: Sweep) -> Run:
    """The run whose backends and controls name the figures' colours (every size runs the same ones)."""
    return sweep.runs[_ordered(sweep)[-1]]


def _baseline(sweep: Sweep, baseline: str | None) -> str | None:
    return baseline or default_baseline(_largest(sweep))


def _points(sweep: Sweep) -> pd.DataFrame:
    results, summary = frames(sweep)
    return scaling.trial_points(results, summary)


def _from(sweep: Sweep, baseline: str) -> dict[tuple[str, str], str | None]:
    points, sizes = _points(sweep), _ordered(sweep)
    return scaling.differs_from(scaling.ratios_by_size(points, baseline, sizes), sizes)


def fit_table(sweep: Sweep, baseline: str | None = None) -> pd.DataFrame:
    """Store x phase: fixed cost [95% CI], s per GB [95% CI], and the size from which it differs from
    the baseline by at least 10% (or "not within the sizes run")."""
    if not sweep.runs:
        return noted(pd.DataFrame(), "No size of this sweep has a run yet.")
    baseline = _baseline(sweep, baseline)
    table = scaling.fit_table(_points(sweep))
    if table.empty:
        return noted(table, "No line could be fitted: each needs 3 completed trials with a capture over 2 sizes.")
    first = _from(sweep, baseline)
    rank = {m: i for i, (_, m) in enumerate(scaling.FITTED)}
    order = {b: i for i, b in enumerate(backend_order(_largest(sweep)))}
    table = table.assign(_m=table["metric"].map(rank), _b=table["backend"].map(order).fillna(99))
    rows = []
    for r in table.sort_values(["_m", "_b"]).itertuples():
        differs = ("(the baseline)" if r.backend == baseline
                   else first.get((r.backend, r.metric)) or "not within the sizes run")
        rows.append({"phase": r.phase, "time": r.metric, "what it times": BRIEF.get(r.metric, r.metric),
                     "backend": r.backend, "n (sizes)": f"{r.n} ({r.sizes})",
                     "fixed cost, s [95% CI]": with_ci(r.intercept_s, r.intercept_low, r.intercept_high, "n < 3"),
                     "s per GB moved [95% CI]": with_ci(r.s_per_gb, r.s_per_gb_low, r.s_per_gb_high, "n < 3"),
                     f"differs from {baseline} by >= 10% from": differs})
    out = pd.DataFrame(rows)
    out.attrs["beneath"] = {"what it times": "time"}
    return noted(out, f"{FIT_NOTE} Sizes run: {', '.join(_ordered(sweep))}. {_settings(sweep)}")


def _settings(sweep: Sweep) -> str:
    """What Milvus ran with at each size: its pacing and mmap, and the index (users run the default)."""
    parts = []
    for label in _ordered(sweep):
        p = sweep.runs[label].manifest.params
        index = f"HNSW efC={p.hnsw_ef_construction}" if p.index_type == "HNSW" else f"IVF_FLAT nlist={p.ivf_nlist}"
        parts.append(f"{label}: {p.n_vectors:,} x {p.dim}, {index}, pacing {p.milvus_pacing}"
                     + (", mmap" if p.milvus_mmap else "") + ("" if p.footprint_after_gc else ", no footprint after GC"))
    return "Per size: " + "; ".join(parts) + "."


def matters(sweep: Sweep, baseline: str | None = None) -> str:
    """The answer first (markdown): per phase, which stores differ from the baseline by at least 10%
    and from which size, and whether the handicapped control was seen; the pacing in force."""
    if not sweep.runs:
        return "No size of this sweep has a run yet."
    baseline = _baseline(sweep, baseline)
    first = _from(sweep, baseline)
    run = _largest(sweep)
    lines = [f"**From which size does the store matter?** Sizes run: {', '.join(_ordered(sweep))} "
             f"(bucket bytes; {sweep.manifest.trials} trial(s) per store and size). Each store against {baseline}, "
             f"by the lines of phase time against GB moved (differs by at least 10%, interval excluding 1, at "
             f"that size and every larger one run)."]
    for phase, metric in scaling.FITTED:
        said = []
        for backend in backend_order(run):
            if backend == baseline or (backend, metric) not in first:
                continue
            size = first[backend, metric]
            role = " (handicapped control)" if backend in run.manifest.handicaps else \
                " (A/A control)" if backend in run.controls else ""
            said.append(f"{backend}{role}: {'from ' + size if size else 'not within the sizes run'}")
        if said:
            lines.append(f"- {phase} (`{metric}`): " + "; ".join(said))
    pacing = {sweep.runs[label].manifest.params.milvus_pacing for label in sweep.runs}
    lines.append(f"Milvus pacing in force: {', '.join(sorted(pacing))} (default: Milvus 2.3.5's own intervals, "
                 f"which users run; its Loaded state is written on a fixed 1 s tick whatever the pacing).")
    return "\n".join(lines)


def ceiling_table(sweep: Sweep) -> pd.DataFrame:
    """Per size and store: warp's GET MiB/s, and what Milvus's loads got as a fraction of it."""
    results, summary = frames(sweep)
    table = scaling.ceiling(results, summary) if len(results) else pd.DataFrame()
    if table.empty:
        return noted(table, "warp did not run in this sweep (warp_seconds 0, or warp not built).")
    sizes = {s: i for i, s in enumerate(_ordered(sweep))}
    order = {b: i for i, b in enumerate(backend_order(_largest(sweep)))}
    phases = [p for p in ("load_first", "load_cold") if table[f"{p}_mib_s"].notna().any()]
    rows = []
    for r in table.assign(_s=table["size"].map(sizes), _b=table["backend"].map(order)).sort_values(["_s", "_b"]) \
            .to_dict("records"):
        rows.append({"size": r["size"], "backend": r["backend"], "n": r["n"],
                     "warp GET MiB/s [95% CI]": with_ci(r["warp_mib_s"], r["warp_low"], r["warp_high"], "n < 2"),
                     **{f"{phase}: Milvus MiB/s": num(r[f"{phase}_mib_s"]) for phase in phases},
                     **{f"{phase}: Milvus / warp [95% CI]": with_ci(r[f"{phase}_fraction"], r[f"{phase}_fraction_low"],
                                                                   r[f"{phase}_fraction_high"], "n < 2")
                        for phase in phases}})
    return noted(pd.DataFrame(rows), (
        "The store on its own (warp GETs of objects the size that carries Milvus's bytes, at the concurrency "
        "Milvus's loads reached) beside what Milvus's loads got from it: their GET bytes over the seconds a GET "
        "was open. A fraction well below 1 says the load is bound elsewhere (Milvus), near 1 that the store is the "
        "limit. Means over trials with Student t 95% intervals."))


@styled
def fig_phase(sweep: Sweep, figures_dir: str | Path, phase: str) -> Path:
    """One phase's times against the bucket size: every trial, and per store the fitted line (at the GB
    the phase moved at each size) with its 95% band, one panel per timed metric of the phase."""
    metrics = [m for p, m in scaling.FITTED if p == phase]
    points = _points(sweep)
    # x: the size asked for (a large size's footprint can hold compaction copies not yet collected)
    points = points.assign(size_gb=points["size"].map({p.label: p.target_bytes / scaling.GB
                                                       for p in sweep.manifest.points}))
    run = _largest(sweep) if sweep.runs else None
    fig = Figure(figsize=(5.2 * len(metrics), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False).ravel())
    lines = scaling.fits(points)
    colors = backend_colors(run) if run is not None else {}
    for ax, metric in zip(axes, metrics):
        sel = points[points["metric"] == metric] if len(points) else points
        if sel.empty:
            no_data(ax)
            continue
        for backend in backend_order(run):
            mine = sel[sel["backend"] == backend]
            if mine.empty:
                continue
            ax.scatter(mine["size_gb"], mine["seconds"], s=14, alpha=0.6, color=colors.get(backend))
            fit = lines.get((backend, metric))
            if fit is None:
                continue
            at = mine.groupby("size")[["size_gb", "moved_gb"]].mean().dropna().sort_values("size_gb")
            mean, low, high = zip(*(fit.mean_interval(x) for x in at["moved_gb"]))
            label = backend + (" (control)" if backend in run.controls else "")
            ax.plot(at["size_gb"], mean, color=colors.get(backend), label=label, lw=1.4)
            ax.fill_between(at["size_gb"], low, high, color=colors.get(backend), alpha=0.15, lw=0)
        _log_x(ax)
        ax.set_ylim(bottom=0)
        ax.set(xlabel="GB in the bucket (the size asked for; log scale)", ylabel="seconds",
               title=f"{metric}\n{BRIEF.get(metric, '')}")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"{phase}: time against bucket size, per store:\ntrials, fitted line and its 95% band")
    return save_figure(fig, figures_dir, f"sweep_{phase}")


def fig_phases(sweep: Sweep, figures_dir: str | Path) -> list[Path]:
    """A figure per phase that touches the store."""
    return [fig_phase(sweep, figures_dir, phase) for phase in dict.fromkeys(p for p, _ in scaling.FITTED)]
