"""Plain sentences on everything that makes a run weaker than planned or unlike the published
study: failed and missing trials, cold loads that were not cold, retried loads, traffic the
counters could not see, small n."""
from __future__ import annotations

import pandas as pd

from msbench.report.values import Run, all_backends
from msbench.report.page import finite, first_line
from msbench.report.published import setup_differences


def _trial_notes(run: Run, column: str) -> dict[tuple[str, int], str]:
    """(backend, trial) -> the trials.csv ``column`` where a trial wrote one (older runs lack it)."""
    trials = run.trials
    if column not in trials:
        return {}
    return {(b, int(t)): " ".join(n.split()) for b, t, n in zip(trials["backend"], trials["trial"], trials[column])
            if isinstance(n, str) and n.strip()}


def _load_retry_deviations(run: Run) -> list[str]:
    """One line per completed trial whose load() was refused before a try succeeded: its load
    times are those of the successful tries, after the failed ones."""
    data = run.completed("results")
    tries = data[data["metric"].isin(["load_retries", "load_failed_attempts"]) & (data["value"] > 0)]
    took = data[data["metric"] == "load_failed_attempts_s"].set_index(["backend", "trial", "phase"])["value"]
    errors = _trial_notes(run, "load_failures")
    out = []
    for (backend, trial), group in tries.groupby(["backend", "trial"]):
        parts = []
        for phase, n in group.groupby("phase", sort=False)["value"].max().items():
            seconds = took.get((backend, trial, phase))
            parts.append(f"{phase} needed {n:.0f} retr{'y' if n == 1 else 'ies'}"
                         + (f" (failed attempts took {seconds:.1f} s)" if finite(seconds) else ""))
        why = errors.get((backend, int(trial)))
        out.append(f"{backend} trial {trial}: {'; '.join(parts)}; its load times are the successful tries'"
                   + (f". Failed attempts: {first_line(why, 600)}." if why else "."))
    return out


def _unseen_bytes_deviations(run: Run) -> list[str]:
    """One line per backend whose TCP counter could not see the store's traffic (NaN bytes served)."""
    data = run.completed("results")
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
    results = run.results
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
    trials = run.trials
    failed = trials[trials["status"] != "ok"] if len(trials) else trials
    for t in failed.itertuples():
        out.append(f"{t.backend} trial {t.trial} (seq {t.seq}) failed in phase '{t.failed_phase}': "
                   f"{first_line(t.error) or 'no cause recorded'}. It is left out of every statistic.")
    planned = pd.DataFrame([vars(t) for t in run.manifest.order], columns=["backend", "trial"])
    ok = trials[trials["status"] == "ok"] if len(trials) else trials
    counts = ok["backend"].value_counts() if len(ok) else pd.Series(dtype=int)
    for backend in all_backends(run):
        n_planned = int((planned["backend"] == backend).sum())
        n_recorded = int((trials["backend"] == backend).sum()) if len(trials) else 0
        if n_recorded < n_planned:
            out.append(f"{backend}: {n_planned - n_recorded} of {n_planned} planned trials have no record "
                       "(skipped, or the run was interrupted).")
        if not counts.get(backend, 0):
            out.append(f"{backend} was requested but completed no trial: it appears in no statistic.")
    for backend, why in run.manifest.skipped.items():
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
            for what, here, there in setup_differences(run)]
    ran = set(counts.index)
    if not {"rustfs", "minio"} <= {run.manifest.stores.get(b, b) for b in ran}:
        out.append("RustFS and MinIO did not both complete a trial here, so the published RustFS-vs-MinIO "
                   "claims can only be set beside the figures of the stores that did run.")
    return out
