"""Validation first: bad input is refused before a run folder, a server or an install exists."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from msbench.run import study
from msbench.config import ConfigError
from msbench.providers.docker import docker_unavailable_reason
from msbench.results import TrialRecord


def _prepare(**kwargs):
    """The smoke profile and no controls unless a test says otherwise (the defaults run the default study)."""
    return study.prepare(**{"profile": "smoke", "controls": False, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"overrides": {"throughput_seconds": "nan"}}, "throughput_seconds must be a finite number, got nan"),
    ({"overrides": {"concurrency": "1,1,1"}}, "concurrency levels must differ, got 1,1,1"),
    ({"overrides": {"top_k": 6000}}, r"top_k \(6000\) must be at most n_vectors \(5000\)"),
    ({"seed": -1}, r"seed .* must be an integer of at least 0, got -1"),
    ({"backends": "fake,nope"}, "unknown backend"),
    ({"overrides": {"unresponsive_s": 1}}, r"unresponsive_s must be .*5"),
    ({"overrides": {"store_disk_mib": 64}, "provider": "docker"}, "store_disk_mib=64 .* needs provider native"),
    ({"overrides": {"milvus_pacing": "fast"}}, "milvus_pacing 'fast' is not valid; valid: default, fine"),
    ({"overrides": {"milvus_pacing": "fine"}, "provider": "deployment"}, "milvus_pacing=fine needs a Milvus msbench starts"),
    ({"controls": "slow,ab"}, "controls slow,ab not valid; valid: true, false or some of aa, slow"),
])
def test_bad_input_leaves_no_run_folder(tmp_path, config, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _prepare(**{"backends": "fake", "results_root": tmp_path / "runs", "config": config, **kwargs})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_bad_dataset_leaves_no_run_folder(tmp_path, config, dry_run):
    """A dry run checks a file's contents as a real run does (NaN rows, the wrong shape)."""
    np.save(tmp_path / "nan.npy", np.full((300, 4), np.nan, dtype=np.float32))
    np.save(tmp_path / "flat.npy", np.zeros(300, dtype=np.float32))
    for name, message in (("nan.npy", "NaN or infinite"), ("flat.npy", "must be a non-empty 2-d array")):
        with pytest.raises(ConfigError, match=message):
            _prepare(backends="fake", results_root=tmp_path / "runs", config=config, dry_run=dry_run,
                     overrides={"dataset": str(tmp_path / name), "n_vectors": 100, "n_queries": 20,
                                "warmup_queries": 2})
    assert not (tmp_path / "runs").exists()


def test_availability_installs_nothing(tmp_path, config, monkeypatch):
    """Without Ceph's tools on PATH the answer is why, at once; apt-get is left to scripts/setup."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="ceph-rgw: Ceph tools not on PATH"):
        _prepare(backends="ceph-rgw", results_root=tmp_path / "runs", config=config)
    assert not (tmp_path / "runs").exists()


def test_docker_engine_is_checked_up_front(tmp_path, config, monkeypatch):
    """An engine address where nothing answers (whether or not this host runs one elsewhere)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert docker_unavailable_reason()
    with pytest.raises(ConfigError, match="provider docker cannot run here: no Docker engine answers"):
        _prepare(backends="minio", provider="docker", results_root=tmp_path / "runs", config=config)
    assert not (tmp_path / "runs").exists()


def test_manifest_records_the_data_really_used(tmp_path, config):
    np.save(tmp_path / "wide.npy", np.random.default_rng(0).random((120, 64), dtype=np.float32))
    overrides = {"dataset": str(tmp_path / "wide.npy"), "n_vectors": 100, "n_queries": 20, "warmup_queries": 2}
    s = _prepare(backends="fake", trials=1, run_id="wide", results_root=tmp_path / "runs", config=config,
                      overrides=overrides)
    manifest = json.loads((s.run.path / "manifest.json").read_text())   # as a user reads it
    assert manifest["params"]["dim"] == 64 and manifest["dataset"]["dim"] == 64
    assert manifest["dataset"]["n_vectors"] == 100 and len(manifest["dataset"]["sha256"]) == 64
    assert s.data.train.shape == (100, 64)
    again = _prepare(backends="fake", trials=1, run_id="wide", results_root=tmp_path / "runs", config=config,
                          overrides=overrides)   # the same inputs resume the run
    assert again.params == s.params
    np.save(tmp_path / "wide.npy", np.random.default_rng(1).random((120, 64), dtype=np.float32))
    with pytest.raises(ConfigError, match="exists with other parameters, dataset"):
        _prepare(backends="fake", trials=1, run_id="wide", results_root=tmp_path / "runs", config=config,
                      overrides=overrides)


def _msbench_run(config, *args: str) -> subprocess.CompletedProcess:
    """`msbench run` of the fake backend at the smoke profile, as a user types it."""
    return subprocess.run([sys.executable, "-m", "msbench.cli", "--config", str(config), "run", "--backends", "fake",
                           "--profile", "smoke", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--set", "throughput_seconds=nan"], "throughput_seconds must be a finite number, got nan"),
    (["--results", "{file}"], "results folder {file} is a file, not a folder; give a folder (default data/runs)"),
])
def test_cli_run_with_bad_input_says_so_in_one_line(tmp_path, config, args, message):
    runs, file = tmp_path / "runs", tmp_path / "a-file"
    file.write_text("not a folder")
    args = [a.format(file=file) for a in args]
    out = _msbench_run(config, "--no-controls", "--results", str(runs), *args, "--no-progress")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"msbench: error: {message.format(file=file)}"]
    assert not runs.exists() and file.read_text() == "not a folder"


def test_a_run_is_not_resumed_on_other_software(tmp_path, config):
    """Rounds run on another commit, binary or machine are not mixed into a run: the resume names what differs."""
    s = _prepare(backends="fake", trials=1, run_id="moved", results_root=tmp_path / "runs", config=config)
    s.manifest.msbench = {**s.manifest.msbench, "commit": "0" * 40}
    s.manifest.host = {**s.manifest.host, "cores": 64}
    s.run.write_manifest(s.manifest)
    with pytest.raises(ConfigError, match=r"cannot be resumed here: .*host cores: 64 then, \d+ now.*msbench commit: 0{40} then"):
        _prepare(backends="fake", trials=1, run_id="moved", results_root=tmp_path / "runs", config=config)
    # once every trial is done, nothing would be mixed: the run reopens (for its analysis) as recorded
    folder = s.run.trial_path("fake", 1)
    folder.mkdir(parents=True)
    (folder / "trial.json").write_text(TrialRecord(run="moved", backend="fake", store="fake", provider="native",
                                                   trial=1, seq=0, status="ok").to_json())
    reopened = _prepare(backends="fake", trials=1, run_id="moved", results_root=tmp_path / "runs", config=config)
    assert not reopened.pending() and reopened.manifest.msbench["commit"] == "0" * 40


@pytest.mark.parametrize("args, twins", [(["--controls", "slow"], ["fake-slow"]), (["--controls"], ["fake-aa", "fake-slow"]),
                                         (["--no-controls"], [])])
def test_cli_run_names_its_controls_as_a_sweep_does(tmp_path, config, args, twins):
    out = _msbench_run(config, "--trials", "1", "--results", str(tmp_path / "runs"), *args, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert re.findall(r"^backend (fake-\w+):", out.stdout, re.M) == twins
    assert not (tmp_path / "runs").exists()
