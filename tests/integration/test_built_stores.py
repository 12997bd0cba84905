"""MinIO and Garage, built from their own registries (msbench stores install), under real Milvus:
every phase of a trial, a cold restart that keeps their data, and nothing left behind."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.config import make_params
from msbench.results import RunDir
from msbench.run.trial import run_trial
from msbench.run.workload import load_dataset

from .expect import check_trial

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["minio", "garage"])
def test_every_phase_on_a_store_built_from_source(scratch, name):
    backend = load_backends()[name]
    reason = unavailable_reason(backend)
    if reason:
        pytest.skip(f"prerequisite missing for {name}: {reason}")
    params = make_params("smoke")
    run = RunDir(scratch / "runs", name)
    meta = run_trial(run, backend, 1, 0, params, load_dataset(params))
    assert meta.status == "ok", meta.error + meta.traceback
    check_trial(pd.read_parquet(run.path / "results.parquet"), name)
    folder = run.path / "trials" / name / "trial-01"
    assert (folder / "logs" / f"{name}.log").exists()
    assert json.loads((folder / "trial.json").read_text())["cold_load"]["store_restarted"]
    # keys are made per trial in the store's own format; none may reach the published files
    fmt = backend.credentials
    key = re.compile(f"{fmt.get('access_key_prefix', 'msb')}[0-9a-f]{{{fmt.get('access_key_hex', 16)}}}")
    for path in folder.rglob("*"):
        if path.is_file():
            assert not key.search(path.read_text(errors="replace")), f"access key in {path}"
    # the scratch fixture then checks: no process, no stack directory, no temp file left
