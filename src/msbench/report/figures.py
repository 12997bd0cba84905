"""The report's figures, drawn on ``matplotlib.figure.Figure`` objects (Agg, no pyplot state, so the
notebook's own backend is never touched); each is written as PNG and SVG and its PNG path
returned. One colour per backend, the same in every figure."""
from __future__ import annotations

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
from msbench.report.comparisons import ALPHA, compare
from msbench.report.metrics import (FOOTPRINT_PREFIXES, Metric, Run, all_backends, completed_rows, compared,
                                    default_baseline, direction, fitting_byte_unit, headline, trial_values,
                                    without_controls)


def save_figure(fig: Figure, figures_dir: str | Path, name: str) -> Path:
    """PNG for the report, SVG for print; no timestamp in the SVG so reruns give identical files."""
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=110)
    fig.set_layout_engine("none")   # keep the layout just computed: the SVG gets the same, twice as fast
    fig.savefig(folder / f"{name}.svg", metadata={"Date": None})
    return png


def backend_colors(run: Run) -> dict[str, Any]:
    """One colour per backend, the same in every figure."""
    return {b: colormaps["tab10"](i % 10) for i, b in enumerate(all_backends(run))}


def no_data(ax, text: str = "no data") -> None:
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
    colors, backends = backend_colors(run), all_backends(run)

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
            no_data(ax)

    return draw


def fig_trials(run: Run, figures_dir: str | Path) -> Path:
    """Every completed trial's value of each headline metric, by backend (strip over box)."""
    metrics = headline(run)
    fig = _grid(metrics, f"Per-trial values by backend, run {run['manifest'].get('run', '')}: each dot one completed "
                         "trial, box = quartiles, n = trials under each backend", _draw_strip(run, trial_values(run, metrics)))
    return save_figure(fig, figures_dir, "trials_by_backend")


def fig_recall(run: Run, figures_dir: str | Path) -> Path:
    """Recall per backend: a store must not change what Milvus returns, so these should coincide."""
    recall = next(m for m in headline(run) if m.metric.startswith("recall_at_"))
    fig = _grid([recall], "Recall per backend\n(each dot one completed trial; n below)",
                _draw_strip(run, trial_values(run, [recall])))
    return save_figure(fig, figures_dir, "recall")


def fig_drift(run: Run, figures_dir: str | Path) -> Path:
    """Each headline metric against execution order: a trend means the machine drifted during the run."""
    metrics = headline(run)
    tidy, colors = trial_values(run, metrics), backend_colors(run)

    def draw(ax, m: Metric) -> None:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        for backend, group in sel.groupby("backend"):
            ax.scatter(group["seq"], group["value"], color=colors[backend], s=18)
        ax.set_title(m.name, fontsize=9)
        ax.set_xlabel("execution order (seq)", fontsize=8)
        ax.set_ylabel(_unit_label(sel, m), fontsize=8)
        if sel.empty:
            no_data(ax)

    fig = _grid(metrics, f"Drift check: each completed trial's value against its position in the run "
                         f"(n = {tidy[['backend', 'trial']].drop_duplicates().shape[0]} trials)", draw,
                legend={b: colors[b] for b in sorted(set(tidy["backend"]))})
    return save_figure(fig, figures_dir, "drift")


def fig_latency_ecdf(run: Run, figures_dir: str | Path) -> Path:
    """Empirical CDF of every measured search latency per backend (warm-up queries excluded)."""
    lat = completed_rows(run, "latencies")
    lat = lat[~lat["warmup"].astype(bool)] if len(lat) else lat
    colors = backend_colors(run)
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
        no_data(ax, "no search latencies: no completed trial reached the search phase")
    ax.set_xlabel("search latency of one query (ms, log scale)")
    ax.set_ylabel("fraction of queries with latency ≤ x")
    ax.set_title(f"Serial search latency, warm-up queries excluded (n = {len(lat)} queries in all)")
    return save_figure(fig, figures_dir, "latency_ecdf")


def fig_forest(run: Run, figures_dir: str | Path, baseline: str | None = None) -> Path:
    """Ratio of means to the baseline with its 95% Fieller CI, per headline metric and backend (log scale)."""
    metrics = compared(run)
    tidy, colors = without_controls(run, trial_values(run, metrics)), backend_colors(run)
    baseline = baseline or default_baseline(run)
    raw = (compare(tidy, baseline, metrics) if baseline and tidy["backend"].nunique() >= 2
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
        no_data(ax, "nothing to compare: fewer than two backends completed a trial")
    ax.set_xlabel(f"ratio of means, backend / {baseline} (log scale; 1 = no difference; unitless)")
    fig.suptitle(f"Ratio of means to {baseline} with 95% Fieller CI, paired or independent as in the comparison "
                 f"table (n trials per backend in the legend)\n"
                 f"filled dot = difference claimed (Holm-adjusted p < {ALPHA} and CI excludes 1)", fontsize=10)
    return save_figure(fig, figures_dir, "forest")


def fig_footprint(run: Run, figures_dir: str | Path) -> Path:
    """Mean bucket bytes per Milvus prefix (stacked) beside the store's allocated disk, per backend."""
    parts = [Metric("footprint", f"bucket_{p}_bytes", "bytes", p) for p in FOOTPRINT_PREFIXES]
    disk = Metric("footprint", "disk_allocated_bytes", "bytes", "disk allocated by the store")
    raw = completed_rows(run, "results")
    unit = fitting_byte_unit(raw.loc[raw["metric"].isin([m.metric for m in (*parts, disk)]), "value"].max())
    tidy = trial_values(run, [*parts, disk], byte_unit=unit)
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
        no_data(ax, "no footprint measured: no completed trial")
    ax.set_ylabel(f"mean per trial ({unit})")
    fig.suptitle("Bucket contents by Milvus prefix (left, stacked) and the store's disk use (right)\n"
                 "at the end of each trial, no forced GC; mean of n completed trials", fontsize=10)
    return save_figure(fig, figures_dir, "footprint")
