"""The replay section: Milvus's own S3 requests, replayed against each store alone.

Its input is a replay run read back (:class:`msbench.replay.record.ReplayRun`) and, for the side by
side with the study, the study's run (``results.Run``), whose claims are its report's own
(:func:`msbench.report.comparisons.claims`). The statistics are the study's (:mod:`msbench.analysis.stats`):
a 95% Student t interval per phase and store, and one claim rule: the ratio of geometric means on the
log scale, paired by round, read off intervals that hold together over a declared family (the real
stores against the baseline and each other, one comparison per phase), in the same four words
(better / worse / equivalent within ±X / not detectable). As in the study, the controls' claims are a
family of their own (each twin against the baseline on every phase).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from msbench.analysis import stats
from msbench.metrics import Metric, compared
from msbench.replay import fidelity
from msbench.replay.engine import LATE_TOLERANCE_S
from msbench.replay.record import ReplayRun
from msbench.report import comparisons
from msbench.report.comparisons import CLAIMED, N_RESAMPLES, SEED, interval_text, ratio_words, verdict_words
from msbench.report.figures import backend_colors, save_figure, styled
from msbench.report.page import interval, noted, num, p_value, pct, with_ci
from msbench.results import Run

WHAT = {"replay_s": "replay time: the phase's requests issued as fast as the recorded order allows (closed loop), "
                    "from the phase start to the last response",
        "busy_s": "busy time: seconds with at least one of the phase's requests open"}
SIZES = ("bytes", "fraction")   # units of a phase's metrics that are not its time (or rate)


def _role(run: ReplayRun, backend: str) -> str:
    if backend in run.handicapped():
        return "positive control (held to a CPU quota)"
    if run.manifest.stores.get(backend, backend) != backend:
        return "A/A control (the same store again)"
    return "store"


def _ordered(run: ReplayRun, frame: pd.DataFrame, keys: list[str], phase: str = "phase") -> pd.DataFrame:
    """``frame`` sorted by ``keys``, its phase column (``phase``) in the order the replay ran the phases."""
    order = {p: i for i, p in enumerate(run.phases)}
    return frame.sort_values(keys, key=lambda c: c.map(order) if c.name == phase else c, kind="stable")


def phase_time_table(run: ReplayRun, metric: str = "replay_s") -> pd.DataFrame:
    """Per phase and store: n trials, mean, the 95% interval of the mean, CV."""
    tidy = run.metric(metric)
    columns = ["phase", "backend", "role", "n (trials)", "mean (s)", "95% CI of mean (s)", "CV (sd/mean)", "CI method"]
    if tidy.empty:
        return noted(pd.DataFrame(columns=columns), "No completed replay trial.")
    summary = _ordered(run, stats.summarize(tidy), ["metric", "backend"], phase="metric")
    table = pd.DataFrame({
        "phase": summary["metric"], "backend": summary["backend"], "role": summary["backend"].map(lambda b: _role(run, b)),
        "n (trials)": summary["n"], "mean (s)": summary["mean"].map(num),
        "95% CI of mean (s)": [interval(lo, hi, "needs n ≥ 2") for lo, hi in zip(summary["ci_low"], summary["ci_high"])],
        "CV (sd/mean)": summary["cv"].map(pct), "CI method": summary["ci_method"].replace("", "–")})
    return noted(table.reset_index(drop=True),
                 f"Per phase, the {WHAT[metric]}, per store alone (no Milvus), completed trials only. 95% CI of "
                 f"the mean: Student t over trials (a trial is one fresh store replaying the trace). How: {_how(run)}.")


def _how(run: ReplayRun) -> str:
    """How the phases were replayed: pacing, repetitions, CPU beside the store."""
    repeat = run.manifest.repeat
    repeats = ("each phase replayed once per trial" if repeat == 1 else
               f"each phase replayed {repeat} times in a row per trial, its figure the median (a phase that "
               f"deletes once; a later repetition begins again the uploads the phase completes)")
    beside = ("beside the store, burners held the CPU the recording's Milvus and client used in each phase (its "
              "mean over the phase)" if run.manifest.pressure == "recorded" else "the store alone on the host")
    return f"pacing {run.manifest.pacing}; {repeats}; {beside}"


@dataclass(frozen=True)
class ReplayClaims:
    """What the replay claims on one per-phase metric (a "metric" of a family is a phase), as the study's
    report does: the stores' ``family`` (every real store against the baseline and each other; None with
    one store) and each control's own (``controls``: each twin against the baseline, the handicapped ones
    one-sided, comparisons.twin_family), each controlled at 95% on its own; ``rows``: their stats.compare
    rows, the stores' first."""

    family: stats.Family | None
    controls: tuple[stats.Family, ...]
    rows: pd.DataFrame


def claims(run: ReplayRun, metric: str = "replay_s") -> ReplayClaims | None:
    """The replay's claims on ``metric``, on every phase replayed (each had traffic); None when the
    baseline completed no trial."""
    tidy = run.metric(metric)
    ran = set(tidy["backend"])
    baseline = run.manifest.baseline
    if baseline not in ran:
        return None
    phases = tuple(p for p in run.phases if p in set(tidy["metric"]))
    stores, twins = sorted(ran - run.controls - {baseline}), sorted(ran & run.controls)
    family = stats.Family(baseline, (baseline, *stores), phases) if stores else None
    controls = tuple(comparisons.twin_family(baseline, twin, phases, twin in run.handicapped()) for twin in twins)
    frames = [stats.compare(tidy[tidy["backend"].isin(f.stores)], f, n_resamples=N_RESAMPLES, seed=SEED)
              for f in (family, *controls) if f is not None]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=stats.COMPARE_COLUMNS)
    return ReplayClaims(family, controls, rows)


def _statement(family: stats.Family) -> str:
    """The family in one sentence, in the words of this section: its metrics are phases."""
    return family.statement().replace("primary metric", "phase")


COMPARISON_COLUMNS = ["backend", "role", "compared with", "phase", "verdict", "n (trials, backend / other)",
                      "ratio of geometric means [95% CI]", "claim interval [family level]", "method",
                      "p (family-adjusted): difference"]


def comparison_table(run: ReplayRun, metric: str = "replay_s") -> pd.DataFrame:
    """Every store against the baseline and each other, then each control against its store, phase by
    phase, under the study's claim rule."""
    found = claims(run, metric)
    if found is None or found.rows.empty:
        return noted(pd.DataFrame(columns=COMPARISON_COLUMNS), "No comparison: the baseline and another store or "
                                                                "control must each complete a trial.")
    raw = _ordered(run, found.rows, ["metric"], phase="metric")
    table = pd.DataFrame({
        "backend": raw["backend"], "role": raw["backend"].map(lambda b: _role(run, b)),
        "compared with": raw["other"], "phase": raw["metric"],
        "verdict": [verdict_words(row) for _, row in raw.iterrows()],
        "n (trials, backend / other)": [f"{a} / {b}" for a, b in zip(raw["n_backend"], raw["n_other"])],
        "ratio of geometric means [95% CI]": [interval_text(row) for _, row in raw.iterrows()],
        "claim interval [family level]": [interval_text(row, "claim_low", "claim_high") for _, row in raw.iterrows()],
        "method": raw["method"].replace("", "–"), "p (family-adjusted): difference": raw["p_claim"].map(p_value)},
        columns=COMPARISON_COLUMNS)
    families = " ".join(f"{who}: {_statement(f)}" for who, f in (
        ("The stores", found.family), *((f"The control {f.stores[1]}", f) for f in found.controls)) if f is not None)
    return noted(table.reset_index(drop=True),
                 f"The {WHAT[metric]}, ratios backend / other of geometric means, first the stores', then the "
                 f"controls' (which test the method, not the stores: each a family of its own). {families} A difference "
                 f"is claimed (better / worse) when the claim interval excludes ±1%; 'equivalent within "
                 f"±{stats.EQUIVALENCE:.0%}' when it lies inside that margin; else 'not detectable'. The positive "
                 f"control must be claimed worse on every phase with traffic; the A/A control must not be claimed "
                 f"different.")


def latency_table(run: ReplayRun) -> pd.DataFrame:
    """Per store, phase and operation: latency percentiles of the replayed requests (pooled over trials)."""
    done = run.requests[(run.requests["error"] == "") & run.requests["latency_ms"].notna()]
    columns = ["backend", "phase", "operation", "requests (n)", "p50 (ms) [95% CI]", "p95 (ms) [95% CI]",
               "p99 (ms) [95% CI]"]
    if done.empty:
        return noted(pd.DataFrame(columns=columns), "No replayed request completed.")
    spread = stats.latency_spread(done, by=["backend", "phase", "operation"], n_resamples=1000, seed=SEED)
    spread = _ordered(run, spread, ["phase", "operation", "backend"])
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
                     if run.manifest.pacing == "recorded" else "– (closed loop)",
                     "first error": errors["error"].iloc[0] if len(errors) else ""})
    table = _ordered(run, pd.DataFrame(rows, columns=["backend", "phase", "trials", "requests", "errors", "late starts",
                                                      "first error"]), ["backend", "phase"])
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
        "CPU beside the store (cores), recorded / held": [
            "–" if pd.isna(held) else f"{num(rec)} / {num(held)}"
            for rec, held in zip(raw["beside_cores_recorded"], raw["beside_cores_held"])],
        f"within a factor {factor:g}": raw["busy_within_tolerance"].map({True: "yes", False: "NO"})})
    return noted(table, f"Fidelity: each trace replayed on the store it was recorded on. Request counts and object "
                        f"bytes (GET bodies read, PUT and part bodies written) must match exactly in every trial; the "
                        f"time the store was busy (seconds with a request open, measured on the wire by the same "
                        f"tcpdump parser as the recording where the replay was captured, each request from its last "
                        f"byte so the client's sending pace is left out) within a factor {factor:g} of the recorded on "
                        f"average. How: {_how(run)}. " + (
                            "The CPU held beside the store is what the burners got (their CPU seconds over the "
                            "phase), next to what the recording's Milvus and client used. " if
                            run.manifest.pressure == "recorded" else
                            "Expect the replayed store to be less busy: Milvus reads large responses slower than the "
                            "replay's client, and under Milvus the store shared the machine with it (`--pressure "
                            "recorded` gives it that company). "))


def study_metric(study: Run, phase: str) -> Metric | None:
    """The study's timed figure of a phase: the first of its compared metrics in the catalogue recorded in
    that phase that is a time or a rate (not a size)."""
    return next((m for m in compared(study.manifest.params) if m.phase == phase and m.unit not in SIZES), None)


def study_claims(study: Run) -> pd.DataFrame:
    """The study's verdicts against its baseline, as its report makes them (report.comparisons): the stores'
    family's rows, and the controls' against their store in their own family."""
    found = comparisons.claims(study)
    rows = [found.rows[found.rows["other"] == found.family.baseline]] if found else []
    rows += [frame for c in comparisons.control_comparisons(study) for frame in (c.aa_rows, c.slow_rows)]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=stats.COMPARE_COLUMNS)


SIDE_BY_SIDE_COLUMNS = ["phase", "backend", "role", "through Milvus (study)",
                        "the store alone, Milvus's requests (replay)", "seen only by the replay"]


def side_by_side(run: ReplayRun, study: Run, metric: str = "replay_s") -> pd.DataFrame:
    """"Through Milvus" against "the store alone, Milvus's requests": per phase and store, the study's
    verdict on its timed figure of that phase (:func:`study_claims`) beside the replay's, each against its
    own baseline under its own family. A claim the replay makes where the study made none is marked."""
    found = claims(run, metric)
    rows = found.rows if found else pd.DataFrame(columns=stats.COMPARE_COLUMNS)
    replay = rows[rows["other"] == run.manifest.baseline]
    through_milvus = study_claims(study)
    lookup = {(r["backend"], r["metric"]): r for _, r in through_milvus.iterrows()}
    rows = []
    for _, row in replay.iterrows():
        phase, backend = row["metric"], row["backend"]
        figure = study_metric(study, phase)
        theirs = lookup.get((backend, figure.name)) if figure else None
        rows.append({"phase": phase, "backend": backend, "role": _role(run, backend),
                     "through Milvus (study)": f"{figure.name}: {verdict_words(theirs)}" if theirs is not None
                     else "– (the study has no timed figure of this phase, or this store did not complete it)",
                     "the store alone, Milvus's requests (replay)": verdict_words(row),
                     "seen only by the replay": "yes" if row["verdict"] in CLAIMED and
                     (theirs is None or theirs["verdict"] not in CLAIMED) else ""})
    table = _ordered(run, pd.DataFrame(rows, columns=SIDE_BY_SIDE_COLUMNS), ["phase", "backend"])
    return noted(table.reset_index(drop=True),
                 f"Each phase's verdict through Milvus (the study {study.manifest.run}: the phase's own time, Milvus's "
                 f"work included) beside the replay's (only the store's requests), each store against the baseline. "
                 f"Both use the same claim rule, each over its own families (the stores': the study's primary "
                 f"metrics, here the phases; the controls': the study's control metrics, here the phases): a study "
                 f"metric outside them is shown without a claim. 'Seen only by the replay' "
                 f"marks a difference the store makes to Milvus's requests that the Milvus phase did not show at "
                 f"this n.")


@styled
def fig_phase_times(run: ReplayRun, figures_dir: str | Path, metric: str = "replay_s") -> Path:
    """One panel per phase: each store's trials (dots) and mean with its 95% CI (bar)."""
    tidy = run.metric(metric)
    phases = [p for p in run.phases if p in set(tidy["phase"])] or ["(none)"]
    cols = min(3, len(phases))
    fig = Figure(figsize=(4.2 * cols, 3.0 * -(-len(phases) // cols) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-len(phases) // cols), cols, squeeze=False)).ravel()
    colors = backend_colors(run)
    summary = stats.summarize(tidy) if len(tidy) else pd.DataFrame(columns=stats.SUMMARY_COLUMNS)
    for ax, phase in zip(axes, phases):
        mine = summary[summary["metric"] == phase]
        for y, backend in enumerate(run.manifest.backends):
            s = mine[mine["backend"] == backend]
            dots = tidy[(tidy["phase"] == phase) & (tidy["backend"] == backend)]["value"]
            ax.scatter(dots, [y] * len(dots), s=14, color=colors[backend], alpha=0.6, zorder=3)
            if len(s) and np.isfinite(s["ci_low"].iloc[0]):
                ax.errorbar(s["mean"].iloc[0], y, xerr=[[s["mean"].iloc[0] - s["ci_low"].iloc[0]],
                                                        [s["ci_high"].iloc[0] - s["mean"].iloc[0]]],
                            fmt="|", color=colors[backend], capsize=4, markersize=12, zorder=4)
        ax.set_yticks(range(len(run.manifest.backends)), run.manifest.backends)
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


# -- the section of the analysis notebook -----------------------------------------------------------

def summary(replay: ReplayRun | None) -> str:
    """The section's first words (Markdown): what was replayed on which stores, what the replay claims
    about the real stores, and whether its controls behaved."""
    if replay is None:
        return ("No replay run given: set the notebook parameter `replay_run` to a run of `msbench replay` "
                "(for instance of this study's traces, docs/replay.md) to see each store alone under Milvus's "
                "requests.")
    manifest = replay.manifest
    done = replay.trials[replay.trials["status"] == "ok"].groupby("backend").size()
    lines = [f"Replay run **{manifest.run}**: {len(manifest.traces)} trace(s) "
             f"({', '.join(t.name for t in manifest.traces)}); {_how(replay)}; "
             f"completed trials: {', '.join(f'{b} {done.get(b, 0)}' for b in replay.manifest.backends)}."]
    found = claims(replay)
    if found is None:
        return " ".join(lines + [f"The baseline {replay.manifest.baseline} completed no trial: nothing is compared."])
    rows = found.rows
    if found.family is not None:
        stores = rows[~rows["backend"].isin(replay.controls) & rows["verdict"].isin(CLAIMED)]
        lines += [_statement(found.family), "Claimed between the stores: " + (
            "; ".join(f"{ratio_words(r)} in {r['metric']}: {r['verdict']}" for _, r in stores.iterrows()) + "."
            if len(stores) else "nothing.")]
    if found.controls:
        lines.append(f"Each control's claims are a family of its own (the twin against {replay.manifest.baseline} "
                     "on every phase; the positive control one-sided, only 'worse' claimed, as a CPU quota cannot "
                     f"speed a store up), each at most {1 - found.controls[0].confidence:.0%} likely to hold a "
                     "false one.")
    for twin in (f.stores[1] for f in found.controls):
        verdicts = rows.loc[rows["backend"] == twin, "verdict"]
        if twin in replay.handicapped():
            throttled = replay.results[(replay.results["backend"] == twin) & (replay.results["name"] == "throttled_s")]
            bit = throttled[throttled["value"] > 0]["phase"].nunique()
            lines.append(f"The positive control {twin} is claimed worse in {(verdicts == 'worse').sum()} of "
                         f"{len(verdicts)} phases" + (f" (its CPU quota held it back in {bit} of them)."
                                                      if len(throttled) else "."))
        else:
            lines.append(f"The A/A control {twin} is claimed different in {verdicts.isin(CLAIMED).sum()} of "
                         f"{len(verdicts)} phases (any would be a false positive).")
    return " ".join(lines)


def tables(replay: ReplayRun | None, study: Run) -> list[pd.DataFrame]:
    """The section's tables in reading order (none without a replay run): times, claims, the side by
    side with the study, errors, fidelity, latencies."""
    if replay is None:
        return []
    return [phase_time_table(replay), comparison_table(replay), side_by_side(replay, study), errors_table(replay),
            fidelity_table(replay), latency_table(replay)]


def figures(replay: ReplayRun | None, figures_dir: str | Path) -> list[Path]:
    """The section's figures (none without a replay run): phase times per store, and fidelity."""
    if replay is None:
        return []
    return [fig_phase_times(replay, figures_dir), fig_fidelity(replay, figures_dir)]
