"""The published RustFS-vs-MinIO claims beside this run's figures: which of our measurements tests
each claim, whether its direction was reproduced, and how this run's setup differs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from msbench.analysis import stats
from msbench.report.comparisons import CLAIMED, claim_word, claims, compare, interval_text
from msbench.metrics import compared, headline
from msbench.report.values import Run, confidence_of, trial_values
from msbench.report.page import noted, num, with_ci

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
# The S3 operations that touch no object's bytes: a phase of only these cannot be slow because of the store's
# reads or writes (a GET, HEAD, PUT, multipart part or DELETE could be)
LISTINGS = ("LIST",)


def untouched_store_evidence(run: Run, phase: str) -> str:
    """When Milvus read and wrote no object in ``phase`` in any completed trial that captured its requests, the
    sentence that says the store cannot explain a difference in its time, with the request counts; else ''."""
    captured = {(r.backend, r.trial) for r in run.records
                if r.status == "ok" and r.s3_capture.get("enabled") and r.backend not in run.controls}
    if not captured:
        return ""
    summary = run.completed("s3_summary")
    mine = summary[(summary["phase"] == phase) & summary["backend"].isin({b for b, _ in captured})]
    if not mine["operation"].isin(("all", *LISTINGS)).all():
        return ""
    every = mine[mine["operation"] == "all"].set_index(["backend", "trial"])["requests"]
    counts = [int(every.get(key, 0)) for key in captured]
    kinds = sorted(set(mine["operation"]) - {"all"})
    return (f"The store cannot explain a difference here: in {len(captured)} trials Milvus read or wrote no "
            f"object during {phase} ({sum(counts)} S3 requests in all{', only ' + ' and '.join(kinds) if kinds else ''}; "
            f"{min(counts)} to {max(counts)} a trial).")


PUBLISHED_SETUP = {"milvus": "2.6.7", "n_vectors": 1_000_000, "dim": 768, "batch_size": 5_000,
                   "hardware": "16 cores, 32 GB RAM, NVMe SSD", "index": "HNSW M=16 efConstruction=200"}


def _kind_backend(run: Run, kind: str, ran: set[str]) -> str | None:
    """The backend that ran store ``kind`` here: the one named like it, else the first alias."""
    stores = run.manifest.stores
    found = sorted(b for b in ran if stores.get(b, b) == kind)
    return kind if kind in found else (found[0] if found else None)


def setup_differences(run: Run) -> list[tuple[str, str, str]]:
    """(what, here, published) for each way this run's setup differs from the published one."""
    params, host = run.manifest.params, run.manifest.host
    ours = {
        "Milvus": run.manifest.milvus.get("version", "unknown"),
        "data": f"{params.n_vectors:,} x {params.dim}-d {params.dataset} vectors, batches of {params.batch_size:,}",
        "hardware": f"{host.get('cores', '?')} cores, {host.get('memory_bytes', 0) / 1e9:.0f} GB RAM, "
                    f"{host.get('disk_device', 'unknown disk')}",
        "index": f"{params.index_type} M={params.hnsw_m} efConstruction={params.hnsw_ef_construction}"
                 if params.index_type == "HNSW" else f"{params.index_type} nlist={params.ivf_nlist}",
    }
    theirs = {"Milvus": PUBLISHED_SETUP["milvus"], "hardware": PUBLISHED_SETUP["hardware"],
              "index": PUBLISHED_SETUP["index"],
              "data": f"{PUBLISHED_SETUP['n_vectors']:,} x {PUBLISHED_SETUP['dim']}-d random vectors, "
                      f"batches of {PUBLISHED_SETUP['batch_size']:,}"}
    return [(what, ours[what], theirs[what]) for what in ours if ours[what] != theirs[what]]


def published_vs_reproduced(run: Run, reference_csv: str | Path) -> pd.DataFrame:
    """Each published claim (one row per measurement of ours that tests it) beside our figures and verdict."""
    published = pd.read_csv(reference_csv).set_index("metric")
    by_metric = {m.metric: m for m in headline(run.manifest.params)}
    metrics = compared(run.manifest.params)
    tidy = trial_values(run, metrics)
    ran = set(tidy["backend"])
    pair = {kind: _kind_backend(run, kind, ran) for kind in ("rustfs", "minio")}
    found = claims(run)
    raw = (compare(run, tidy, found.family, metrics, [(pair["rustfs"], pair["minio"])]).set_index("metric")
           if found and None not in pair.values() else pd.DataFrame())
    ours = trial_values(run, [by_metric[m] for claims in CLAIMS.values() for m, _ in claims], byte_unit="GB")
    summary = stats.summarize(ours, confidence=confidence_of(ours)) if len(ours) else pd.DataFrame(
        columns=stats.SUMMARY_COLUMNS)
    setup = "; ".join(f"{what} {here} here vs {there} published" for what, here, there in setup_differences(run))
    context = _caveat_context(run)
    controls = run.controls
    rows = []
    for claim, measures in CLAIMS.items():
        pub = published.loc[claim]
        pub_ratio = pub["rustfs"] / pub["minio"]
        for metric, caveat in measures:
            m = by_metric[metric]
            mine = summary[summary["metric"] == m.name]
            figures = "; ".join(f"{s.backend}: {with_ci(s.mean, s.ci_low, s.ci_high, 'needs n ≥ 2')} (n={s.n})"
                                for s in mine.itertuples() if s.backend not in controls) or "no completed measurement here"
            our_minio = next((f"{with_ci(s.mean, s.ci_low, s.ci_high, 'needs n ≥ 2')} (n={s.n})"
                              for s in mine.itertuples() if s.backend == pair["minio"]), "not measured here")
            row = raw.loc[m.name] if m.name in raw.index else None
            missing = [kind for kind in pair if pair[kind] is None or not (mine["backend"] == pair[kind]).any()]
            if missing:
                why = ("not available on this machine" if not set(missing) & set(run.manifest.backends)
                       else "requested but without a completed measurement")
                verdict, ratio = f"not measured here ({' and '.join(missing)} {why})", "–"
            else:
                ratio = interval_text(row, *(("claim_low", "claim_high") if row["primary"] else ()))
                verdict = _verdict(row, pub_ratio)
            evidence = untouched_store_evidence(run, m.phase) if m.unit != "bytes" else ""   # a time, not what is stored
            rows.append([claim, pub["unit"], num(pub["rustfs"]), num(pub["minio"]), num(pub_ratio),
                         pub["better"], m.name, mine["unit"].iloc[0] if len(mine) else m.unit, our_minio, figures,
                         ratio, f"{verdict}. {evidence}" if evidence else verdict,
                         caveat.format(**context) + (f" Setup: {setup}." if setup else "")])
    return noted(pd.DataFrame(rows, columns=[
        "published claim", "published unit", "published RustFS", "published MinIO", "published ratio RustFS/MinIO",
        "better when", "our metric", "our unit", "ours: MinIO mean [95% CI] (n trials)",
        "ours: mean [95% CI] (n trials) per backend",
        "our ratio RustFS/MinIO [claim interval]", "verdict", "caveats"]),
        "Published: Min Yin, milvus.io blog (Milvus 2.6.7, RustFS 1.0.0-alpha.68 vs MinIO, about three repetitions, "
        "no intervals). Our RustFS vs MinIO comparison is one of the report's family (the same rule and level as "
        "the verdict: ratio of geometric means, claim interval at the family's level): 'direction reproduced' / "
        "'reversed' when a difference is claimed, 'not reproduced: equivalent' when the two are equivalent within "
        "the margin. On metrics outside the family no claim is made and the ratio carries its 95% CI. Means carry "
        "a Student t 95% CI (as in the summary table).")


def _verdict(row: pd.Series, published_ratio: float) -> str:
    """Our claim on RustFS / MinIO set against the published ratio."""
    if not row["primary"]:
        return "no claim here (not a primary metric; ratio and 95% CI shown)"
    if row["verdict"] in CLAIMED:
        return "direction reproduced" if (row["ratio"] > 1) == (published_ratio > 1) else "reversed"
    if row["verdict"] == "equivalent":
        return f"not reproduced: {claim_word(row)} here"
    n = f"n={row['n_backend']} vs {row['n_other']}"
    return f"not detectable here ({n}{': ' + row['no_interval'] if row['no_interval'] else ''})"


def _caveat_context(run: Run) -> dict[str, Any]:
    """Values the claim caveats quote: workload parameters and whether the page cache was dropped."""
    params = run.manifest.params.as_dict()
    dropped = run.completed("results").query("metric == 'page_cache_dropped'")["value"]
    missed = int((dropped == 0).sum())
    return {**params, "measured": params["n_queries"] - params["warmup_queries"],
            "cache_note": f" (but the page cache was not dropped in {missed} of {len(dropped)} trials)" if missed else ""}


def published_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict columns of :func:`published_vs_reproduced`: what the report shows right after its own
    verdict; the full table (each store's figures, the published values, the caveats) is shown folded."""
    columns = ["published claim", "our metric", "published ratio RustFS/MinIO",
               "our ratio RustFS/MinIO [claim interval]", "verdict"]
    return noted(table[columns].copy(), "Each published claim and our verdict on it, by the report's claim rule and "
                 "family (as the verdict above): 'direction reproduced' / 'reversed' when our RustFS vs MinIO "
                 "difference is claimed, 'not reproduced: equivalent' when the two are equivalent within the margin. "
                 "Our figures per store, the published values and the caveats of each claim are in the full table "
                 "below.")
