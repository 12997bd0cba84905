"""msbench.report on synthetic run folders written the way a real run writes them (no servers)."""

import re

import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from msbench import report
from msbench.run import stopping, schedule
from msbench.analysis import stats
from msbench.report import comparisons
from msbench.report import values as metrics
from dataclasses import replace

from msbench.config import Params
from msbench.metrics import compared, headline
from msbench.results import LATENCY_COLUMNS, TIDY_COLUMNS, Manifest, RunDir, TrialRecord, load_run

REFERENCE = "data/reference/published-milvus-rustfs-vs-minio.csv"
PARAMS = {"profile": "smoke", "n_vectors": 5000, "dim": 32, "n_queries": 60, "batch_size": 1000,
          "dataset": "random", "seed": 42, "index_type": "HNSW", "metric_type": "L2", "hnsw_m": 16,
          "hnsw_ef_construction": 200, "top_k": 10, "warmup_queries": 10, "concurrency": [2],
          "throughput_seconds": 1.0}
# (phase, metric, unit) -> typical value; every metric the report reads.
BASE = {
    ("insert", "insert_rows_per_s", "rows/s"): 40000.0, ("flush", "flush_s", "s"): 3.0,
    ("index", "index_build_s", "s"): 2.0, ("load_first", "load_first_s", "s"): 4.0,
    ("load_first", "store_bytes_served_during_load", "bytes"): 2e6, ("load_warm", "load_warm_s", "s"): 4.0,
    ("load_warm", "store_bytes_served_during_load", "bytes"): 2e6, ("load_noop", "load_noop_s", "s"): 0.005,
    ("load_noop", "store_bytes_served_during_load", "bytes"): 0.0, ("load_cold", "load_cold_s", "s"): 3.0,
    ("load_cold", "first_search_after_cold_s", "s"): 0.01, ("load_cold", "store_restarted", "bool"): 1.0,
    ("search", "search_latency_mean_ms", "ms"): 2.5, ("search", "search_latency_p50_ms", "ms"): 2.4,
    ("search", "search_latency_p95_ms", "ms"): 3.5, ("search", "search_latency_p99_ms", "ms"): 7.0,
    ("search", "search_qps_serial", "queries/s"): 400.0, ("search", "recall_at_10", "fraction"): 0.98,
    ("throughput", "search_qps_c2", "queries/s"): 700.0,
    ("footprint", "bucket_insert_log_bytes", "bytes"): 7e5, ("footprint", "bucket_stats_log_bytes", "bytes"): 1e4,
    ("footprint", "bucket_delta_log_bytes", "bytes"): 0.0, ("footprint", "bucket_index_files_bytes", "bytes"): 9e5,
    ("footprint", "bucket_other_bytes", "bytes"): 0.0, ("footprint", "bucket_bytes", "bytes"): 1.61e6,
    ("footprint", "disk_allocated_bytes", "bytes"): 2e6, ("footprint", "bucket_bytes_after_gc", "bytes"): 1.6e6,
    ("footprint", "disk_allocated_bytes_after_gc", "bytes"): 2.1e6,
    **{(phase, f"{phase}_segments_s", "s"): 1.2 for phase in ("load_first", "load_warm", "load_cold")},
    **{(phase, f"{phase}_s3_span_s", "s"): 0.4 for phase in ("load_first", "load_warm", "load_cold")},
}


def make_run(root, backends, trials, *, stores=None, failed=(), cache_dropped=1.0, noise=0.03, own_noise=0.0, notes=None,
             extra=None, manifest=None, requests=None):
    """Write a run folder. ``backends``: {name: {metric: factor}}; the noise depends on the trial
    number only, so two backends with the same factors get identical values (an exact A/A), unless
    ``own_noise`` adds each backend's own (the rest is then a round effect shared by all).
    ``notes``: {(backend, trial): {key: text}} put in trial.json, as the trial copies its notes;
    ``extra``: {(backend, trial): {(phase, metric, unit): value}} rows added or replaced as given;
    ``manifest``: fields added to the manifest (baseline, controls, handicaps);
    ``requests``: [(phase, operation, count)] every trial captured (its s3_summary.csv)."""
    run = RunDir(root, "synthetic")
    order = schedule.plan(sorted(backends), trials, seed=1)
    stores = stores or {b: b for b in backends}
    run.write_manifest(Manifest(
        run="synthetic", params=Params.from_dict(PARAMS), backends=sorted(backends), stores=stores, trials=trials,
        provider="native", order=order, host={"cores": 2, "memory_bytes": 25e9, "disk_device": "/dev/vda ext4"},
        packages={"milvus": "2.3.5"}, milvus={"version": "2.3.5", "sha256": "ab" * 32},
        components={b: {"binary": f"/bin/{b}", "sha256": "cd" * 32} for b in backends}, **(manifest or {})))
    for planned in order:
        b, t = planned.backend, planned.trial
        record = TrialRecord("synthetic", b, stores[b], "native", t, planned.seq, status="ok", failed_phase="",
                             duration_s=60.0 + t, ran={"milvus_version": "v2.3.5"}, **(notes or {}).get((b, t), {}))
        ident = {"run": "synthetic", "backend": b, "provider": "native", "trial": t, "seq": planned.seq}
        if (b, t) in failed:
            record.status, record.failed_phase, record.error = "failed", "provision", "ReadinessTimeout: store exited\nmore"
            run.write_trial(record, pd.DataFrame(columns=TIDY_COLUMNS), None, None, [])
            continue
        rng, own = np.random.default_rng(t), np.random.default_rng([t, *b.encode()])
        values = {key: v * backends[b].get(key[1], 1.0) * (1 + noise * rng.standard_normal())
                  * (1 + own_noise * own.standard_normal()) for key, v in BASE.items()}
        values.update((extra or {}).get((b, t), {}))
        rows = [{**ident, "phase": p, "metric": m, "unit": u, "value": v} for (p, m, u), v in values.items()]
        rows.append({**ident, "phase": "load_cold", "metric": "page_cache_dropped", "unit": "bool",
                     "value": cache_dropped})
        n_q = PARAMS["n_queries"]
        latencies = pd.DataFrame({**ident, "query": range(n_q), "warmup": np.arange(n_q) < PARAMS["warmup_queries"],
                                  "latency_ms": rng.lognormal(np.log(2.5 * backends[b].get("latency", 1.0)), 0.3, n_q)},
                                 columns=LATENCY_COLUMNS)
        tables = {}
        if requests is not None:
            record.s3_capture = {"enabled": True}
            summary = [{**ident, "phase": p, "operation": op, "requests": n} for p, op, n in requests]
            summary += [{**ident, "phase": p, "operation": "all", "requests": sum(n for q, _, n in requests if q == p)}
                        for p in dict.fromkeys(p for p, _, _ in requests)]
            tables["s3_summary.csv"] = pd.DataFrame(summary)
        run.write_trial(record, pd.DataFrame(rows, columns=TIDY_COLUMNS), latencies, None, [], tables=tables)
    return load_run(run.path)


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    monkeypatch.setattr(report.comparisons, "N_RESAMPLES", 999)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """rustfs inserts faster (as published) and searches faster (published: slower); minio-b aliases minio."""
    return make_run(tmp_path_factory.mktemp("full"),
                    {"minio": {}, "minio-b": {},
                     "rustfs": {"insert_rows_per_s": 1.5, "search_latency_mean_ms": 0.5, "load_warm_s": 0.5}},
                    trials=4, stores={"minio": "minio", "minio-b": "minio", "rustfs": "rustfs"},
                    failed={("rustfs", 2)}, cache_dropped=0.0, noise=0.01)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("single"), {"seaweedfs": {}}, trials=1)


@pytest.fixture(scope="module")
def nothing(tmp_path_factory):
    """Every trial failed before measuring anything."""
    return make_run(tmp_path_factory.mktemp("nothing"), {"ceph-rgw": {}}, trials=1, failed={("ceph-rgw", 1)})


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("others"), {"ceph-rgw": {}, "seaweedfs": {"latency": 2.0}}, trials=3)


@pytest.fixture(scope="module")
def controlled(tmp_path_factory):
    """The default study's shape: two real stores beside minio, and minio's two controls. rustfs and
    seaweedfs both reload twice as fast (equal: tied leaders); rustfs alone searches twice as fast (the
    best store); both build the index 1.5x slower (minio best); the handicapped twin loads 1.3x slower."""
    slow = {"load_first_s": 1.3, "load_warm_s": 1.3}
    return make_run(tmp_path_factory.mktemp("controlled"),
                    {"minio": {}, "minio-aa": {}, "minio-slow": slow,
                     "rustfs": {"load_warm_s": 0.5, "index_build_s": 1.5, "search_latency_mean_ms": 0.5},
                     "seaweedfs": {"index_build_s": 1.6, "load_warm_s": 0.5}},
                    trials=4, stores={"minio": "minio", "minio-aa": "minio", "minio-slow": "minio",
                                      "rustfs": "rustfs", "seaweedfs": "seaweedfs"},
                    manifest={"baseline": "minio", "handicaps": {"minio-slow": {"cpu": 0.05}},
                              "controls": {"minio-aa": {"alias_of": "minio"},
                                           "minio-slow": {"alias_of": "minio", "handicap": {"cpu": 0.05}}}})


@pytest.fixture(scope="module")
def alike(tmp_path_factory):
    """Two stores alike up to 0.2% under a 3% round effect they share, and the same bucket bytes but for a
    30-byte (sub-resolution) offset in every trial."""
    gc = ("footprint", "bucket_bytes_after_gc", "bytes")
    extra = {(b, t): {gc: 1_600_000.0 + (30.0 if b == "garage" else 0.0) + (t == 3 and b == "garage")}
             for b in ("minio", "garage") for t in (1, 2, 3, 4)}
    return make_run(tmp_path_factory.mktemp("alike"), {"minio": {}, "garage": {}}, trials=4, own_noise=0.002,
                    extra=extra)


@pytest.fixture(scope="module")
def rough(tmp_path_factory):
    """garage reloads with a CV of about 60%; seaweedfs completed one trial of three."""
    warm = ("load_warm", "load_warm_s", "s")
    extra = {("garage", t): {warm: v} for t, v in zip((1, 2, 3), (2.0, 4.0, 8.0))}
    return make_run(tmp_path_factory.mktemp("rough"), {"minio": {}, "garage": {}, "seaweedfs": {}}, trials=3,
                    failed={("seaweedfs", 2), ("seaweedfs", 3)}, extra=extra)


NAN = float("nan")
LOADS = ("load_first", "load_warm", "load_noop", "load_cold")


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    """Load retries and bytes the counter could not see, as trial.py records them (columns
    load_failures and bytes_served_note); minio trial 3 is from an older run: retries only."""
    extra = {(b, t): {(p, m, u): 0.0 for p in LOADS for m, u in (("load_retries", "count"),
                                                                 ("load_failed_attempts", "count"),
                                                                 ("load_failed_attempts_s", "s"))}
             for b in ("minio", "garage") for t in (1, 2, 3)}
    extra["minio", 2].update({("load_cold", "load_retries", "count"): 1.0,
                              ("load_cold", "load_failed_attempts", "count"): 1.0,
                              ("load_cold", "load_failed_attempts_s", "s"): 4.06})
    extra["minio", 3] = {("load_first", "load_retries", "count"): 2.0}
    extra["minio", 1][("load_noop", "store_bytes_served_during_load", "bytes")] = NAN
    for t in (1, 2, 3):
        extra["garage", t].update({(p, "store_bytes_served_during_load", "bytes"): NAN for p in LOADS})
    unseen = ("store_bytes_served_during_load is NaN: no connection from port 3900 is visible on this host "
              "(the store is not on this host's loopback)")
    notes = {("minio", 2): {"load_failures": "load_cold attempt 1: RuntimeError: node not\nmatch"},
             ("minio", 1): {"stalls": "store minio (http://127.0.0.1:9000/minio/health/live) did not answer for "
                                      "6.5 s in load_first"},
             **{("garage", t): {"bytes_served_note": unseen} for t in (1, 2, 3)}}
    return make_run(tmp_path_factory.mktemp("diagnosed"), {"minio": {}, "garage": {}}, trials=3,
                    notes=notes, extra=extra)


def rows_of(table, **where):
    mask = np.logical_and.reduce([table[col] == value for col, value in where.items()])
    return table[mask]


def test_direction():
    assert report.direction("insert_rows_per_s") == "higher"
    assert report.direction("search_qps_serial") == "higher"
    assert report.direction("search_qps_c8") == "higher"
    assert report.direction("recall_at_10") == "higher"
    for metric in ("load_warm_s", "search_latency_p99_ms", "bucket_bytes", "index_build_s"):
        assert report.direction(metric) == "lower"


def test_headline_follows_the_parameters(full):
    names = [m.name for m in headline(full.manifest.params)]
    assert "recall_at_10" in names and "search_qps_c2" in names
    assert len(names) == len(set(names)), "store_bytes_served_during_load must be told apart by phase"


def test_summary_counts_completed_trials_and_shows_intervals(full):
    table = report.summary_table(full)
    for col in ("n (trials)", "unit", "what it measures", "95% CI of mean", "CI method"):
        assert col in table.columns
    assert set(rows_of(table, backend="rustfs")["n (trials)"]) == {3}    # one of four failed
    assert set(rows_of(table, backend="minio")["n (trials)"]) == {4}
    row = rows_of(table, backend="minio", metric="load_warm_s").iloc[0]
    assert row["unit"] == "s" and row["95% CI of mean"].startswith("[") and row["CI method"] == "Student t"
    assert rows_of(table, backend="minio", metric="bucket_bytes").iloc[0]["unit"] == "MB"
    assert "Student t" in table.attrs["note"] and "BCa" not in table.attrs["note"]


def test_comparison_calls_an_obvious_difference_and_not_identical_data(full):
    assert report.default_baseline(full) == "minio"
    table = report.comparison_table(full)
    faster = rows_of(table, backend="rustfs", metric="load_warm_s").iloc[0]["verdict"]
    assert faster.startswith("rustfs is 2") and "faster than minio" in faster and faster.endswith("better")
    higher = rows_of(table, backend="rustfs", metric="insert_rows_per_s").iloc[0]["verdict"]
    assert "1.5x higher than minio" in higher and higher.endswith("better")
    same = rows_of(table, backend="minio-b", metric="load_warm_s").iloc[0]["verdict"]
    assert re.fullmatch(r"equivalent within ±5%: minio-b is the same as minio \(CI [\d.]+% faster to [\d.]+% slower\)",
                        same)
    flush = rows_of(table, backend="rustfs", metric="flush_s").iloc[0]["verdict"]
    assert flush.startswith("no claim (not a primary metric)")
    # the pairs of other stores, on the primary metrics only: what a best store rests on
    pairs = rows_of(table, backend="minio-b", **{"compared with": "rustfs"})
    assert set(pairs["metric"]) == set(comparisons.PRIMARY)


def test_comparison_names_its_methods_and_withholds_untestable_p(full, others):
    table = report.comparison_table(full)
    assert set(table["method"]) <= {stats.PAIRED_METHOD, stats.INDEPENDENT_METHOD}
    note = table.attrs["note"]
    assert "18 comparisons in all" in note and "geometric means" in note and "Holm" not in note
    # rustfs has 3 completed trials, minio 4: 2 / C(7, 3) = 0.057 is the smallest Brunner-Munzel p.
    rustfs = rows_of(table, backend="rustfs", **{"compared with": "minio"})
    assert rustfs["p (Brunner-Munzel)"].str.startswith("not testable at n=3 vs 4").all()
    assert rows_of(table, backend="minio-b", **{"compared with": "minio"})["p (Brunner-Munzel)"].str.match(
        r"^[<0-9]").all()
    assert table["smallest detectable difference (80% power)"].str.match(r"^(> )?[\d.]+% \((> )?[\d.]+%–").all()
    three = report.comparison_table(others)
    assert three["p (Brunner-Munzel)"].str.startswith("not testable at n=3").all()
    assert "ratio of arithmetic means (no CI)" in three.columns
    claimed = table[table["verdict"].str.endswith(("better", "worse"))]
    assert (claimed["p (family-adjusted): difference"].map(lambda p: p.startswith("<") or float(p) < 0.05)).all()


def test_variance_table_says_not_testable_at_small_n(full, others):
    table = report.variance_table(others)
    testable = table["p"] != "–"   # "–": no spread at all (load_noop bytes are 0 in every trial)
    assert testable.sum() >= len(table) - 1
    assert table.loc[testable, "p"].str.startswith("not testable at n=3/3").all()
    assert table.loc[testable, "reading"].str.contains("power against a 3x sd ratio").all()
    assert not table["reading"].str.contains("no evidence").any()


def test_aa_table_finds_the_alias_pair(full, others):
    table = report.aa_table(full)
    assert set(table["backend"]) == {"minio-b"} and set(table["compared with"]) == {"minio"}
    assert not table["A/A reading"].str.startswith("FALSE POSITIVE").any()
    empty = report.aa_table(others)
    assert empty.empty and "No A/A pair" in empty.attrs["note"]


def test_published_vs_reproduced_verdicts(full, others):
    table = report.published_vs_reproduced(full, REFERENCE).set_index("our metric")
    assert table.loc["insert_rows_per_s", "verdict"] == "direction reproduced"
    assert table.loc["search_latency_mean_ms", "verdict"] == "reversed"
    assert table.loc["index_build_s", "verdict"].startswith("not detectable here (n=3 vs 4")
    assert table.loc["load_noop_s", "verdict"].startswith("no claim here (not a primary metric")
    # the same claims as the report's family: the comparison table's rustfs / minio rows
    rows = rows_of(report.comparison_table(full), backend="rustfs", **{"compared with": "minio"}).set_index("metric")
    assert rows.loc["insert_rows_per_s", "claim interval [family level]"] in table.loc[
        "insert_rows_per_s", "our ratio RustFS/MinIO [claim interval]"]
    assert {"load_first_s", "load_cold_s", "load_warm_s", "load_noop_s", "bucket_bytes"} <= set(table.index)
    assert table.loc["bucket_bytes", "our unit"] == "GB"
    assert "2.3.5" in table.loc["load_warm_s", "caveats"]
    elsewhere = report.published_vs_reproduced(others, REFERENCE)
    assert elsewhere["verdict"].str.startswith("not measured here").all()
    assert elsewhere["ours: mean [95% CI] (n trials) per backend"].str.contains("ceph-rgw").all()


def test_deviations_name_failures_and_undropped_cache(full):
    text = report.deviations(full)
    assert any("rustfs trial 2" in d and "provision" in d and "ReadinessTimeout" in d for d in text)
    assert any("page cache was not dropped before the cold load in any trial" in d for d in text)
    assert any("Fewer than 5" in d for d in text)
    assert any("2.6.7" in d for d in text)


def test_deviations_say_which_backends_were_skipped_and_why(full):
    run = replace(full, manifest=replace(full.manifest, skipped={"garage": "no 'garage' binary found"}))
    assert "garage did not run: no 'garage' binary found" in report.deviations(run)


def test_deviations_name_each_trial_whose_loads_needed_retries(diagnosed, full):
    text = report.deviations(diagnosed)
    assert ("minio trial 2: load_cold needed 1 retry (failed attempts took 4.1 s); its load times are the "
            "successful tries'. Failed attempts: load_cold attempt 1: RuntimeError: node not match.") in text
    assert "minio trial 3: load_first needed 2 retries; its load times are the successful tries'." in text
    assert len([d for d in text if "retr" in d]) == 2
    assert not [d for d in report.deviations(full) if "retr" in d or "TCP counter" in d]   # older runs: no columns


def test_deviations_name_a_trial_whose_server_fell_silent(diagnosed, full):
    text = [d for d in report.deviations(diagnosed) if "fell silent" in d]
    assert text == ["minio trial 1: a server fell silent and came back (store minio (http://127.0.0.1:9000/minio/"
                    "health/live) did not answer for 6.5 s in load_first); the trial completed and its figures for "
                    "those phases include the wait."]
    assert not [d for d in report.deviations(full) if "fell silent" in d]   # older runs: no column


def test_deviations_say_once_per_backend_when_the_counter_could_not_see_the_store(diagnosed):
    text = [d for d in report.deviations(diagnosed) if "TCP counter" in d]
    assert text == [
        "garage: the TCP counter could not see the store's traffic in 3 of 3 trials, so their "
        "store_bytes_served_during_load is NaN and does not show whether a load read data: no connection from "
        "port 3900 is visible on this host (the store is not on this host's loopback).",
        "minio: the TCP counter could not see the store's traffic in 1 of 3 trials, so their "
        "store_bytes_served_during_load is NaN and does not show whether a load read data: no reason recorded."]
    summary = report.summary_table(diagnosed)
    unseen = rows_of(summary, backend="garage", metric="store_bytes_served_during_load [load_warm]")
    assert list(unseen["n (trials)"]) == [0] and list(unseen["mean"]) == ["–"]   # missing, not a 0


def test_other_tables(full):
    assert set(report.trials_table(full)["status"]) == {"ok", "failed"}
    spread = report.latency_spread_table(full)
    assert set(spread["trial"].astype(str)) >= {"all, pooled", "1"}
    assert len(report.variance_table(full)) == len(headline(full.manifest.params))
    power = report.power_table(full)
    assert power.columns[5].startswith("trials per store to detect a 10% difference")
    assert power.columns[6].startswith("trials per store to call two alike stores equivalent")
    assert "claim rule" in power.attrs["note"] and "18 comparisons" in power.attrs["note"]
    assert power.iloc[:, 4].str.match(r"^(> )?[\d.]+% \((> )?[\d.]+%–").all()
    assert set(power["claims made"]) == {"yes", "no (not primary)"}
    env = report.environment_table(full)
    assert "abababababab" in set(env["value"])
    ran = env[env["section"] == "ran"].set_index("item")["value"]   # each trial's own record of what ran
    assert ran["milvus reported version"] == "v2.3.5 (every trial)"


FIGURES = [report.fig_trials, report.fig_recall, report.fig_drift, report.fig_latency_ecdf,
           report.fig_forest, report.fig_footprint]


@pytest.mark.parametrize("scenario", ["full", "single", "nothing", "diagnosed", "controlled"])
def test_figures_write_png_and_svg(scenario, request, tmp_path):
    run = request.getfixturevalue(scenario)
    for figure in FIGURES:
        png = figure(run, tmp_path)
        assert png.suffix == ".png" and png.stat().st_size > 1000
        assert png.with_suffix(".svg").stat().st_size > 1000


def test_a_rerun_writes_the_same_svg(controlled, tmp_path):
    first, again = (report.fig_footprint(controlled, tmp_path / d).with_suffix(".svg").read_bytes() for d in "ab")
    assert first == again


@pytest.mark.parametrize("scenario", ["single", "nothing", "diagnosed"])
def test_tables_survive_one_trial_no_data_or_nan(scenario, request):
    run = request.getfixturevalue(scenario)
    for table in (report.summary_table, report.comparison_table, report.aa_table, report.variance_table,
                  report.latency_spread_table, report.power_table, report.trials_table, report.environment_table):
        assert isinstance(report.show(table(run)).to_html(), str)
    assert report.published_vs_reproduced(run, REFERENCE)["verdict"].str.startswith("not measured").all()
    assert report.deviations(run)


def test_verdict_table_has_the_real_stores_as_columns_and_no_controls(controlled):
    table = report.verdict(controlled).table
    assert list(table.columns) == ["metric", "what it measures", "minio (baseline, n=4)", "rustfs (n=4)",
                                   "seaweedfs (n=4)", "best real store",
                                   "smallest difference detectable at this n (80% power)"]
    assert list(table["metric"]) == [m.name for m in compared(controlled.manifest.params)]
    warm = rows_of(table, metric="load_warm_s").iloc[0]
    assert warm["what it measures"] == "reload: release(), then load(); s, lower is better"
    assert warm["minio (baseline, n=4)"].startswith("4") and ";" not in warm["minio (baseline, n=4)"]
    assert re.fullmatch(r"2\.\d+ \[[\d.]+,\xa0[\d.]+\]; better: ratio 0\.5 \[[\d.]+,\xa0[\d.]+\]", warm["rustfs (n=4)"])


def test_verdict_uses_four_words_and_names_a_best_store_only_when_it_beats_every_other(controlled):
    table = report.verdict(controlled).table.set_index("metric")
    search = table.loc["search_latency_mean_ms"]   # rustfs better than minio and than seaweedfs
    assert search["best real store"] == "best: rustfs" and "better" in search["rustfs (n=4)"]
    index = table.loc["index_build_s"]   # every other store claimed worse: the baseline is best
    assert index["best real store"] == "best: minio" and "worse" in index["seaweedfs (n=4)"]
    warm = table.loc["load_warm_s"]   # both twice as fast as minio, alike: no best store, the tied leaders
    assert "better" in warm["rustfs (n=4)"] and "better" in warm["seaweedfs (n=4)"]
    assert warm["best real store"] == "tied: rustfs, seaweedfs"
    flush = table.loc["flush_s"]   # outside the family: the ratio and its 95% CI, no claim word
    assert flush["best real store"] == "– (no claims: not a primary metric)"
    assert re.search(r"; ratio 1 \[", flush["rustfs (n=4)"]) and "detectable" not in flush["rustfs (n=4)"]
    assert re.fullmatch(r"(> )?[\d.]+%", table.loc["insert_rows_per_s", "smallest difference detectable at this n (80% power)"])


def test_verdict_calls_alike_stores_equivalent_and_ignores_sub_resolution_offsets(alike):
    """A 3% round effect shared by the stores is removed by pairing; 30 bytes in 1.6 MB are within the
    floor, whatever their variance: both are equivalent within ±5%, neither worse."""
    table = report.verdict(alike).table.set_index("metric")
    for metric in ("load_warm_s", "index_build_s", "bucket_bytes_after_gc"):
        assert table.loc[metric, "garage (n=4)"].split("; ")[1].startswith("equivalent within ±5%: ratio ")
    assert table.loc["bucket_bytes_after_gc", "best real store"] == "tied: minio, garage"
    assert "bucket_bytes_after_gc: garage is 0.0019% larger than minio" in report.verdict(alike).summary
    power = report.power_table(alike).set_index("metric")
    assert power.loc["load_warm_s", "trials per store to call two alike stores equivalent (80% power)"] != "> 100"


def test_verdict_says_why_there_is_no_interval_and_flags_noise_beyond_the_verified(rough):
    table = report.verdict(rough).table.set_index("metric")
    assert table.loc["load_warm_s", "seaweedfs (n=1)"].endswith(
        "not detectable: no interval (needs ≥ 2 trials of each (n=1 vs 3))")
    assert "(coverage unverified: CV 65% above the 20% verified)" in table.loc["load_warm_s", "garage (n=3)"]
    compare = report.comparison_table(rough)
    row = rows_of(compare, backend="garage", metric="load_warm_s", **{"compared with": "minio"}).iloc[0]
    assert "coverage unverified" in row["verdict"]


def test_verdict_summary_states_the_family_the_claims_and_that_controls_are_no_candidates(controlled):
    summary = report.verdict(controlled).summary
    assert "**Real stores:** minio (baseline, 4 trials), rustfs (4 trials), seaweedfs (4 trials)." in summary
    assert ("controlled together: 2 stores against minio and the pair of the other stores, 18 comparisons in all, "
            "each read off an interval at 99.72%, so the chance of any false claim among them is at most 5%"
            in summary)
    assert "load_warm_s: rustfs is 2x faster than minio (CI " in summary
    assert "index_build_s: seaweedfs is 1.6x slower than minio (CI " in summary
    assert "**Best store** (claimed better than every other store): index_build_s: minio; search_latency_mean_ms: " \
           "rustfs." in summary
    assert "load_warm_s: rustfs, seaweedfs" in summary   # the tied leaders
    assert "minio-aa (a second name) and minio-slow (held to 0.05 CPU) are minio itself" in summary
    assert ("(its handicapped twin was claimed slower) in load_first_s, load_warm_s of flush_s, index_build_s, "
            "load_first_s, load_warm_s, load_cold_s." in summary)
    assert ("Each twin's claims are a family of its own (5 comparisons against minio on those metrics; the "
            "handicapped twin's one-sided, only 'slower' claimed)") in summary


@pytest.mark.parametrize("scenario, says", [("single", "only seaweedfs completed a trial"),
                                            ("nothing", "No store completed a trial"),
                                            ("others", "**Claimed against ceph-rgw:**"),
                                            ("full", "**No controls ran:**")])
def test_verdict_survives_every_kind_of_run(scenario, says, request):
    found = report.verdict(request.getfixturevalue(scenario))
    assert says in found.summary
    assert isinstance(report.show(found.table).to_html(), str)


def test_show_puts_meanings_under_names_keeps_intervals_whole_and_bolds_claims(controlled):
    html = report.show(report.verdict(controlled).table).to_html()
    assert "load_warm_s<br><span" in html and "reload: release(), then load()" in html
    assert ">what it measures<" not in html
    assert ",\u00a0" in html and "font-weight: bold" in html   # an interval breaks nowhere, its cell only before it


def test_published_verdicts_are_the_verdict_columns_of_the_full_table(full):
    whole = report.published_vs_reproduced(full, REFERENCE)
    short = report.published_verdicts(whole)
    assert list(short.columns) == ["published claim", "our metric", "published ratio RustFS/MinIO",
                                   "our ratio RustFS/MinIO [claim interval]", "verdict"]
    assert short["verdict"].equals(whole["verdict"]) and "full table" in short.attrs["note"]


def test_one_palette_keeps_each_store_its_hue_and_gives_twins_its_shades(controlled, full, others):
    colors = report.figures.backend_colors(controlled)
    hues = sns.color_palette("colorblind", 10)
    assert colors["minio"] == report.figures.backend_colors(full)["minio"] == tuple(hues[0])
    assert report.figures.backend_colors(others)["ceph-rgw"] == tuple(hues[2])   # whatever else ran
    assert all(a >= b for a, b in zip(colors["minio-aa"], colors["minio"]))     # the A/A twin: lighter
    assert all(a <= b for a, b in zip(colors["minio-slow"], colors["minio"]))   # the handicapped twin: darker
    assert len(set(colors.values())) == len(colors)


def test_figures_list_the_baseline_then_the_stores_then_the_controls(controlled):
    assert report.figures.backend_order(controlled) == ["minio", "rustfs", "seaweedfs", "minio-aa", "minio-slow"]


def test_labels_that_would_overlap_go_to_another_row():
    assert report.figures.label_levels([0.0, 1.0, 10.0, 2.4], [4.0, 4.0, 4.0, 1.0]) == [0, 1, 0, 2]
    assert report.figures.label_levels([0.0, 5.0], [4.0, 4.0]) == [0, 0]


def test_a_run_stopped_by_the_until_precise_rule_is_analysed_at_its_calibrated_level(full):
    """Every interval of such a run (means and ratios) is computed at the rule's level, and says so."""
    rule = stopping.make_rule(0.05, trials=3)
    stopped = replace(full, manifest=replace(full.manifest, until_precise=rule))
    tidy = metrics.trial_values(stopped, compared(stopped.manifest.params))
    assert metrics.confidence_of(tidy) == rule.confidence > 0.95
    assert metrics.confidence_of(metrics.trial_values(full, compared(full.manifest.params))) == 0.95
    methods = set(report.summary_table(stopped)["CI method"]) - {"–"}
    assert methods and all(f"computed at {rule.confidence:.1%}" in m for m in methods)
    plain, wider = (comparisons.claims(r) for r in (full, stopped))
    assert wider.family.confidence == rule.confidence and wider.family.level > plain.family.level
    both = plain.rows.merge(wider.rows, on=["backend", "other", "metric"])
    for kind in ("ratio", "claim"):
        finite = np.isfinite(both[f"{kind}_low_x"]) & np.isfinite(both[f"{kind}_low_y"])
        assert finite.any() and (both[f"{kind}_low_y"][finite] < both[f"{kind}_low_x"][finite]).all()
    # power and detectability at the run's level too
    assert f"each at {100 * wider.family.level:.4g}%" in report.power_table(stopped).attrs["note"]
    shown, before = (report.summary_table(r)["95% CI of mean"] for r in (stopped, full))
    assert (shown != before).any()


def test_deviations_say_when_milvus_did_not_run_as_users_run_it():
    from types import SimpleNamespace

    from msbench.report import run_deviations

    def said(**params):
        return run_deviations._milvus_settings_deviations(SimpleNamespace(manifest=SimpleNamespace(
            params=Params(**params))))

    assert said() == []
    lines = said(milvus_pacing="fine", milvus_mmap=True, footprint_after_gc=False)
    assert [line.split(" ")[2] for line in lines] == ["with", "loaded", "after"]
    assert "milvus_pacing=fine" in lines[0] and "1 s tick" in lines[0]


def test_the_footprint_as_found_stands_in_for_the_one_after_gc_when_that_did_not_run(full):
    tidy = metrics.trial_values(full, compared(full.manifest.params))
    assert "bucket_bytes_after_gc" in comparisons.claim_family(full, tidy, "minio").metrics
    family = comparisons.claim_family(full, tidy[tidy.metric != "bucket_bytes_after_gc"], "minio")
    assert "bucket_bytes" in family.metrics and "bucket_bytes_after_gc" not in family.metrics


def test_a_published_claim_on_a_phase_that_read_nothing_says_the_store_cannot_explain_it(tmp_path):
    run = make_run(tmp_path, {"minio": {}, "seaweedfs": {}}, trials=2,
                   requests=[("search", "LIST", 3), ("load_warm", "GET", 40), ("load_warm", "LIST", 1),
                             ("insert", "PUT", 5)])
    table = report.published_vs_reproduced(run, REFERENCE).set_index("our metric")["verdict"]
    assert table["search_latency_mean_ms"].endswith("The store cannot explain a difference here: in 4 trials Milvus "
                                                    "read or wrote no object during search (12 S3 requests in all, "
                                                    "only LIST; 3 to 3 a trial).")
    assert "Milvus read or wrote no object during load_noop (0 S3 requests in all; 0 to 0" in table["load_noop_s"]
    for written_read_or_stored in ("load_warm_s", "insert_rows_per_s", "bucket_bytes"):   # PUTs, GETs, bytes
        assert "cannot explain" not in table[written_read_or_stored], written_read_or_stored
