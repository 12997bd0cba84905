"""A sweep's sizes become workloads before anything runs: parsing, the mapping, the dry run, resume."""
import subprocess
import sys

import pytest

from msbench.config import ConfigError, make_params
from msbench.results import SweepManifest
from msbench.run import sweep


def test_sizes_are_bytes_in_decimal_or_binary_units():
    assert sweep.parse_size("50MB") == 50_000_000 and sweep.parse_size("1.6GB") == 1_600_000_000
    assert sweep.parse_size("512MiB") == 512 * 2**20 and sweep.parse_size(" 2 kb ") == 2000
    assert [label for label, _ in sweep.parse_sizes("800MB,50MB,1.6GB")] == ["50MB", "800MB", "1.6GB"]
    for bad, message in (("50XB", "not valid"), ("MB", "not valid"), ("50MB,0.05GB", "sizes repeat"), ("", "at least one")):
        with pytest.raises(ConfigError, match=message):
            sweep.parse_sizes(bad)


def test_each_size_becomes_vectors_at_the_dimension_by_its_own_index():
    """The same bytes are more IVF_FLAT rows than HNSW rows: IVF_FLAT keeps no graph."""
    points = sweep.ladder("50MB,200MB", 768, "standard", {}, {"200MB": {"index_type": "IVF_FLAT"}}, "s1")
    hnsw = sweep.bucket_bytes_per_vector(make_params("standard", {"dim": 768}))
    ivf = sweep.bucket_bytes_per_vector(make_params("standard", {"dim": 768, "index_type": "IVF_FLAT"}))
    assert hnsw == pytest.approx(6002, abs=2) and ivf < hnsw   # the pilot's 6,001 B a vector at 768
    assert [(p.label, p.n_vectors, p.dim, p.run_id) for p in points] == [
        ("50MB", round(50e6 / hnsw), 768, "s1-50MB"), ("200MB", round(200e6 / ivf), 768, "s1-200MB")]
    assert points[1].overrides == {"index_type": "IVF_FLAT"} and points[0].overrides == {}
    with pytest.raises(ConfigError, match=r"size 5MB is 8\d\d vectors at dim 768: .* at least 13MB"):
        sweep.ladder("5MB", 768, "standard", {}, {}, "s1")


def test_per_size_settings_name_a_size_of_the_ladder():
    assert sweep.parse_at(["1.6GB:index_type=IVF_FLAT", "1.6GB:hnsw_m=8"], ["50MB", "1.6GB"]) == {
        "1.6GB": {"index_type": "IVF_FLAT", "hnsw_m": "8"}}
    with pytest.raises(ConfigError, match="800MB is not a size of this sweep"):
        sweep.parse_at(["800MB:index_type=IVF_FLAT"], ["50MB"])
    with pytest.raises(ConfigError, match="--at takes SIZE:NAME=VALUE"):
        sweep.parse_at(["800MB"], ["800MB"])


def test_the_dry_run_prints_the_ladder_and_writes_nothing(tmp_path, config):
    text = sweep.prepare("20MB,80MB", dim=128, backends="fake", controls=False, sweep_id="dry",
                         results_root=tmp_path / "sweeps", config=config, dry_run=True,
                         at=["80MB:footprint_after_gc=false"])
    assert "nothing was contacted" in text and "backends at every size (1): fake" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("20MB", "80MB"))]
    n20 = round(20e6 / sweep.bucket_bytes_per_vector(make_params("standard", {"dim": 128})))
    assert rows[0][:4] == ["20MB", f"{n20:,}", "x", "128"] and "(no footprint after GC)" in text
    assert not (tmp_path / "sweeps").exists()


def test_a_sweep_is_resumed_only_with_its_own_inputs(tmp_path, config):
    args = dict(backends="fake", controls=False, sweep_id="s", results_root=tmp_path, config=config, dim=128)
    first = sweep.prepare("20MB,80MB", **args)
    recorded = SweepManifest.from_json((tmp_path / "s" / "sweep.json").read_text())
    assert recorded == first.manifest and [p.label for p in recorded.points] == ["20MB", "80MB"]
    again = sweep.prepare("80MB,20MB", **args)   # the same ladder, given in another order
    assert again.manifest == recorded
    with pytest.raises(ConfigError, match="sweep s exists with other sizes"):
        sweep.prepare("20MB,160MB", **args)
    with pytest.raises(ConfigError, match="n_vectors is set by the sweep"):
        sweep.prepare("20MB", overrides={"n_vectors": 10}, **args)


def test_cli_sweep_bad_input_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "msbench.cli", "sweep", "--sizes", "50XB", "--dry-run",
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("msbench: error: size '50XB' is not valid")
