"""Every store msbench runs natively, each under real Milvus 2.3.5 for one smoke trial: every phase
measured, a cold restart that keeps the store's data, the store's listeners on loopback only, its
keys in no published file, Milvus's requests kept as a trace that passes its checks, the footprint
after a forced GC, and nothing left behind (the scratch fixture). MinIO and SeaweedFS run in the
end-to-end notebook test (test_run_all_notebook.py, as the default study: no footprint after GC);
these are the others: Garage and RustFS built from crates.io, Ceph RGW from Debian."""
from __future__ import annotations

import ipaddress
import json
import re

import pandas as pd
import psutil
import pytest

from msbench.backends import load_backends
from msbench.config import make_params
from msbench.measure import trace
from msbench.providers.catalog import unavailable_reason
from msbench.results import RunDir
from msbench.run.phases import PHASES, Phase
from msbench.run.trial import run_trial
from msbench.run.workload import load_dataset

from .expect import check_trial

pytestmark = pytest.mark.integration


def _listeners(pids: list[int]) -> set[str]:
    """Every address a process of the store (or a child of one) listens on."""
    found = set()
    for pid in pids:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                found |= {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:
                continue
    return found


@pytest.mark.parametrize("name", ["garage", "rustfs", "ceph-rgw"])
def test_every_phase_on_each_store(scratch, name):
    backend = load_backends()[name]
    reason = unavailable_reason(backend, install=True)
    if reason:
        pytest.skip(f"prerequisite missing for {name}: {reason}")
    params = make_params("smoke")
    run = RunDir(scratch / "runs", name)
    listening = set()

    def insert_and_look(state):
        listening.update(_listeners([p.pid for p in state.stack.store.servers]))
        return PHASES[0].run(state)

    phases = (Phase("insert", insert_and_look), *PHASES[1:])
    record = run_trial(run, backend, 1, 0, params, load_dataset(params), phases=phases)
    assert record.status == "ok", record.error + record.traceback
    check_trial(pd.read_parquet(run.path / "results.parquet"), name)
    assert listening and all(ipaddress.ip_address(ip).is_loopback for ip in listening), listening
    folder = run.path / "trials" / name / "trial-01"
    assert (folder / "logs").is_dir() and record.cold_load["store_restarted"]
    assert "2.3.5" in record.ran["milvus_version"]
    if record.s3_capture.get("enabled"):   # root and tcpdump: the requests were captured, so kept as a trace
        assert record.trace_note == "" and trace.read(folder / trace.TRIAL_FILE).meta.source["backend"] == name
    # keys are made per trial in the store's own format; none may reach the published files
    fmt = backend.credentials
    key = re.compile(f"{fmt.get('access_key_prefix', 'msb')}[0-9a-f]{{{fmt.get('access_key_hex', 16)}}}")
    for path in folder.rglob("*"):
        if path.is_file():
            assert not key.search(path.read_text(errors="replace")), f"access key in {path}"
    assert json.loads((folder / "trial.json").read_text())["status"] == "ok"
    # the scratch fixture then checks: no process, no stack directory, no temp file left
