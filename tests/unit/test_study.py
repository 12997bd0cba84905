"""Validation first: bad input is refused before a run folder, a server or an install exists."""
import json
import subprocess
import sys

import numpy as np
import pytest

from msbench.run import study
from msbench.config import ConfigError
from msbench.providers.docker import docker_unavailable_reason

# A backend that is available wherever `true` is on PATH; prepare checks it, never starts it.
FAKE = ('backends:\n  fake: {launcher: process, binary: "true", command: ["${binary}"], '
        'ready_url: "http://127.0.0.1:1/"}\n')


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "msbench.yaml"
    path.write_text(FAKE)
    return path


@pytest.mark.parametrize("kwargs, message", [
    ({"overrides": {"throughput_seconds": "nan"}}, "throughput_seconds must be a finite number, got nan"),
    ({"overrides": {"concurrency": "1,1,1"}}, "concurrency levels must differ, got 1,1,1"),
    ({"overrides": {"top_k": 6000}}, r"top_k \(6000\) must be at most n_vectors \(5000\)"),
    ({"seed": -1}, "seed .* must be a non-negative integer, got -1"),
    ({"backends": "fake,nope"}, "unknown backend"),
    ({"overrides": {"unresponsive_s": 1}}, r"unresponsive_s must be .*5"),
    ({"overrides": {"store_disk_mib": 64}, "provider": "docker"}, "store_disk_mib=64 .* needs provider native"),
])
def test_bad_input_leaves_no_run_folder(tmp_path, config, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        study.prepare(**{"backends": "fake", "results_root": tmp_path / "runs", "config": config, **kwargs})
    assert not (tmp_path / "runs").exists()


def test_a_bad_dataset_leaves_no_run_folder(tmp_path, config):
    np.save(tmp_path / "nan.npy", np.full((300, 4), np.nan, dtype=np.float32))
    with pytest.raises(ConfigError, match="NaN or infinite"):
        study.prepare(backends="fake", results_root=tmp_path / "runs", config=config,
                      overrides={"dataset": str(tmp_path / "nan.npy"), "n_vectors": 100, "n_queries": 20,
                                 "warmup_queries": 2})
    assert not (tmp_path / "runs").exists()


def test_availability_installs_nothing(tmp_path, config, monkeypatch):
    """Without Ceph's tools on PATH the answer is why, at once; apt-get is left to scripts/setup."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="ceph-rgw: Ceph tools not on PATH"):
        study.prepare(backends="ceph-rgw", results_root=tmp_path / "runs", config=config)
    assert not (tmp_path / "runs").exists()


def test_docker_engine_is_checked_up_front(tmp_path, config, monkeypatch):
    """An engine address where nothing answers (whether or not this host runs one elsewhere)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert docker_unavailable_reason()
    with pytest.raises(ConfigError, match="provider docker cannot run here: no Docker engine answers"):
        study.prepare(backends="minio", provider="docker", results_root=tmp_path / "runs", config=config)
    assert not (tmp_path / "runs").exists()


def test_manifest_records_the_data_really_used(tmp_path, config):
    np.save(tmp_path / "wide.npy", np.random.default_rng(0).random((120, 64), dtype=np.float32))
    overrides = {"dataset": str(tmp_path / "wide.npy"), "n_vectors": 100, "n_queries": 20, "warmup_queries": 2}
    s = study.prepare(backends="fake", trials=1, run_id="wide", results_root=tmp_path / "runs", config=config,
                      overrides=overrides)
    manifest = json.loads((s.run.path / "manifest.json").read_text())
    assert manifest["params"]["dim"] == 64 and manifest["dataset"]["dim"] == 64
    assert manifest["dataset"]["n_vectors"] == 100 and len(manifest["dataset"]["sha256"]) == 64
    assert s.data.train.shape == (100, 64)
    again = study.prepare(backends="fake", trials=1, run_id="wide", results_root=tmp_path / "runs", config=config,
                          overrides=overrides)   # the same inputs resume the run
    assert again.params == s.params
    np.save(tmp_path / "wide.npy", np.random.default_rng(1).random((120, 64), dtype=np.float32))
    with pytest.raises(ConfigError, match="exists with other parameters, dataset"):
        study.prepare(backends="fake", trials=1, run_id="wide", results_root=tmp_path / "runs", config=config,
                      overrides=overrides)


def test_cli_run_with_a_bad_value_says_so_in_one_line(tmp_path, config):
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "-m", "msbench.cli", "--config", str(config), "run", "--backends", "fake",
                          "--set", "throughput_seconds=nan", "--results", str(runs), "--no-progress"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == ["msbench: error: throughput_seconds must be a finite number, got nan"]
    assert not runs.exists()
