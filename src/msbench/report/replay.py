"""The replay section: Milvus's own S3 requests, replayed against each store alone.

Its input is a replay run read back (:class:`msbench.replay.record.ReplayRun`) and, for the side by
side with the study, the study's own comparison rows (``stats.compare`` output over its headline
family) as a plain DataFrame; nothing here reads the study's run type. The statistics are the
study's (:mod:`msbench.analysis.stats`): a 95% Student t interval per phase and store, and ratios to
the baseline with Fieller intervals, claimed under the same rule (Holm-adjusted p below 0.05 and the
interval excluding 1), the Holm family being one store's phases.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from msbench.analysis import stats
from msbench.replay import fidelity
from msbench.replay.engine import LATE_TOLERANCE_S
from msbench.replay.record import ReplayRun
from msbench.report.comparisons import ALPHA, N_RESAMPLES, SEED, no_ratio_ci, ratio_words
from msbench.report.figures import STORE_HUES, save_figure, styled
from msbench.report.page import interval, noted, num, p_value, pct, with_ci

# the study's timed metric of each phase a trace has ("through Milvus"); phases without one show none
STUDY_METRIC = {"insert": "insert_rows_per_s", "flush": "flush_s", "index": "index_build_s",
                "load_first": "load_first_s", "load_warm": "load_warm_s", "load_cold": "load_cold_s",
                "search": "search_latency_mean_ms"}
WHAT = {"replay_s": "replay time: the phase's requests issued as fast as the recorded order allows (closed loop), "
                    "from the phase start to the last response",
        "busy_s": "busy time: seconds with at least one of the phase's requests open"}
CLAIMED = ("better", "worse")


def _role(run: ReplayRun, backend: str) -> str:
    stores = run.manifest.get("stores", {})
    if backend in run.handicapped():
        return "positive control (held to a CPU quota)"
    if stores.get(backend, backend) != backend:
        return "A/A control (the same store again)"
    return "store"


def phase_time_table(run: ReplayRun, metric: str = "replay_s") -> pd.DataFrame:
    """Per phase and store: n trials, mean, the 95% interval of the mean, CV."""
    tidy = run.metric(metric)
    columns = ["phase", "backend", "role", "n (trials)", "mean (s)", "95% CI of mean (s)", "CV (sd/mean)", "CI method"]
    if tidy.empty:
        return noted(pd.DataFrame(columns=columns), "No completed replay trial.")
    summary = stats.summarize(tidy)
    order = {p: i for i, p in enumerate(run.phases)}
    summary = summary.assign(o=summary["metric"].map(order)).sort_values(["o", "backend"], kind="stable")
    table = pd.DataFrame({
        "phase": summary["metric"], "backend": summary["backend"], "role": summary["backend"].map(lambda b: _role(run, b)),
        "n (trials)": summary["n"], "mean (s)": summary["mean"].map(num),
        "95% CI of mean (s)": [interval(lo, hi, "needs n ≥ 2") for lo, hi in zip(summary["ci_low"], summary["ci_high"])],
        "CV (sd/mean)": summary["cv"].map(pct), "CI method": summary["ci_method"].replace("", "–")})
    return noted(table.reset_index(drop=True),
                 f"Per phase, the {WHAT[metric]}, per store alone (no Milvus), completed trials only. 95% CI of "
                 f"the mean: Student t over trials (a trial is one fresh store replaying the trace). Pacing: "
                 f"{run.manifest['pacing']}; {_repeats(run)}.")


def _repeats(run: ReplayRun) -> str:
    repeat = run.manifest.get("repeat", 1)
    return ("each phase replayed once per trial" if repeat == 1 else
            f"each phase replayed {repeat} times in a row per trial, its figure the median (a phase that deletes once)")


def compare(run: ReplayRun, metric: str = "replay_s", baseline: str | None = None) -> pd.DataFrame:
    """stats.compare of every store against the baseline, one metric per phase (Holm over a store's phases)."""
    tidy = run.metric(metric)
    baseline = baseline or run.baseline
    if tidy.empty or baseline not in set(tidy["backend"]):
        return pd.DataFrame(columns=stats.COMPARE_COLUMNS)
    return stats.compare(tidy, baseline, alpha=ALPHA, n_resamples=N_RESAMPLES, seed=SEED)


def _verdict_words(row: pd.Series) -> str:
    if row["verdict"] in CLAIMED:
        return f"{ratio_words(row)}: {row['verdict']}"
    if row["verdict"].startswith("no detectable"):
        return (f"{row['verdict']} (ratio {num(row['ratio_mean'])}, 95% CI "
                f"{interval(row['ratio_mean_low'], row['ratio_mean_high'], no_ratio_ci(row))})")
    return row["verdict"]


def comparison_table(run: ReplayRun, metric: str = "replay_s", baseline: str | None = None) -> pd.DataFrame:
    """Every store (and control) against the baseline, phase by phase, with the study's claim rule."""
    raw = compare(run, metric, baseline)
    order = {p: i for i, p in enumerate(run.phases)}
    raw = raw.assign(o=raw["metric"].map(order)).sort_values(["backend", "o"], kind="stable")
    table = pd.DataFrame({
        "backend": raw["backend"], "role": raw["backend"].map(lambda b: _role(run, b)),
        "compared with": raw["baseline"], "phase": raw["metric"],
        "verdict": [_verdict_words(row) for _, row in raw.iterrows()],
        "n (trials, backend / other)": [f"{a} / {b}" for a, b in zip(raw["n_backend"], raw["n_baseline"])],
        "ratio of means [95% CI]": [with_ci(r["ratio_mean"], r["ratio_mean_low"], r["ratio_mean_high"], no_ratio_ci(r))
                                    for _, r in raw.iterrows()],
        "CI method": raw["ratio_method"].replace("", "–"),
        "p (chosen test, Holm-adjusted)": raw["p_holm"].map(p_value)})
    table.attrs["bold"] = {"verdict": ""}
    return noted(table.reset_index(drop=True),
                 f"The {WHAT[metric]}: each store against {baseline or run.baseline}, ratios backend / other with "
                 f"Fieller 95% intervals (paired by round where narrower, each then at a stricter level so the chosen "
                 f"one keeps 95%). A difference is claimed when the Holm-adjusted p (over this store's phases) is "
                 f"below {ALPHA} and the interval excludes 1: the study's rule. The positive control must be claimed "
                 f"slower on every phase with traffic; the A/A control must not be claimed different.")


def latency_table(run: ReplayRun) -> pd.DataFrame:
    """Per store, phase and operation: latency percentiles of the replayed requests (pooled over trials)."""
    done = run.requests[(run.requests["error"] == "") & run.requests["latency_ms"].notna()]
    columns = ["backend", "phase", "operation", "requests (n)", "p50 (ms) [95% CI]", "p95 (ms) [95% CI]",
               "p99 (ms) [95% CI]"]
    if done.empty:
        return noted(pd.DataFrame(columns=columns), "No replayed request completed.")
    spread = stats.latency_spread(done, by=["backend", "phase", "operation"], n_resamples=1000, seed=SEED)
    order = {p: i for i, p in enumerate(run.phases)}
    spread = spread.assign(o=spread["phase"].map(order)).sort_values(["o", "operation", "backend"], kind="stable")
    table = spread[["backend", "phase", "operation", "n_queries"]].set_axis(columns[:4], axis=1)
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        table[f"{label} (ms) [95% CI]"] = [with_ci(*v, "< 10 requests beyond the quantile") for v in
                                           zip(spread[key], spread[f"{key}_low"], spread[f"{key}_high"])]
    return noted(table.reset_index(drop=True),
                 "Latency of each replayed request as the client measured it (request sent to last byte read), "
                 "failed requests left out, all trials of a store pooled; percentile-bootstrap intervals over "
                 "requests (1000 resamples), which leave out trial-to-trial variation.")


def errors_table(run: ReplayRun) -> pd.DataFrame:
    """Per store and phase: requests, errors (a transport failure, or a status of another class than
    recorded), late starts (recorded pacing) and the first error seen."""
    req = run.requests
    rows = []
    for (backend, phase), group in req.groupby(["backend", "phase"], sort=False):
        errors = group[group["error"] != ""]
        rows.append({"backend": backend, "phase": phase, "trials": group["trial"].nunique(), "requests": len(group),
                     "errors": len(errors),
                     "late starts": int((group["late_s"] > LATE_TOLERANCE_S).sum())
                     if run.manifest["pacing"] == "recorded" else "– (closed loop)",
                     "first error": errors["error"].iloc[0] if len(errors) else ""})
    order = {p: i for i, p in enumerate(run.phases)}
    table = pd.DataFrame(rows, columns=["backend", "phase", "trials", "requests", "errors", "late starts",
                                        "first error"])
    table = table.assign(o=table["phase"].map(order)).sort_values(["backend", "o"], kind="stable").drop(columns="o")
    return noted(table.reset_index(drop=True),
                 f"Completed trials only. An error is a request that failed in transport or got a status of another "
                 f"class than the recording's (a 404 recorded and replayed is no error). A late start (recorded "
                 f"pacing only) began more than {LATE_TOLERANCE_S * 1000:g} ms after its recorded offset.")


def fidelity_table(run: ReplayRun, factor: float = fidelity.BUSY_FACTOR) -> pd.DataFrame:
    """Recorded against replayed, per phase, for each trace on the store it was recorded on."""
    raw = fidelity.run_fidelity(run, factor)

    def span(lo, hi) -> str:
        return num(lo) if lo == hi else f"{num(lo)}–{num(hi)}"

    table = pd.DataFrame({
        "trace": raw["trace"], "store": raw["backend"], "phase": raw["phase"], "trials": raw["trials"],
        "requests, recorded / replayed": [f"{r} / {span(lo, hi)}" for r, lo, hi in
                                          zip(raw["requests_recorded"], raw["requests_replayed_min"],
                                              raw["requests_replayed_max"])],
        "object bytes read, recorded / replayed": [f"{num(r)} / {span(lo, hi)}" for r, lo, hi in
                                                   zip(raw["object_bytes_read_recorded"],
                                                       raw["object_bytes_read_replayed_min"],
                                                       raw["object_bytes_read_replayed_max"])],
        "object bytes written, recorded / replayed": [f"{num(r)} / {span(lo, hi)}" for r, lo, hi in
                                                      zip(raw["object_bytes_written_recorded"],
                                                          raw["object_bytes_written_replayed_min"],
                                                          raw["object_bytes_written_replayed_max"])],
        "counts and bytes": raw["exact"].map({True: "exact", False: "DIFFER"}),
        "busy s, recorded / replayed (mean)": [f"{num(a)} / {num(b)}" for a, b in
                                               zip(raw["busy_s_recorded"], raw["busy_s_replayed"])],
        "busy ratio (mean; trials' range)": [f"{num(r)} ({num(lo)}–{num(hi)})" for r, lo, hi in
                                             zip(raw["busy_ratio"], raw["busy_ratio_min"], raw["busy_ratio_max"])],
        "measured on": raw["busy_measured"],
        f"within a factor {factor:g}": raw["busy_within_tolerance"].map({True: "yes", False: "NO"})})
    return noted(table, f"Fidelity: each trace replayed on the store it was recorded on. Request counts and object "
                        f"bytes (GET bodies read, PUT and part bodies written) must match exactly in every trial; the "
                        f"time the store was busy (seconds with a request open, measured on the wire by the same "
                        f"tcpdump parser as the recording where the replay was captured, each request from its last "
                        f"byte so the client's sending pace is left out) within a factor {factor:g} of the recorded on "
                        f"average. Expect the replayed store to be less busy: Milvus reads large responses slower than "
                        f"the replay's client, and under Milvus the store shared the machine with it.")


def side_by_side(run: ReplayRun, study: pd.DataFrame, metric: str = "replay_s") -> pd.DataFrame:
    """"Through Milvus" against "the store alone, Milvus's requests": per phase and store, the study's
    verdict on its timed metric of that phase (``study``: the study's stats.compare rows, its own Holm
    family) beside the replay's. A claim the replay makes where the study made none is marked."""
    replay = compare(run, metric)
    lookup = {(r["backend"], r["metric"]): r for _, r in study.iterrows()}
    rows = []
    for _, row in replay.iterrows():
        phase, backend = row["metric"], row["backend"]
        mine = lookup.get((backend, STUDY_METRIC.get(phase)))
        rows.append({"phase": phase, "backend": backend, "role": _role(run, backend),
                     "through Milvus (study)": f"{mine['metric']}: {_verdict_words(mine)}" if mine is not None
                     else "– (the study has no timed metric of this phase, or this store did not run in it)",
                     "the store alone, Milvus's requests (replay)": _verdict_words(row),
                     "seen only by the replay": "yes" if row["verdict"] in CLAIMED and
                     (mine is None or mine["verdict"] not in CLAIMED) else ""})
    order = {p: i for i, p in enumerate(run.phases)}
    table = pd.DataFrame(rows, columns=["phase", "backend", "role", "through Milvus (study)",
                                        "the store alone, Milvus's requests (replay)", "seen only by the replay"])
    table = table.assign(o=table["phase"].map(order)).sort_values(["o", "backend"], kind="stable").drop(columns="o")
    return noted(table.reset_index(drop=True),
                 "Each phase's verdict through Milvus (the study: the phase's own time, Milvus's work included) beside "
                 "the replay's (only the store's requests). Both use the same claim rule, each over its own Holm family. "
                 "'Seen only by the replay' marks a difference the store makes to Milvus's requests that the "
                 "Milvus phase did not show at this n.")


def _colors(run: ReplayRun) -> dict[str, tuple]:
    """A store's hue as in the study's figures; its controls lighter (A/A) or darker (handicapped)."""
    hues = sns.color_palette("colorblind", 10)
    stores = run.manifest.get("stores", {})
    spare = iter(i for i in range(10) if i not in STORE_HUES.values() and i != 7)
    colors = {}
    for backend in run.backends:
        kind = stores.get(backend, backend)
        base = np.array(hues[STORE_HUES[kind]] if kind in STORE_HUES else hues[next(spare, 9)])
        if backend in run.handicapped():
            base = base * 0.45
        elif kind != backend:
            base = base + (1 - base) * 0.5
        colors[backend] = tuple(float(c) for c in base)
    return colors


@styled
def fig_phase_times(run: ReplayRun, figures_dir: str | Path, metric: str = "replay_s") -> Path:
    """One panel per phase: each store's trials (dots) and mean with its 95% CI (bar)."""
    tidy = run.metric(metric)
    phases = [p for p in run.phases if p in set(tidy["phase"])] or ["(none)"]
    cols = min(3, len(phases))
    fig = Figure(figsize=(4.2 * cols, 3.0 * -(-len(phases) // cols) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-len(phases) // cols), cols, squeeze=False)).ravel()
    colors = _colors(run)
    summary = stats.summarize(tidy) if len(tidy) else pd.DataFrame(columns=stats.SUMMARY_COLUMNS)
    for ax, phase in zip(axes, phases):
        mine = summary[summary["metric"] == phase]
        for y, backend in enumerate(run.backends):
            s = mine[mine["backend"] == backend]
            dots = tidy[(tidy["phase"] == phase) & (tidy["backend"] == backend)]["value"]
            ax.scatter(dots, [y] * len(dots), s=14, color=colors[backend], alpha=0.6, zorder=3)
            if len(s) and np.isfinite(s["ci_low"].iloc[0]):
                ax.errorbar(s["mean"].iloc[0], y, xerr=[[s["mean"].iloc[0] - s["ci_low"].iloc[0]],
                                                        [s["ci_high"].iloc[0] - s["mean"].iloc[0]]],
                            fmt="|", color=colors[backend], capsize=4, markersize=12, zorder=4)
        ax.set_yticks(range(len(run.backends)), run.backends)
        ax.invert_yaxis()
        ax.set_title(phase)
        ax.set_xlabel(f"{metric} (s)")
    for ax in axes[len(phases):]:
        ax.set_visible(False)
    fig.suptitle(f"Milvus's requests replayed on each store alone: {metric} per phase (dots: trials; "
                 f"bar: mean, 95% CI)")
    return save_figure(fig, figures_dir, f"replay_{metric}")


@styled
def fig_fidelity(run: ReplayRun, figures_dir: str | Path) -> Path:
    """Recorded against replayed busy time per phase, for each trace on the store it was recorded on."""
    raw = fidelity.run_fidelity(run)
    fig = Figure(figsize=(7.5, 3.2), layout="constrained")
    ax = fig.subplots()
    if raw.empty:
        ax.text(0.5, 0.5, "no trace was replayed on the store it was recorded on", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_axis_off()
        return save_figure(fig, figures_dir, "replay_fidelity")
    labels = [f"{p}\n({t})" if raw["trace"].nunique() > 1 else p for p, t in zip(raw["phase"], raw["trace"])]
    x = np.arange(len(raw))
    ax.bar(x - 0.2, raw["busy_s_recorded"], 0.4, label="recorded (through Milvus)", color="0.6")
    err = [raw["busy_s_replayed"] - raw["busy_ratio_min"] * raw["busy_s_recorded"],
           raw["busy_ratio_max"] * raw["busy_s_recorded"] - raw["busy_s_replayed"]]
    ax.bar(x + 0.2, raw["busy_s_replayed"], 0.4, yerr=np.clip(np.array(err, float), 0, None), capsize=3,
           label="replayed (mean; trials' range)", color=sns.color_palette("colorblind", 10)[0])
    ax.set_xticks(x, labels)
    ax.set_ylabel("busy time (s)")
    ax.legend(frameon=False)
    ax.set_title("Fidelity: the store's busy time per phase, recorded vs replayed on the same store")
    return save_figure(fig, figures_dir, "replay_fidelity")
