"""msbench compare: two runs side by side, on synthetic run folders written as a real run writes them."""
import subprocess
import sys

import pytest

from msbench.config import ConfigError
from msbench.report.compare import compare_runs

from .test_report import make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A: minio and seaweedfs. Run B: minio after an "upgrade" that reloads twice as fast, and a
    deployment named prod."""
    a = make_run(tmp_path_factory.mktemp("a"), {"minio": {}, "seaweedfs": {}}, trials=4)
    b = make_run(tmp_path_factory.mktemp("b"), {"minio": {"load_warm_s": 0.5}, "prod": {"flush_s": 3.0}}, trials=4)
    return a, b


def test_shared_stores_side_by_side_with_one_family(runs):
    a, b = runs
    table = compare_runs(a, b)
    assert set(table["store"]) == {"minio"}   # the only store both ran
    warm = table[table["metric"] == "load_warm_s"].iloc[0]
    assert warm["verdict"] == "better" and warm["ratio B / A [95% CI]"].startswith("0.5")
    insert = table[table["metric"] == "insert_rows_per_s"].iloc[0]
    assert insert["verdict"] == "not detectable" and "(n=4)" in insert["A: mean [95% CI] (n)"]
    assert f"over all {len(table)} comparisons are controlled together" in table.attrs["note"]


def test_a_named_pair_and_chosen_metrics(runs):
    a, b = runs
    table = compare_runs(a, b, metrics=["flush_s"], match={"seaweedfs": "prod"})
    assert table[["store", "metric"]].values.tolist() == [["minio", "flush_s"], ["seaweedfs = prod", "flush_s"]]
    assert table.set_index("store").loc["seaweedfs = prod", "verdict"] == "worse"


@pytest.mark.parametrize("kwargs, message", [
    ({"match": {"seaweedfs": "nope"}}, "--match seaweedfs=nope: nope completed no trial in run B; it has minio, prod"),
    ({"metrics": ["flush"]}, "--metric flush: not a headline metric of both runs"),
])
def test_bad_choices_are_refused_in_one_line(runs, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        compare_runs(*runs, **kwargs)


def test_runs_that_share_nothing_are_refused_in_one_line(tmp_path, runs):
    other = make_run(tmp_path / "c", {"garage": {}}, trials=2)
    out = subprocess.run([sys.executable, "-m", "msbench.cli", "compare", str(runs[0].path), str(other.path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("msbench: error: runs synthetic and synthetic share no store with completed trials")
    assert len(out.stderr.splitlines()) == 1
