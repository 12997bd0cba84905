"""The report's figures, drawn with seaborn on ``matplotlib.figure.Figure`` objects (Agg, no pyplot
state, so the notebook's own backend is never touched); each is written as PNG and SVG and its PNG
path returned. One palette (:func:`backend_colors`) colours the backends in every figure, and one
look (:func:`styled`: seaborn's white grid, type sized to be read in print) is shared by all."""
from __future__ import annotations

import functools
import warnings
from math import ceil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning, rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

from msbench.analysis import stats
from msbench.report.comparisons import CLAIMED, claims, handicap_of
from msbench.metrics import Metric, compared, direction, headline
from msbench.report.values import FOOTPRINT_PREFIXES, Run, all_backends, default_baseline, fitting_byte_unit, trial_values

# A store kind keeps its hue in every report (seaborn's colour-blind-safe palette); kinds not named
# here take the hues left, in name order. Grey (7) is left for what is no store (the no-data text).
STORE_HUES = {"minio": 0, "rustfs": 1, "ceph-rgw": 2, "seaweedfs": 3, "garage": 4, "external": 5}
SPARE_HUES = (6, 8, 9)


def save_figure(fig: Figure, figures_dir: str | Path, name: str) -> Path:
    """PNG for the report, SVG for print; no timestamp in the SVG so reruns give identical files."""
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=110)
    fig.set_layout_engine("none")   # keep the layout just computed: the SVG gets the same, twice as fast
    fig.savefig(folder / f"{name}.svg", metadata={"Date": None})
    return png


def styled(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Draw a figure in the report's one look: seaborn's white grid, type sized for print; the SVG's
    element ids from a fixed salt (matplotlib's default is random), so a rerun writes the same file."""
    @functools.wraps(draw)
    def in_style(*args, **kwargs) -> Path:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85), \
                rc_context({"svg.hashsalt": "msbench"}):
            return draw(*args, **kwargs)

    return in_style


def _shade(color, toward: float, amount: float) -> tuple[float, float, float]:
    """``color`` moved ``amount`` of the way to white (toward=1) or black (toward=0)."""
    return tuple(float(c + (toward - c) * amount) for c in color[:3])


def backend_colors(run: Run) -> dict[str, tuple[float, float, float]]:
    """The one palette: backend -> colour, used by every figure. A store kind has the same hue in every
    report (minio blue, ceph-rgw green, ...); a twin of a store (an alias, as the A/A control, or a
    handicapped copy, as the positive control) takes that store's hue, lighter for an alias and darker
    for a handicapped one, so a control reads as the store it copies."""
    hues = sns.color_palette("colorblind", 10)
    stores = run.manifest.stores
    backends = all_backends(run)
    kinds = sorted({stores.get(b, b) for b in backends})
    spare = iter([*SPARE_HUES, *(i for i in range(10) if i != 7)] * (1 + len(kinds) // 8))
    hue = {k: hues[STORE_HUES[k]] if k in STORE_HUES else hues[next(spare)] for k in kinds}
    colors, twins = {}, {}
    for b in backends:
        kind = stores.get(b, b)
        if b == kind:
            colors[b] = hue[kind]
            continue
        slow = bool(handicap_of(run, b))
        k = twins[kind, slow] = twins.get((kind, slow), -1) + 1
        colors[b] = _shade(hue[kind], 0.0, 0.55 + 0.1 * k) if slow else _shade(hue[kind], 1.0, 0.45 + 0.15 * k)
    return colors


def backend_order(run: Run) -> list[str]:
    """The backends as every figure lists them: the baseline, the other stores, then the controls."""
    controls = run.controls
    baseline = default_baseline(run)
    backends = all_backends(run)
    return ([baseline] if baseline in backends else []) + \
        [b for b in backends if b != baseline and b not in controls] + [b for b in backends if b in controls]


def no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey")


def _backend_legend(fig: Figure, run: Run, backends: list[str], n: dict | None = None, **kwargs) -> None:
    """One legend for the figure: each backend's colour, a control named as such, its n if given."""
    colors, controls = backend_colors(run), run.controls
    handles = [Line2D([], [], marker="o", ls="", color=colors[b],
                      label=b + (" (control)" if b in controls else "") + (f", n={n[b]}" if n else ""))
               for b in backends]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(backends)), frameon=False, **kwargs)


def _grid(metrics: list[Metric], title: str, draw: Callable[[Any, Metric], None], ncols: int = 3) -> Figure:
    """One small panel per metric, ``ncols`` to a row."""
    ncols = max(1, min(ncols, len(metrics)))
    nrows = max(1, ceil(len(metrics) / ncols))
    fig = Figure(figsize=(max(3.7 * ncols, 5.0), 3.0 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, m in zip(axes, metrics):
        draw(ax, m)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def label_levels(centers: list[float], widths: list[float], gap: float = 0.0) -> list[int]:
    """The row (0, 1, ...) for each of a line of labels so that none overlaps another in its row:
    each label, from left to right, goes in the lowest row whose last label ends before it begins."""
    ends: list[float] = []   # right edge of the last label in each row
    levels = [0] * len(centers)
    for i in sorted(range(len(centers)), key=lambda j: centers[j]):
        left = centers[i] - widths[i] / 2
        level = next((k for k, end in enumerate(ends) if end + gap <= left), len(ends))
        if level == len(ends):
            ends.append(0.0)
        ends[level] = centers[i] + widths[i] / 2
        levels[i] = level
    return levels


def _log_x(ax) -> None:
    """Log x axis labelled 0.5, 1, 2, 5 rather than 5 x 10^-1."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plain_y(ax) -> None:
    """Tick labels as the values themselves: no "+5.274e1" offset above the axis."""
    if isinstance(ax.yaxis.get_major_formatter(), ScalarFormatter):
        ax.yaxis.get_major_formatter().set_useOffset(False)


def _title(name: str, width: int = 30) -> str:
    """A metric's name as a panel title, its phase on a line of its own when the name is long."""
    return name.replace(" [", "\n[") if len(name) > width else name


def _unit_label(sel: pd.DataFrame, m: Metric) -> str:
    unit = sel["unit"].iloc[0] if len(sel) else m.unit
    return f"{unit}, {direction(m.metric)} is better"


def _draw_strip(run: Run, tidy: pd.DataFrame) -> Callable[[Any, Metric], None]:
    """Panel drawer: each backend's box of the quartiles with every trial's value on it (a swarm, so equal
    values stand side by side), one column per backend in :func:`backend_order`, n below, the controls
    set apart by a dotted line."""
    colors, backends = backend_colors(run), backend_order(run)
    real = len([b for b in backends if b not in run.controls])

    def draw(ax, m: Metric) -> None:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        sel = sel[np.isfinite(sel["value"].astype(float))] if len(sel) else sel
        if len(sel):
            common = dict(data=sel, x="backend", y="value", order=backends, hue="backend", hue_order=backends,
                          palette=colors, legend=False, ax=ax)
            with warnings.catch_warnings():
                # seaborn 0.13.2 still passes boxplot's vert=, which matplotlib 3.11 deprecates (same drawing)
                warnings.filterwarnings("ignore", "vert: bool", MatplotlibDeprecationWarning)
                sns.boxplot(**common, fill=False, showfliers=False, width=0.55, linewidth=1.1)
                # many trials in a narrow panel: some dots overlap, as they may
                warnings.filterwarnings("ignore", ".*points cannot be placed", UserWarning)
                sns.swarmplot(**common, size=4.5, edgecolor="white", linewidth=0.4)
        else:
            no_data(ax)
        counts = sel["backend"].value_counts() if len(sel) else pd.Series(dtype=int)
        crowded = len(backends) * max(map(len, backends), default=0) > 44   # names would touch
        ax.set_xticks(range(len(backends)), [f"{b}\nn={int(counts.get(b, 0))}" for b in backends],
                      **({"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if crowded else {}))
        ax.set_xlim(-0.6, len(backends) - 0.4)
        if 0 < real < len(backends):
            ax.axvline(real - 0.5, color="0.6", ls=":", lw=1)
        ax.set(xlabel="", title=_title(m.name))
        ax.set_ylabel(_unit_label(sel, m))
        _plain_y(ax)

    return draw


@styled
def fig_trials(run: Run, figures_dir: str | Path) -> Path:
    """Every completed trial's value of each headline metric, by backend (a swarm over a box)."""
    metrics = headline(run.manifest.params)
    fig = _grid(metrics, f"Per-trial values by backend, run {run.manifest.run}\neach dot one completed "
                         "trial, box = quartiles, n = trials under each backend; controls right of the dotted line",
                _draw_strip(run, trial_values(run, metrics)))
    return save_figure(fig, figures_dir, "trials_by_backend")


@styled
def fig_recall(run: Run, figures_dir: str | Path) -> Path:
    """Recall per backend: a store must not change what Milvus returns, so these should coincide."""
    recall = next(m for m in headline(run.manifest.params) if m.metric.startswith("recall_at_"))
    fig = _grid([recall], "Recall per backend\n(each dot one completed trial; n below)",
                _draw_strip(run, trial_values(run, [recall])))
    return save_figure(fig, figures_dir, "recall")


@styled
def fig_drift(run: Run, figures_dir: str | Path) -> Path:
    """Each headline metric against execution order: a trend means the machine drifted during the run."""
    metrics = headline(run.manifest.params)
    tidy, colors = trial_values(run, metrics), backend_colors(run)

    def draw(ax, m: Metric) -> None:
        sel = tidy[tidy["metric"] == m.name] if len(tidy) else tidy
        if len(sel):
            sns.scatterplot(data=sel, x="seq", y="value", hue="backend", palette=colors, s=30, legend=False, ax=ax)
        else:
            no_data(ax)
        ax.set(title=_title(m.name), xlabel="execution order (seq)", ylabel=_unit_label(sel, m))
        _plain_y(ax)

    fig = _grid(metrics, f"Drift check: each completed trial's value against its position in the run "
                         f"(n = {tidy[['backend', 'trial']].drop_duplicates().shape[0]} trials)", draw)
    _backend_legend(fig, run, [b for b in backend_order(run) if b in set(tidy["backend"])],
                    n=tidy.groupby("backend")["trial"].nunique().to_dict() if len(tidy) else None)
    return save_figure(fig, figures_dir, "drift")


@styled
def fig_latency_ecdf(run: Run, figures_dir: str | Path) -> Path:
    """Empirical CDF of every measured search latency per backend (warm-up queries excluded); the
    controls dashed."""
    lat = run.completed("latencies")
    lat = lat[~lat["warmup"].astype(bool)] if len(lat) else lat
    colors, controls = backend_colors(run), run.controls
    fig = Figure(figsize=(8.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for backend in [b for b in backend_order(run) if len(lat) and b in set(lat["backend"])]:
        group = lat[lat["backend"] == backend]
        sns.ecdfplot(x=group["latency_ms"].to_numpy(float), color=colors[backend], ax=ax, lw=1.8,
                     ls="--" if backend in controls else "-",
                     label=f"{backend}{' (control)' if backend in controls else ''}: "
                           f"{len(group)} queries, {group['trial'].nunique()} trials")
    if len(lat):
        _log_x(ax)
        ax.legend(loc="lower right")
    else:
        no_data(ax, "no search latencies: no completed trial reached the search phase")
    ax.set(xlabel="search latency of one query (ms, log scale)", ylabel="fraction of queries with latency ≤ x",
           title=f"Serial search latency, warm-up queries excluded (n = {len(lat)} queries in all)")
    return save_figure(fig, figures_dir, "latency_ecdf")


@styled
def fig_forest(run: Run, figures_dir: str | Path, baseline: str | None = None) -> Path:
    """Ratio of geometric means to the baseline with its 95% CI, per headline metric and store (log scale);
    a filled dot where the report claims the difference (comparisons.claims)."""
    metrics = compared(run.manifest.params)
    colors = backend_colors(run)
    found = claims(run, baseline)
    baseline = found.family.baseline if found else baseline or default_baseline(run)
    raw = found.rows if found else pd.DataFrame(columns=stats.COMPARE_COLUMNS)
    raw = raw[(raw["other"] == baseline) & (raw["ratio"].astype(float) > 0)]
    names = [m.name for m in metrics if m.name in set(raw["metric"])]
    fig = Figure(figsize=(10, 1.8 + 0.36 * max(len(names), 4)), layout="constrained")
    ax = fig.subplots()
    backends = [b for b in backend_order(run) if b in set(raw["backend"])]
    for k, backend in enumerate(backends):
        g = raw[raw["backend"] == backend]
        y = g["metric"].map(names.index).to_numpy() + (k - (len(backends) - 1) / 2) * 0.8 / max(len(backends), 1)
        r, lo, hi = (g[c].to_numpy(float) for c in ("ratio", "ratio_low", "ratio_high"))
        err = np.clip(np.nan_to_num(np.vstack([r - lo, hi - r]), nan=0.0, posinf=0.0), 0, None)
        ax.errorbar(r, y, xerr=err, fmt="none", ecolor=colors[backend], capsize=3, lw=1.6,
                    label=f"{backend} (n={int(g['n_backend'].max())}) vs {baseline} (n={int(g['n_other'].max())})")
        called = g["verdict"].isin(CLAIMED).to_numpy()
        ax.scatter(r, y, s=40, zorder=3, edgecolors=colors[backend], linewidths=1.5,
                   facecolors=[colors[backend] if c else "white" for c in called])
    if names:
        ax.axvline(1, color="0.4", ls="--", lw=1)
        _log_x(ax)
        ax.set_yticks(range(len(names)), [f"{n} ({direction(n)} is better)" for n in names])
        ax.set_ylim(len(names) - 0.5, -0.5)
        fig.legend(loc="outside lower center", ncols=min(3, len(backends)), frameon=False)
    else:
        no_data(ax, "nothing to compare: fewer than two backends completed a trial")
    ax.set_xlabel(f"ratio of geometric means, backend / {baseline} (log scale; 1 = no difference)")
    fig.suptitle(f"Ratio of geometric means to {baseline} with 95% CI (paired by round, as in the comparison "
                 "table)\nfilled dot = difference claimed by the report's family-wise rule (see the verdict); "
                 "controls left out")
    return save_figure(fig, figures_dir, "forest")


def _bars_with_trials(ax, data: pd.DataFrame, order: list[str], backends: list[str], colors: dict) -> None:
    """Mean per backend as a bar, each trial as a dot on it, grouped by ``x``."""
    common = dict(data=data, x="x", y="value", order=order, hue="backend", hue_order=backends, palette=colors,
                  legend=False, ax=ax)
    sns.barplot(**common, errorbar=None, alpha=0.55, width=0.8)
    sns.stripplot(**common, dodge=True, jitter=False, size=4, edgecolor="white", linewidth=0.4)


@styled
def fig_footprint(run: Run, figures_dir: str | Path) -> Path:
    """Bucket bytes per Milvus prefix (left) and the bucket's total beside the store's allocated disk
    (right), per backend: the mean of completed trials as a bar, each trial as a dot."""
    parts = [Metric("footprint", f"bucket_{p}_bytes", "bytes", f"{p}/") for p in FOOTPRINT_PREFIXES]
    totals = [Metric("footprint", "bucket_bytes", "bytes", "bucket (all prefixes)"),
              Metric("footprint", "disk_allocated_bytes", "bytes", "store's disk (allocated)")]
    raw = run.completed("results")
    unit = fitting_byte_unit(raw.loc[raw["metric"].isin([m.metric for m in (*parts, *totals)]), "value"].max())
    tidy = trial_values(run, [*parts, *totals], byte_unit=unit)
    label = {m.name: m.what for m in (*parts, *totals)}
    tidy = tidy.assign(x=tidy["metric"].map(label)) if len(tidy) else tidy.assign(x=[])
    present = set(tidy.loc[tidy["value"] > 0, "x"]) if len(tidy) else set()
    prefixes = [m.what for m in parts if m.what in present]
    empty = [m.what for m in parts if m.what not in present]
    backends = [b for b in backend_order(run) if len(tidy) and b in set(tidy["backend"])]
    colors = backend_colors(run)
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=[max(len(prefixes), 1), 2])
    if backends:
        _bars_with_trials(left, tidy[tidy["x"].isin(prefixes)], prefixes, backends, colors)
        _bars_with_trials(right, tidy[tidy["x"].isin([m.what for m in totals])], [m.what for m in totals],
                          backends, colors)
        _backend_legend(fig, run, backends, n=tidy.groupby("backend")["trial"].nunique().to_dict())
    else:
        no_data(left, "no footprint measured: no completed trial")
    left.set(xlabel="", ylabel=f"{unit} per trial", title="bucket by Milvus prefix"
             + (f" (empty: {', '.join(empty)})" if empty and backends else ""))
    right.set(xlabel="", title="bucket vs store's disk")
    fig.suptitle("Storage at the end of each trial, no forced GC: bar = mean of completed trials, dot = one trial")
    return save_figure(fig, figures_dir, "footprint")
