"""The deployment provider's pure parts: the msbench.yaml schema, collection names and the refusal
rule, footprint attribution, hooks (real short commands), the dry run, and credentials kept out of
every record. Nothing here contacts a Milvus or a store (the integration test does)."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from msbench import cli
from msbench.measure import provenance
from msbench.run import study
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.config import ConfigError, Params, load_user_config
from msbench.providers.deployment import (MARKER, NO_STORE_ALONE, NOT_CONTROLLABLE, DeploymentStack, Refused, claim,
                                          collection_name, collection_objects, marked_by, marker, run_hook)

SECRETS = {"T_MILVUS": "tok-3f9a1c", "T_AK": "AKIA-77e2b4", "T_SK": "sk-5d0c81e9"}
GOOD = {
    "description": "MinIO 4-node EC",
    "labels": {"store": "MinIO", "layout": "4-node EC"},
    "milvus": {"uri": "http://milvus.example:19530", "token_env": "T_MILVUS"},
    "s3": {"endpoint": "http://minio.example:9000", "bucket": "milvus-bucket", "root_path": "files",
           "access_key_env": "T_AK", "secret_key_env": "T_SK"},
    "hooks": {"restart_milvus": [["true"], ["sh", "-c", "echo ready"]], "drop_page_cache": [["true"]],
              "timeout_s": 30},
}


def _config(tmp_path: Path, **deployments) -> Path:
    path = tmp_path / "msbench.yaml"
    path.write_text(json.dumps({"deployments": deployments}))   # JSON is YAML
    return path


@pytest.fixture()
def creds(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def _with(section: str, **fields) -> dict:
    return {**GOOD, section: {**GOOD[section], **fields}} if section else {**GOOD, **fields}


def test_a_deployment_is_parsed_with_its_defaults(tmp_path):
    raw = _with("s3", root_path="/files/")
    del raw["hooks"]
    d = load_user_config(_config(tmp_path, prod=raw)).deployments["prod"]
    assert (d.milvus_uri, d.s3_endpoint, d.bucket, d.root_path, d.region) == \
        ("http://milvus.example:19530", "http://minio.example:9000", "milvus-bucket", "files", "us-east-1")
    assert d.hooks == {} and d.hook_timeout_s == 600.0 and d.labels == {"store": "MinIO", "layout": "4-node EC"}
    assert d.credential_envs == {"Milvus token": "T_MILVUS", "S3 access key": "T_AK", "S3 secret key": "T_SK"}


@pytest.mark.parametrize("raw, message", [
    (_with("milvus", uri="milvus:19530"), r"deployments\.prod\.milvus\.uri must be an http:// or https:// URL"),
    (_with("milvus", uri="http://root:Milvus@milvus:19530"), r"milvus\.uri must be .*no user or password in it"),
    (_with("s3", endpoint="http://minio:port"), r"s3\.endpoint must be an http:// or https:// URL"),
    (_with("s3", bucket="Milvus_Bucket"), r"s3\.bucket must be an S3 bucket name"),
    (_with("s3", access_key_env="my key"), r"s3\.access_key_env must be the name of an environment variable"),
    (_with("s3", root_path="../other"), r"s3\.root_path must be Milvus's minio\.rootPath"),
    (_with("hooks", restart_milvus="kubectl rollout restart x"), r"hooks\.restart_milvus must be a list of commands, "
                                                                 r"each a list of words"),
    (_with("hooks", drop_page_cache=[["ssh", "n1", 3]]), r"hooks\.drop_page_cache must be a list of commands"),
    (_with("hooks", restart_store=[[]]), r"hooks\.restart_store must be a list of commands"),
    (_with("hooks", timeout_s=0), r"hooks\.timeout_s must be a number of seconds above 0"),
    (_with("hooks", restart=[["true"]]), r"deployments\.prod\.hooks: unknown keys \['restart'\]; valid: "
                                         r"restart_store, drop_page_cache, restart_milvus, timeout_s"),
    (_with("", labels={"nodes": 4}), r"labels must be a mapping of names to strings"),
    (_with("", milvus={"token_env": "T"}), r"deployments\.prod\.milvus needs uri$"),
    (_with("", s3={"endpoint": "http://m:9000"}), r"s3 needs bucket, access_key_env, secret_key_env$"),
    (_with("", store="minio"), r"deployments\.prod: unknown keys \['store'\]; valid: description, labels, milvus"),
])
def test_a_bad_deployment_is_refused_in_one_line_naming_the_field(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_user_config(_config(tmp_path, prod=raw))
    assert "\n" not in str(err.value)


def test_a_deployment_name_must_fit_a_collection_name_and_not_clash(tmp_path):
    with pytest.raises(ConfigError, match=r"deployment name '1prod' must start with a letter"):
        load_user_config(_config(tmp_path, **{"1prod": GOOD}))
    with pytest.raises(ConfigError, match=r"deployment\(s\) minio .* have the name of a built-in backend"):
        load_backends(load_user_config(_config(tmp_path, minio=GOOD)))


def test_a_deployment_runs_under_the_deployment_provider_only_and_names_a_missing_variable(tmp_path, monkeypatch,
                                                                                         creds):
    user = load_user_config(_config(tmp_path, prod=GOOD))
    registry = load_backends(user)
    assert registry["prod"].launcher == "deployment" and registry["prod"].description == "MinIO 4-node EC"
    assert "--provider deployment" in unavailable_reason(registry["prod"], user, provider="native")
    assert "the deployment provider runs" in unavailable_reason(registry["seaweedfs"], user, provider="deployment")
    assert unavailable_reason(registry["prod"], user, provider="deployment") is None
    monkeypatch.delenv("T_SK")
    assert unavailable_reason(registry["prod"], user, provider="deployment") == (
        "credentials missing: environment variables T_SK are not set (export them; their values are read when "
        "used, never stored)")
    monkeypatch.setenv("T_SK", "x")
    bad = load_user_config(_config(tmp_path, prod=_with("hooks", restart_milvus=[["no-such-program-7c1", "x"]])))
    assert unavailable_reason(load_backends(bad)["prod"], bad, provider="deployment") == \
        "hook program(s) no-such-program-7c1 not found on PATH"


def test_collection_names_are_unique_per_trial_and_valid_for_milvus():
    name = collection_name("20261127-211903-standard", "minio-4node", 3)
    assert name == "msbench_20261127_211903_standard_minio_4node_t03"
    assert collection_name("r", "b", 1) != collection_name("r", "b", 2) != collection_name("r", "c", 2)


def test_the_marker_names_its_trial_and_nothing_else_passes_for_it():
    assert marked_by(marker("r1", "prod", 2)) == {"run": "r1", "backend": "prod", "trial": 2}
    assert marked_by("my production vectors") is None and marked_by(MARKER + "{not json") is None


def test_the_refusal_rule_on_a_view_of_existing_collections():
    existing = {"msbench_r1_prod_t01": marker("r1", "prod", 1),      # an earlier attempt of this very trial
                "msbench_r1_prod_t02": "customer embeddings",          # someone else's
                "msbench_r1_prod_t03": marker("r0", "prod", 3)}        # another run's (a name collision)
    assert claim("msbench_r1_prod_t01", existing.get("msbench_r1_prod_t01"), "r1", "prod", 1) is True
    assert claim("msbench_r1_prod_t04", existing.get("msbench_r1_prod_t04"), "r1", "prod", 4) is False
    with pytest.raises(Refused, match=r"collection 'msbench_r1_prod_t02' already exists and was not made by msbench: "
                                      r"refusing to run this trial, nothing was touched"):
        claim("msbench_r1_prod_t02", existing["msbench_r1_prod_t02"], "r1", "prod", 2)
    with pytest.raises(Refused, match=r"made by msbench for run 'r0', backend 'prod', trial 3"):
        claim("msbench_r1_prod_t03", existing["msbench_r1_prod_t03"], "r1", "prod", 3)


def _stack(tmp_path, user, trial=1) -> DeploymentStack:
    backend = load_backends(user)["prod"]
    return DeploymentStack(backend, Params(), tmp_path / "logs", user, run="r1", trial=trial)


class FakeClient:
    """A Milvus that holds collections by name -> description, and says what was dropped."""

    def __init__(self, collections):
        self.collections, self.dropped, self.closed = dict(collections), [], False

    def has_collection(self, name, timeout):
        assert timeout
        return name in self.collections

    def describe_collection(self, name, timeout):
        return {"description": self.collections[name], "collection_id": 7}

    def drop_collection(self, name, timeout):
        self.dropped.append(name)
        del self.collections[name]

    def close(self):
        self.closed = True


@pytest.mark.parametrize("description, dropped", [(marker("r1", "prod", 1), ["msbench_r1_prod_t01"]),
                                                  ("customer embeddings", []), (None, [])])
def test_teardown_drops_the_trials_own_collection_only(tmp_path, creds, description, dropped):
    stack = _stack(tmp_path, load_user_config(_config(tmp_path, prod=GOOD)))
    stack.client = FakeClient({} if description is None else {stack.collection: description})
    stack.close()
    assert stack.client.dropped == dropped and stack.client.closed


def test_footprint_counts_the_collections_own_prefixes_and_its_partitions_index_files():
    listing = {"files/insert_log/7/70/700/100/1": 100, "files/insert_log/7/70/701/100/1": 50,
               "files/stats_log/7/70/700/100/1": 10, "files/delta_log/7/70/700/1": 5,
               "files/insert_log/8/80/800/100/1": 1000,                    # another collection
               "files/index_files/9001/1/70/700/HNSW_1": 400,               # ours: partition 70
               "files/index_files/9002/1/80/800/HNSW_1": 4000,              # partition 80: not ours
               "other/insert_log/7/70/700/100/1": 7}                        # outside the root path
    assert collection_objects(listing, "files", 7) == {
        "files/insert_log/7/70/700/100/1": 100, "files/insert_log/7/70/701/100/1": 50,
        "files/stats_log/7/70/700/100/1": 10, "files/delta_log/7/70/700/1": 5, "files/index_files/9001/1/70/700/HNSW_1": 400}
    assert collection_objects({"insert_log/7/70/700/100/1": 1, "index_files/1/1/70/700/x": 2}, "", "7") == \
        {"insert_log/7/70/700/100/1": 1, "index_files/1/1/70/700/x": 2}


def test_a_hook_outcome_records_command_exit_code_seconds_and_output(tmp_path):
    ok = run_hook("restart_milvus", ("sh", "-c", "echo one; echo two >&2; echo tok-3f9a1c"), 10, tmp_path / "a.log",
                  ["tok-3f9a1c"])
    assert ok["exit_code"] == 0 and not ok["timed_out"] and ok["command"] == "sh -c 'echo one; echo two >&2; echo tok-3f9a1c'"
    assert ok["output_tail"] == "one\ntwo\n<redacted>" and 0 <= ok["seconds"] < 5
    failed = run_hook("restart_milvus", ("false",), 10, tmp_path / "b.log")
    assert failed["exit_code"] == 1 and failed["output_tail"] == ""
    missing = run_hook("drop_page_cache", ("no-such-program-7c1",), 10, tmp_path / "c.log")
    assert missing["exit_code"] is None and missing["error"].startswith("FileNotFoundError")


def test_a_hook_that_overruns_is_killed_with_what_it_started(tmp_path):
    out = run_hook("restart_store", ("sh", "-c", "echo waiting; sleep 30; echo never"), 0.3, tmp_path / "d.log")
    assert out["timed_out"] and out["exit_code"] is None and out["output_tail"] == "waiting"
    assert out["seconds"] < 5   # the sleep (a grandchild) did not hold the hook open


def test_a_cold_restart_runs_the_hooks_in_order_and_records_each(tmp_path, creds):
    raw = _with("hooks", restart_store=[["true"]], drop_page_cache=[["false"]], restart_milvus=[["echo", "up"]])
    stack = _stack(tmp_path, load_user_config(_config(tmp_path, prod=raw)))
    stack.store = SimpleNamespace(restartable=True)
    happened = stack.restart()
    assert [h["hook"] for h in happened["hooks"]] == ["restart_store", "drop_page_cache", "restart_milvus"]
    assert happened["milvus_restarted"] and happened["store_restarted"] and not happened["page_cache_dropped"]
    assert happened["page_cache_note"].startswith("drop_page_cache: `false` exited 1")
    assert (tmp_path / "logs" / "hooks" / "restart_milvus-1.log").read_text() == "up\n"


def test_a_failed_restart_hook_fails_the_cold_load(tmp_path, creds):
    raw = _with("hooks", restart_milvus=[["sh", "-c", "echo rollout failed; exit 3"], ["true"]])
    stack = _stack(tmp_path, load_user_config(_config(tmp_path, prod=raw)))
    with pytest.raises(RuntimeError, match=r"cold restart hook restart_milvus: `sh -c 'echo rollout failed; exit 3'` "
                                           r"exited 3 after .* s; last output: 'rollout failed'"):
        stack.restart()


def test_without_restart_hooks_the_cold_load_is_not_controllable_and_warp_never_runs(tmp_path, creds):
    raw = {k: v for k, v in GOOD.items() if k != "hooks"}
    stack = _stack(tmp_path, load_user_config(_config(tmp_path, prod=raw)))
    assert stack.skipped_phases() == {"store_alone": NO_STORE_ALONE, "load_cold": NOT_CONTROLLABLE}
    assert _stack(tmp_path, load_user_config(_config(tmp_path, prod=GOOD))).skipped_phases() == \
        {"store_alone": NO_STORE_ALONE}


def test_credentials_stay_out_of_the_description_the_stack_and_its_repr(tmp_path, creds):
    user = load_user_config(_config(tmp_path, prod=GOOD))
    facts = provenance.component_facts(load_backends(user)["prod"], user)
    assert facts["credentials from"] == "Milvus token $T_MILVUS, S3 access key $T_AK, S3 secret key $T_SK"
    assert facts["milvus"] == "http://milvus.example:19530" and facts["hook restart_milvus"] == "true; then sh -c 'echo ready'"
    stack = _stack(tmp_path, user)
    dumped = json.dumps(facts) + repr(user) + repr(stack) + json.dumps(stack.params.as_dict())
    assert not any(secret in dumped for secret in SECRETS.values())
    assert sorted(stack.secrets()) == sorted(SECRETS.values())   # held only to be redacted


def test_the_dry_run_prints_the_plan_and_touches_nothing(tmp_path, creds, capsys, monkeypatch):
    monkeypatch.setattr("socket.socket.connect", lambda *a: pytest.fail("a dry run made a connection"))
    config = _config(tmp_path, prod=GOOD, lab={k: v for k, v in GOOD.items() if k != "hooks"})
    code = cli.main(["--config", str(config), "run", "--provider", "deployment", "--dry-run", "--trials", "2",
                     "--run-id", "r1", "--results", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "runs").exists()
    assert out.startswith("dry run: nothing was contacted, no file was written\nrun r1 (pass --run-id r1 to run this "
                          "plan), provider deployment, profile standard, 2 trial(s) per backend, 4 trials\n")
    assert "deployment prod:\n  description: MinIO 4-node EC\n  milvus: http://milvus.example:19530\n" in out
    assert "  hook restart_milvus: true; then sh -c 'echo ready'\n" in out
    assert "deployment lab:\n" in out and f"  phase load_cold: {NOT_CONTROLLABLE}\n" in out
    assert "phases of each trial: insert, flush, index, load_first" in out   # as results name them
    trials = [line for line in out.splitlines() if line.startswith("  #")]
    assert len(trials) == 4 and "  #1 (round 1) " in trials[0]
    assert sorted(t.split(": collection ")[1] for t in trials) == [
        f"{collection_name('r1', b, n)}, created and dropped" for b in ("lab", "prod") for n in (1, 2)]
    assert not any(secret in out for secret in SECRETS.values())


def test_controls_are_refused_under_the_deployment_provider(tmp_path, creds):
    with pytest.raises(ConfigError, match=r"^controls need stores msbench runs"):
        study.prepare(backends="prod", provider="deployment", controls=True, config=_config(tmp_path, prod=GOOD),
                      results_root=tmp_path / "runs", dry_run=True)
