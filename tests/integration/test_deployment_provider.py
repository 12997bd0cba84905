"""The deployment provider against a stack it did not provision: a native MinIO + Milvus started
here stands in for a user's cluster, holding a collection and objects that are not the study's.
The study runs through two deployment entries for it, one whose hooks restart the stand-in (a
controllable cold load) and one without hooks; afterwards only the study's collections are gone and
every object that was in the bucket before is there unchanged. A collection of the trial's name
that the study did not make stops the trial untouched, and a dry run plans without contacting
anything."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from msbench.run import study
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.config import make_params
from msbench.providers.deployment import collection_name
from msbench.providers.native import NativeStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

THEIRS = "someone_elses"   # a collection of the "cluster's" own users
THEIR_ROWS = 300


def _bucket(stack) -> dict[str, tuple[int, str]]:
    pages = stack.s3().get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
    return {o["Key"]: (o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])}


class RestartDesk:
    """What the restart hook talks to: a thread of this test that restarts the stand-in's Milvus when
    a line arrives on one FIFO, and answers on another (the hook is a command, the stack lives here).
    The thread lives until the stand-in is gone: a server dies with the thread that started it
    (PR_SET_PDEATHSIG follows the parent thread)."""

    def __init__(self, stack: NativeStack, folder: Path):
        self.stack, self.asks, self.answers = stack, folder / "restart.fifo", folder / "restarted.fifo"
        os.mkfifo(self.asks)
        os.mkfifo(self.answers)
        self.restarts = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def hook(self) -> list[str]:
        return ["sh", "-c", f'echo restart > {self.asks}; read answer < {self.answers}; echo "$answer"; '
                            f'test "$answer" = restarted']

    def _serve(self) -> None:
        while True:
            with open(self.asks) as asks:
                line = asks.read().strip()
            if line != "restart":
                return
            try:
                self.stack.milvus.restart(240)
                self.restarts += 1
                answer = "restarted"
            except Exception as err:   # the hook fails, and says why
                answer = f"failed: {err}"
            with open(self.answers, "w") as out:
                out.write(answer + "\n")

    def close(self) -> None:
        try:
            asks = os.open(self.asks, os.O_WRONLY | os.O_NONBLOCK)   # ENXIO: the thread is gone already
        except OSError:
            return
        os.write(asks, b"stop\n")
        os.close(asks)
        self.thread.join(timeout=30)


def _config(path: Path, stack: NativeStack, desk: RestartDesk) -> Path:
    common = {"milvus": {"uri": stack.uri},
              "s3": {"endpoint": stack.store.endpoint_url, "bucket": stack.bucket, "root_path": "files",
                     "access_key_env": "STANDIN_S3_AK", "secret_key_env": "STANDIN_S3_SK"}}
    path.write_text(json.dumps({"deployments": {
        "standin-hooks": {**common, "description": "the stand-in, restartable by its hooks",
                          "labels": {"store": "MinIO", "layout": "1 process"},
                          "hooks": {"restart_milvus": [desk.hook()], "timeout_s": 300}},
        "standin-plain": {**common, "description": "the stand-in, no hooks"}}}))
    return path


def test_a_deployment_is_measured_and_nothing_but_the_studys_collections_is_touched(scratch, monkeypatch):
    backend = load_backends()["minio"]
    reason = unavailable_reason(backend, install=True)
    if reason:
        pytest.skip(f"prerequisite missing for minio: {reason}")

    desk = None
    try:
        with NativeStack(backend, make_params("smoke"), scratch / "standin-logs") as standin:
            desk = RestartDesk(standin, scratch)
            _measure_the_stand_in(standin, desk, scratch, monkeypatch)
    finally:
        if desk is not None:
            desk.close()


def _measure_the_stand_in(standin: NativeStack, desk: RestartDesk, scratch: Path, monkeypatch) -> None:
    from pymilvus import DataType, MilvusClient

    monkeypatch.setenv("STANDIN_S3_AK", standin.store.access_key)
    monkeypatch.setenv("STANDIN_S3_SK", standin.store.secret_key)
    theirs = MilvusClient(uri=standin.uri)
    schema = theirs.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=8)
    theirs.create_collection(THEIRS, schema=schema)
    theirs.insert(THEIRS, [{"id": i, "v": [float(i % 7)] * 8} for i in range(THEIR_ROWS)])
    theirs.flush(THEIRS)
    standin.s3().put_object(Bucket=standin.bucket, Key="another-tool/notes.txt", Body=b"not the study's")
    theirs.close()
    before = _bucket(standin)
    assert any(k.startswith("files/insert_log/") for k in before) and "another-tool/notes.txt" in before

    config = _config(scratch / "msbench.yaml", standin, desk)
    args = dict(backends="standin-hooks,standin-plain", trials=1, profile="smoke", provider="deployment",
                config=config, results_root=scratch / "runs")
    plan = study.prepare(run_id="deploy", dry_run=True, **args)
    assert not (scratch / "runs").exists()
    for name in ("standin-hooks", "standin-plain"):
        assert collection_name("deploy", name, 1) in plan
    assert "restart_milvus" in plan and "not controllable here" in plan

    s = study.prepare(run_id="deploy", **args)
    outcomes = {o.backend: o for o in study.execute(s, s.run_one, show=False)}
    assert {b: o.status for b, o in outcomes.items()} == {"standin-hooks": "ok", "standin-plain": "ok"}, outcomes
    assert desk.restarts == 1

    run = s.run.path
    trials = pd.read_csv(run / "trials.csv").set_index("backend")
    results = pd.read_csv(run / "results.csv")
    # The cold load ran where hooks restart Milvus, and is said to be not controllable where none do.
    hooked = json.loads((run / "trials" / "standin-hooks" / "trial-01" / "trial.json").read_text())
    [outcome] = hooked["cold_load"]["hooks"]
    assert outcome["hook"] == "restart_milvus" and outcome["exit_code"] == 0 and "restarted" in outcome["output_tail"]
    assert "not controllable here" in str(trials.loc["standin-plain", "skipped_phases"])
    assert "load_cold" not in str(trials.loc["standin-hooks", "skipped_phases"])
    cold = results[results.metric == "load_cold_s"]
    assert set(cold.backend) == {"standin-hooks"} and (cold.value > 0).all()
    for b in ("standin-hooks", "standin-plain"):   # every other phase measured, the footprint the collection's own
        mine = results[results.backend == b]
        assert {"insert", "flush", "index", "load_first", "load_warm", "search", "footprint"} <= set(mine.phase), b
        assert mine[(mine.phase == "footprint") & (mine.metric == "bucket_bytes")].value.iloc[0] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert "STANDIN_S3_AK" in json.dumps(manifest) and standin.store.access_key not in json.dumps(manifest)
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".log", ".jsonl", ""):
            text = path.read_text(errors="replace")
            assert standin.store.secret_key not in text and standin.store.access_key not in text, path

    # Only the study's collections are gone; the bucket's other objects are as they were.
    after_client = MilvusClient(uri=standin.uri)
    assert after_client.list_collections() == [THEIRS]
    assert int(after_client.get_collection_stats(THEIRS)["row_count"]) == THEIR_ROWS
    after = _bucket(standin)
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    print(f"bucket {standin.bucket}: {len(before)} objects before the study, {len(changed)} of them changed or gone "
          f"after it; {len(set(after) - set(before))} new keys (the study's collections' files, until Milvus's GC); "
          f"collections after: {after_client.list_collections()}")
    assert not changed, changed

    # A collection of the trial's name that the study did not make: the trial refuses, touching nothing.
    squatter = collection_name("deploy2", "standin-plain", 1)
    after_client.create_collection(squatter, dimension=8)
    try:
        s2 = study.prepare(**{**args, "backends": "standin-plain"}, run_id="deploy2")
        [refused] = study.execute(s2, s2.run_one, show=False)
        assert refused.status == "failed" and "Refused" in refused.error, refused
        assert "not made by msbench" in refused.error
        assert squatter in after_client.list_collections()
    finally:
        after_client.drop_collection(squatter)
        after_client.close()
