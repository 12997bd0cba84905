"""msbench.report on synthetic run folders written the way a real run writes them (no servers)."""

import re

import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from msbench import report
from msbench.run import stopping, schedule
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


def make_run(root, backends, trials, *, stores=None, failed=(), cache_dropped=1.0, noise=0.03, notes=None, extra=None,
             manifest=None):
    """Write a run folder. ``backends``: {name: {metric: factor}}; the noise depends on the trial
    number only, so two backends with the same factors get identical values (an exact A/A).
    ``notes``: {(backend, trial): {key: text}} put in trial.json, as the trial copies its notes;
    ``extra``: {(backend, trial): {(phase, metric, unit): value}} rows added or replaced as given;
    ``manifest``: fields added to the manifest (baseline, controls, handicaps)."""
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
                             duration_s=60.0 + t, **(notes or {}).get((b, t), {}))
        ident = {"run": "synthetic", "backend": b, "provider": "native", "trial": t, "seq": planned.seq}
        if (b, t) in failed:
            record.status, record.failed_phase, record.error = "failed", "provision", "ReadinessTimeout: store exited\nmore"
            run.write_trial(record, pd.DataFrame(columns=TIDY_COLUMNS), None, None, [])
            continue
        rng = np.random.default_rng(t)
        values = {key: v * backends[b].get(key[1], 1.0) * (1 + noise * rng.standard_normal())
                  for key, v in BASE.items()}
        values.update((extra or {}).get((b, t), {}))
        rows = [{**ident, "phase": p, "metric": m, "unit": u, "value": v} for (p, m, u), v in values.items()]
        rows.append({**ident, "phase": "load_cold", "metric": "page_cache_dropped", "unit": "bool",
                     "value": cache_dropped})
        n_q = PARAMS["n_queries"]
        latencies = pd.DataFrame({**ident, "query": range(n_q), "warmup": np.arange(n_q) < PARAMS["warmup_queries"],
                                  "latency_ms": rng.lognormal(np.log(2.5 * backends[b].get("latency", 1.0)), 0.3, n_q)},
                                 columns=LATENCY_COLUMNS)
        run.write_trial(record, pd.DataFrame(rows, columns=TIDY_COLUMNS), latencies, None, [])
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
                    failed={("rustfs", 2)}, cache_dropped=0.0)


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
    """The default study's shape: two real stores beside minio, and minio's two controls. rustfs reloads
    twice as fast; both others build the index 1.5x slower; the handicapped twin loads 1.3x slower."""
    slow = {"load_first_s": 1.3, "load_warm_s": 1.3}
    return make_run(tmp_path_factory.mktemp("controlled"),
                    {"minio": {}, "minio-aa": {}, "minio-slow": slow,
                     "rustfs": {"load_warm_s": 0.5, "index_build_s": 1.5},
                     "seaweedfs": {"index_build_s": 1.6}},
                    trials=4, stores={"minio": "minio", "minio-aa": "minio", "minio-slow": "minio",
                                      "rustfs": "rustfs", "seaweedfs": "seaweedfs"},
                    manifest={"baseline": "minio", "handicaps": {"minio-slow": {"cpu": 0.05}},
                              "controls": {"minio-aa": {"alias_of": "minio"},
                                           "minio-slow": {"alias_of": "minio", "handicap": {"cpu": 0.05}}}})


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
    assert faster.startswith("rustfs is 2") and "faster than minio" in faster and "better" in faster
    higher = rows_of(table, backend="rustfs", metric="insert_rows_per_s").iloc[0]["verdict"]
    assert "higher than minio" in higher and "better" in higher
    same = rows_of(table, backend="minio-b", metric="load_warm_s").iloc[0]["verdict"]
    assert same.startswith("no detectable difference at n=4")


def test_comparison_names_its_methods_and_withholds_untestable_p(full, others):
    table = report.comparison_table(full)
    assert table["CI method"].str.startswith("Fieller").all()
    assert "Fieller" in table.attrs["note"] and "bootstrap" not in table.attrs["note"]
    # rustfs has 3 completed trials, minio 4: 2 / C(7, 3) = 0.057 is the smallest Brunner-Munzel p.
    rustfs = rows_of(table, backend="rustfs")
    assert rustfs["p (Brunner-Munzel)"].str.startswith("not testable at n=3 vs 4").all()
    assert rows_of(table, backend="minio-b")["p (Brunner-Munzel)"].str.match(r"^[<0-9]").all()
    assert table["smallest detectable difference (80% power)"].str.match(r"^(> )?[\d.]+% \((> )?[\d.]+%–").all()
    three = report.comparison_table(others)
    assert three["p (Brunner-Munzel)"].str.startswith("not testable at n=3").all()
    assert "ratio of medians (no CI)" in three.columns


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
    assert table.loc["index_build_s", "verdict"].startswith("no detectable difference here")
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
    assert power.columns[4].startswith("trials per backend to detect a 10% difference")
    assert "decision rule" in power.attrs["note"] and "Holm" in power.attrs["note"]
    assert power.iloc[:, 3].str.match(r"^(> )?[\d.]+% \((> )?[\d.]+%–").all()
    env = report.environment_table(full)
    assert "abababababab" in set(env["value"])


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
                                   "seaweedfs (n=4)", "best real store", "ratio to minio [95% CI]", "difference"]
    assert list(table["metric"]) == [m.name for m in compared(controlled.manifest.params)]
    warm = rows_of(table, metric="load_warm_s").iloc[0]
    assert warm["what it measures"] == "reload: release(), then load(); s, lower is better"
    assert warm["minio (baseline, n=4)"].startswith("4") and "[" in warm["rustfs (n=4)"]


def test_verdict_names_the_best_store_its_ratio_and_whether_it_is_claimed(controlled):
    table = report.verdict(controlled).table.set_index("metric")
    warm = table.loc["load_warm_s"]   # rustfs claimed better: it is the best store
    assert warm["best real store"] == "rustfs" and warm["ratio to minio [95% CI]"].startswith("0.5 [")
    assert warm["difference"].startswith("claimed (Holm-adjusted p")
    index = table.loc["index_build_s"]   # every other store claimed worse: the baseline is best
    assert index["best real store"] == "minio"
    assert index["ratio to minio [95% CI]"].startswith("next best, rustfs: 1.5 [")
    assert index["difference"].startswith("claimed over every other store")
    flush = table.loc["flush_s"]   # the same values everywhere: nothing to claim, and what could have been seen
    assert flush["best real store"] == "none shown at this n (best mean: minio)"
    assert re.fullmatch(r"not detectable at n=4; could have seen (> )?[\d.]+%", flush["difference"])


def test_verdict_summary_says_what_is_claimed_and_that_controls_are_no_candidates(controlled):
    summary = report.verdict(controlled).summary
    assert "**Real stores:** minio (baseline, 4 trials), rustfs (4 trials), seaweedfs (4 trials)." in summary
    assert "load_warm_s: rustfs is 2x faster than minio" in summary
    assert "index_build_s: seaweedfs is 1.6x slower than minio" in summary
    assert "Nothing else is detectable at n=4." in summary
    assert "minio-aa (a second name) and minio-slow (held to 0.05 CPU) are minio itself" in summary
    assert "only in load_first_s, load_warm_s." in summary


@pytest.mark.parametrize("scenario, says", [("single", "only seaweedfs completed a trial"),
                                            ("nothing", "No store completed a trial"),
                                            ("others", "**Claimed**"), ("full", "**No controls ran:**")])
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
                                   "our ratio RustFS/MinIO [95% CI]", "verdict"]
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
    plain, wider = (comparisons.compare(metrics.trial_values(r, compared(r.manifest.params)), "minio",
                                        compared(r.manifest.params)) for r in (full, stopped))
    both = plain.merge(wider, on=["backend", "metric"])
    finite = np.isfinite(both["ratio_mean_low_x"]) & np.isfinite(both["ratio_mean_low_y"])
    low_x, low_y, high_x, high_y = (both[c][finite] for c in ("ratio_mean_low_x", "ratio_mean_low_y",
                                                               "ratio_mean_high_x", "ratio_mean_high_y"))
    assert (low_y <= low_x + 1e-6).all() and (high_y >= high_x - 1e-6).all()   # (a constant ratio: float noise)
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
