"""Lines of phase time against GB moved: estimates, intervals that hold at a sweep's few points
(seeded simulation), from which size a store differs, the ceiling; and the sweep's report section."""
import re

import numpy as np
import pandas as pd
import papermill
import pytest

from msbench import pipeline
from msbench.analysis import scaling
from msbench.config import Params
from msbench.report import sweep as sweep_report
from msbench.results import (TIDY_COLUMNS, Manifest, RunDir, SizePoint, SweepManifest, TrialRecord, load_sweep)
from msbench.run import schedule

SIZES_GB = [0.05, 0.2, 0.8, 1.6]


def test_an_exact_line_is_recovered_and_too_few_points_give_none():
    fit = scaling.fit_line([0.1, 0.1, 0.5, 1.0], [4.0, 4.0, 8.0, 13.0])
    assert np.allclose(fit.ols, [3.0, 10.0]) and np.allclose(fit.wls, [3.0, 10.0])
    assert fit.interval(1) == pytest.approx((10.0, 10.0))
    assert scaling.fit_line([0.1, 0.5], [1, 2]) is None and scaling.fit_line([0.3] * 4, [1, 2, 3, 4]) is None


@pytest.mark.parametrize("sizes", [SIZES_GB, SIZES_GB[:3]])
@pytest.mark.parametrize("noise", ["constant", "proportional", "mixed"])
def test_intervals_cover_95_percent_at_a_sweeps_few_points(sizes, noise):
    """2 trials per size. Constant noise (Milvus's ticks), noise proportional to the time (a busy
    machine) and their mixture: the intercept, the slope and the ratio of two stores' lines at the
    largest size are each covered at least 93.5% of the time (95% less 3 simulation SEs)."""
    rng = np.random.default_rng(20261202)
    x = np.repeat(sizes, 2)
    a, b, a2, b2 = 3.0, 10.0, 3.0, 13.0
    mu, mu2 = a + b * x, a2 + b2 * x
    sd = {"constant": lambda m: 0.3 + 0 * m, "proportional": lambda m: 0.1 * m,
          "mixed": lambda m: np.sqrt(0.3 ** 2 + (0.1 * m) ** 2)}[noise]
    truth = (a2 + b2 * sizes[-1]) / (a + b * sizes[-1])
    hits = np.zeros(3)
    draws = 1500
    for _ in range(draws):
        base = scaling.fit_line(x, mu + rng.standard_normal(len(x)) * sd(mu))
        other = scaling.fit_line(x, mu2 + rng.standard_normal(len(x)) * sd(mu2))
        (a_lo, a_hi), (b_lo, b_hi) = base.interval(0), base.interval(1)
        _, r_lo, r_hi = scaling.ratio_at(other, base, sizes[-1])
        hits += [a_lo <= a <= a_hi, b_lo <= b <= b_hi, r_lo <= truth <= r_hi]
    assert (hits / draws >= 0.935).all(), hits / draws


def test_a_store_differs_from_the_first_size_that_holds_for_every_larger_one():
    sizes = ["50MB", "200MB", "800MB"]
    ratios = pd.DataFrame({"backend": ["a"] * 3 + ["b"] * 3 + ["c"] * 2, "metric": ["flush_s"] * 8,
                           "size": sizes + sizes + sizes[:2], "differs": [True, False, True, False, True, True,
                                                                          False, False]})
    assert scaling.differs_from(ratios, sizes) == {("a", "flush_s"): "800MB", ("b", "flush_s"): "200MB",
                                                   ("c", "flush_s"): None}


# --- a synthetic sweep: minio, a store 30% slower per GB, and the handicapped twin 2x per GB ---------

PER_GB = {"minio": 1.0, "other": 1.3, "minio-slow": 2.0}


def _write_size(root, label, gb, trials=2):
    run_id = f"sw-{label}"
    run = RunDir(root, run_id)
    order = schedule.plan(sorted(PER_GB), trials, seed=1)
    run.write_manifest(Manifest(run=run_id, params=Params(n_vectors=int(gb * 1e9 / 6200), dim=768),
                                backends=sorted(PER_GB), stores={"minio": "minio", "other": "other",
                                                                 "minio-slow": "minio"},
                                baseline="minio", handicaps={"minio-slow": {"cpu": 0.25}},
                                controls={"minio-slow": {"alias_of": "minio"}}, trials=trials, order=order))
    rng = np.random.default_rng(int(gb * 1000))
    for planned in order:
        b, t = planned.backend, planned.trial
        ident = {"run": run_id, "backend": b, "provider": "native", "trial": t, "seq": planned.seq}
        moved = {"flush": gb / 2, "load_first": gb / 2, "index": gb}
        seconds = {"flush_s": 3 + 10 * PER_GB[b] * gb / 2, "load_first_s": 3.5 + 8 * PER_GB[b] * gb / 2,
                   "index_build_s": 2 + 60 * gb}
        phase_of = {"flush_s": "flush", "load_first_s": "load_first", "index_build_s": "index"}
        rows = [{**ident, "phase": phase_of[m], "metric": m, "value": v * (1 + 0.02 * rng.standard_normal()), "unit": "s"}
                for m, v in seconds.items()]
        rows += [{**ident, "phase": "footprint", "metric": "bucket_bytes", "value": gb * 1e9, "unit": "bytes"},
                 {**ident, "phase": "store_alone", "metric": "warp_get_mib_per_s", "value": 1000 / PER_GB[b],
                  "unit": "MiB/s"}]
        summary = pd.DataFrame(
            [{"phase": p, "operation": "all", "bytes_sent": 0.0 if p == "load_first" else g * 1e9,
              "bytes_received": g * 1e9 if p != "flush" else 0.0, "busy_s": 1.0} for p, g in moved.items()]
            + [{"phase": "load_first", "operation": "GET", "bytes_sent": 0.0, "bytes_received": gb / 2 * 1e9,
                "busy_s": 2.0 * PER_GB[b]}]).assign(**ident)
        record = TrialRecord(run_id, b, b, "native", t, planned.seq, status="ok", failed_phase="")
        run.write_trial(record, pd.DataFrame(rows, columns=TIDY_COLUMNS), None, None, [],
                        {"s3_summary.csv": summary})
    return SizePoint(label, int(gb * 1e9), int(gb * 1e9 / 6200), 768, run_id)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep") / "sw"
    points = [_write_size(root, label, gb) for label, gb in zip(["50MB", "200MB", "800MB", "1.6GB"], SIZES_GB)]
    (root / "sweep.json").write_text(SweepManifest("sw", profile="standard", trials=2, dim=768, points=points).to_json())
    return load_sweep(root)


def test_the_sweep_report_fits_each_store_and_says_from_which_size_it_differs(synthetic, tmp_path):
    table = sweep_report.fit_table(synthetic)
    flush = table[table["time"] == "flush_s"].set_index("backend")
    assert list(flush.index) == ["minio", "other", "minio-slow"]   # baseline, stores, controls
    assert flush.loc["minio", "n (sizes)"] == "8 (4)"
    estimate, low, high = map(float, re.findall(r"[\d.]+", flush.loc["minio", "s per GB moved [95% CI]"]))
    assert low <= 10 <= high and abs(estimate - 10) < 1   # 10 s per GB flushed
    column = "differs from minio by >= 10% from"
    assert flush.loc["minio", column] == "(the baseline)"
    assert flush.loc["minio-slow", column] in ("50MB", "200MB") and flush.loc["other", column] != "50MB"
    index = table[table["time"] == "index_build_s"].set_index("backend")
    assert index.loc["other", column] == "not within the sizes run"   # the same for every store
    text = sweep_report.matters(synthetic)
    assert "minio-slow (handicapped control): from" in text and "Milvus pacing in force: default" in text
    ceiling = sweep_report.ceiling_table(synthetic).set_index(["size", "backend"])
    assert ceiling.loc[("1.6GB", "other"), "warp GET MiB/s [95% CI]"].startswith("769")
    paths = sweep_report.fig_phases(synthetic, tmp_path)
    assert {p.name for p in paths} >= {"sweep_flush.png", "sweep_load_first.png"} and all(p.exists() for p in paths)


def test_the_sweep_notebook_analyses_a_sweep_as_it_is(synthetic, tmp_path):
    """notebooks/sweep.ipynb with no sizes: the answer, the fit table, a figure per phase, the ceiling."""
    out = tmp_path / "sweep-out.ipynb"
    papermill.execute_notebook(str(pipeline.resolve("notebooks/sweep.ipynb")), str(out), kernel_name="python3",
                               progress_bar=False, parameters={"results_root": str(synthetic.path.parent),
                                                               "sweep_id": synthetic.path.name,
                                                               "figures_dir": str(tmp_path / "figures")})
    assert (tmp_path / "figures" / "sweep_flush.png").exists()
    text = out.read_text()
    assert "From which size does the store matter?" in text and "s per GB moved" in text
