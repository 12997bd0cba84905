"""Can this store back Milvus? The conformance records (measure.conformance) as the report's tables:
one row per store with its verdict for Milvus 2.3.5 and 2.6 and the reasons, and the store x check
matrix. A store that fails a check Milvus 2.3.5 depends on is flagged (the run's Milvus)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from msbench.measure.conformance import (CHECKS, FAIL, MILVUS_235, MILVUS_26, PASS, TARGETS, StoreConformance,
                                         fitness, load)
from msbench.report.page import noted
from msbench.results import Run

FLAG = "NO"   # a store unfit for a Milvus: the cell starts so, and is set in bold


def conformance_table(records: list[StoreConformance] | list[dict] | Path | str) -> pd.DataFrame:
    """Per store: can it back Milvus 2.3.5, Milvus 2.6 (yes / NO), why not, what else failed (checks no
    Milvus depends on), and whether the check left anything in the store."""
    rows = []
    for record in load(records):
        verdicts = {t: fitness(record, t) for t in TARGETS}
        needed = {c.name for c in CHECKS if c.needed_by}
        others = [f"{c.name} {c.outcome}: {c.detail}" for c in record.checks
                  if c.outcome != PASS and c.name not in needed]
        passed = sum(c.outcome == PASS for c in record.checks)
        rows.append({
            "store": record.store,
            MILVUS_235: "yes" if verdicts[MILVUS_235].fit else FLAG,
            MILVUS_26: "yes" if verdicts[MILVUS_26].fit else FLAG,
            "checks passed": f"{passed} of {len(record.checks)}" if record.checks else "not checked",
            f"why not ({MILVUS_235})": "; ".join(verdicts[MILVUS_235].reasons),
            f"why not ({MILVUS_26})": "; ".join(r for r in verdicts[MILVUS_26].reasons
                                                 if r not in verdicts[MILVUS_235].reasons) or
                                       ("as for 2.3.5" if verdicts[MILVUS_235].reasons else ""),
            "other failures (no Milvus depends on them)": "; ".join(others),
            "left in the store": _left(record),
        })
    table = pd.DataFrame(rows, columns=["store", MILVUS_235, MILVUS_26, "checks passed", f"why not ({MILVUS_235})",
                                        f"why not ({MILVUS_26})", "other failures (no Milvus depends on them)",
                                        "left in the store"])
    table.attrs["bold"] = {MILVUS_235: FLAG, MILVUS_26: FLAG}
    return noted(table, "Can this store back Milvus? Real S3 requests against each store, run alone before its "
                        f"trials. {FLAG}: it failed a check that Milvus depends on (for 2.6: with Woodpecker as its WAL "
                        "and storage v2); the reason names the check, what in Milvus needs it, and what the store "
                        "answered. Which check each Milvus needs was read in its sources and in the clients its "
                        "binaries ship (minio-go v7.0.56, aws-sdk-cpp 1.9.234 in 2.3.5): see measure/conformance.py.")


def _left(record: StoreConformance) -> str:
    if record.error:
        return "–"
    if record.cleanup_error:
        return f"cleanup failed: {record.cleanup_error}"
    left = [f"{record.leftover_objects} objects" if record.leftover_objects else "",
            f"{record.leftover_uploads} open uploads" if record.leftover_uploads else "",
            "" if record.bucket_removed else "the check's bucket"]
    return ", ".join(x for x in left if x) or "nothing"


def check_matrix(records: list[StoreConformance] | list[dict] | Path | str) -> pd.DataFrame:
    """Store x check: pass (pass* with notes), FAIL, unsupported, or – (not run); the first row says which
    Milvus needs each check."""
    records = load(records)
    needs = {c.name: " + ".join(t.removeprefix("Milvus ") for t in TARGETS if t in c.needed_by) or "–" for c in CHECKS}
    rows = [{"store": "needed by Milvus", **needs}]
    for record in records:
        cells = {}
        for check in CHECKS:
            found = record.result(check.name)
            cells[check.name] = ("–" if found is None else
                                 found.outcome.upper() if found.outcome == FAIL else
                                 found.outcome + ("*" if found.notes else ""))
        rows.append({"store": record.store, **cells})
    table = pd.DataFrame(rows, columns=["store", *needs])
    table.attrs["bold"] = {name: FAIL.upper() for name in needs}
    return noted(table, "Each check on each store: pass, pass* (passed, with notes on what the store does "
                        "differently from S3 that no client here depends on), FAIL, unsupported (the store says it "
                        "does not implement it, or ignores a header that only adds verification), – (not run).")


def check_guide() -> pd.DataFrame:
    """What each check does and what in each Milvus needs it (empty: no Milvus depends on it)."""
    table = pd.DataFrame([{"check": c.name, "what it checks": c.what,
                           **{f"needed by {t}": c.needed_by.get(t, "") for t in TARGETS}} for c in CHECKS])
    return noted(table, "The checks, in the order they run. A check no Milvus depends on is run and shown "
                        "for other clients of the same store.")


def as_text(records: list[StoreConformance] | list[dict] | Path | str) -> str:
    """The check matrix (a check per line, a store per column), each store's verdict and reasons, and
    what each store answered where a check failed: what ``msbench stores check`` prints."""
    records = load(records)
    lines = [check_matrix(records).set_index("store").T.to_string(), ""]
    for row in conformance_table(records).to_dict("records"):
        lines.append(f"{row['store']}: {MILVUS_235} {row[MILVUS_235]}, {MILVUS_26} {row[MILVUS_26]} "
                     f"({row['checks passed']} passed; left in the store: {row['left in the store']})")
    for record in records:
        lines += [f"  {record.store} {c.name} {c.outcome}: {c.detail}" for c in record.checks if c.outcome != PASS]
        lines += [f"  {record.store} {c.name} note: {'; '.join(c.notes)}" for c in record.checks
                  if c.outcome == PASS and c.notes]
        if record.error:
            lines.append(f"  {record.store} not checked: {record.error}")
    return "\n".join(lines)


def run_conformance(run: Run) -> pd.DataFrame:
    """The run's own records (checked before its first timed trial; run.study.check_stores) as
    conformance_table, with the stores that were not checked and why."""
    checked = [r for r in run.manifest.conformance.values() if "skipped" not in r]
    table = conformance_table(checked)
    skipped = [f"{r['store']}: {r['skipped']}" for r in run.manifest.conformance.values() if "skipped" in r]
    if skipped or not run.manifest.conformance:
        table.attrs["note"] += " Not checked: " + ("; ".join(skipped) if skipped else "every store (a run made "
                                                   "before the check existed)") + "."
    return table


# A store that did not keep what Milvus wrote: a read failed, or its bytes differ from the listing or the ETag.
MISMATCHES = ("integrity_read_errors", "integrity_size_differs_from_listing", "integrity_etag_mismatches")
INTEGRITY = ("integrity_objects", "integrity_read_errors", "integrity_size_differs_from_listing",
             "integrity_size_differs_from_capture", "integrity_unseen_in_capture", "integrity_etag_mismatches")


def integrity_table(run: Run) -> pd.DataFrame:
    """Did each store keep what Milvus wrote? Per store, over its completed trials: the objects read back and
    every kind of mismatch summed, with the first objects named; a nonzero mismatch is flagged."""
    data = run.completed("results")
    data = data[data["phase"] == "integrity"] if len(data) else data
    columns = ["store", "trials", *INTEGRITY, "objects not as written (first named)"]
    if data.empty:
        return noted(pd.DataFrame(columns=columns), "No integrity check ran (runs made before it existed).")
    problems = {(r.backend, r.trial): r.integrity_problems for r in run.records if r.integrity_problems}
    rows = []
    for backend, group in data.groupby("backend"):
        sums = group.groupby("metric")["value"].sum(min_count=1)
        named = "; ".join(f"trial {t}: {p}" for (b, t), p in sorted(problems.items()) if b == backend)
        rows.append({"store": backend, "trials": group["trial"].nunique(),
                     **{m: sums.get(m) for m in INTEGRITY}, "objects not as written (first named)": named or "none"})
    table = pd.DataFrame(rows, columns=columns)
    bad = table[list(MISMATCHES)].fillna(0).sum(axis=1) > 0
    table.insert(1, "kept what Milvus wrote?", ["NO" if b else "yes" for b in bad])
    table.attrs["bold"] = {"kept what Milvus wrote?": "NO"}
    return noted(table, "After the footprint, every object of the trial was read back once (untimed, after the capture "
                        "stopped): its bytes against the listing's size and against the size the capture saw Milvus "
                        "write (a PUT's body, or a multipart upload's parts), and a single-part ETag against the MD5 "
                        "of the bytes read. Objects the capture did not see written are counted, not judged. A store "
                        "that truncates a read shows here, or as lost recall (the recall figure) or a failed load.")
