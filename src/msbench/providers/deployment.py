"""The deployment provider: an existing Milvus and the bucket it persists into, nothing provisioned.

Each trial works in a collection of its own (``collection_name``), created with a marker in its
description that says which study trial made it, and dropped when the trial ends. A collection of
that name that the trial did not make is never touched: the trial refuses to run. The footprint is
the collection's own objects in the bucket (``collection_objects``); nothing else in Milvus or the
bucket is written or deleted, and the store-alone phase (warp writes a bucket of its own) does not
run. A cold load runs the user's hooks (``run_hook``), or is recorded as not controllable here.
Credentials are read from the environment when used, and kept in memory only.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from msbench.config import HOOKS, ConfigError, Deployment
from msbench.providers import PROBE_TIMEOUT_S, StackBase, Watched
from msbench.providers.s3 import s3_client

PROVIDER = "deployment"
REMOTE_TIMEOUT_S = 30.0      # every call msbench makes to the deployment itself (the phases' waits have their own)
OUTPUT_LINES = 20            # of a hook's output, kept in the record
MARKER = "made by msbench for one study trial, dropped after it: "
BINLOG_PREFIXES = ("insert_log", "stats_log", "delta_log")   # <root>/<prefix>/<collection>/<partition>/...
INDEX_PREFIX = "index_files"                                   # <root>/index_files/<build>/<version>/<partition>/...
NOT_CONTROLLABLE = ("not controllable here: no hooks.restart_milvus for this deployment in msbench.yaml (without "
                    "a restart, a reload is a warm one)")
NO_STORE_ALONE = "not run on an existing deployment: warp would write a bucket of its own into your store"
ISOLATION = ("each trial creates its own collection, marked as the study's in its description, and drops it "
             "afterwards; a collection of that name not made by that trial stops the trial untouched; nothing "
             "else in Milvus or the bucket is written or deleted (the bucket is only listed: the collection's "
             "prefixes and the names under index_files/)")


class Refused(RuntimeError):
    """The trial's collection exists and is not the trial's own: nothing is touched."""


class HookFailed(RuntimeError):
    """A restart hook did not succeed: a cold load after it would not be one."""


def collection_name(run: str, backend: str, trial: int) -> str:
    """Unique per trial and a valid Milvus name (letters, digits, '_')."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"msbench_{run}_{backend}_t{trial:02d}")


def marker(run: str, backend: str, trial: int) -> str:
    """The description a trial's collection is created with: how a later look tells it is the study's."""
    return MARKER + json.dumps({"run": run, "backend": backend, "trial": trial}, sort_keys=True)


def marked_by(description: str) -> dict | None:
    """The study trial a collection's description names, or None when the study did not make it."""
    if not description.startswith(MARKER):
        return None
    try:
        found = json.loads(description[len(MARKER):])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def claim(name: str, description: str | None, run: str, backend: str, trial: int) -> bool:
    """Whether the trial may use collection ``name``, whose description is ``description`` (None: it
    does not exist). True: it is a leftover of this very trial (an earlier attempt that was cut short),
    to be dropped first. Raises Refused for any other existing collection: it is not ours to touch."""
    if description is None:
        return False
    found = marked_by(description)
    if found == {"run": run, "backend": backend, "trial": trial}:
        return True
    whose = (f"made by msbench for run {found.get('run')!r}, backend {found.get('backend')!r}, trial "
             f"{found.get('trial')!r}" if found is not None else "not made by msbench")
    raise Refused(f"collection {name!r} already exists and was {whose}: refusing to run this trial, nothing was "
                  f"touched (drop or rename that collection yourself, or use another --run-id)")


def collection_objects(listing: dict[str, int], root: str, collection_id: int | str) -> dict[str, int]:
    """The objects of one collection among ``listing`` (key -> size, keys under ``root``).

    Its binlogs carry its id: <root>/{insert,stats,delta}_log/<collection>/<partition>/... . Its index
    files do not: Milvus (2.3 to 2.6, metautil.BuildSegmentIndexFilePath) writes them under
    <root>/index_files/<build>/<version>/<partition>/<segment>/, and reports no build ids through its
    API. They are attributed through the partition: partition ids are unique in a cluster, and the
    collection's own are in its binlogs' paths. An index file of a partition with no binlog left is
    not counted (a lower bound, not a guess)."""
    base = f"{root}/" if root else ""
    own, partitions, index = {}, set(), {}
    for key, size in listing.items():
        parts = key[len(base):].split("/") if key.startswith(base) else []
        if len(parts) > 3 and parts[0] in BINLOG_PREFIXES and parts[1] == str(collection_id):
            own[key] = size
            partitions.add(parts[2])
        elif len(parts) > 5 and parts[0] == INDEX_PREFIX:
            index[key] = (parts[3], size)
    return {**own, **{key: size for key, (partition, size) in index.items() if partition in partitions}}


def run_hook(hook: str, argv: tuple[str, ...], timeout_s: float, log: Path, secrets: Iterable[str] = ()) -> dict:
    """Run one of the user's hook commands (no shell) with its output in ``log``; its outcome for the
    record: the command, exit code (None: it did not finish or start), seconds, the last lines of its
    output with ``secrets`` redacted. On a timeout, or an interruption of ours, its process group (its
    own session: what it started, nothing else) is killed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    outcome = {"hook": hook, "command": shlex.join(argv), "exit_code": None, "timed_out": False}
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as err:
            outcome["error"] = f"{type(err).__name__}: {err.strerror or err}"
            proc = None
        try:
            if proc is not None:
                outcome["exit_code"] = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            outcome["timed_out"] = True
        finally:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log.read_text(errors="replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    outcome.update(seconds=round(time.monotonic() - began, 3), output_tail="\n".join(text.splitlines()[-OUTPUT_LINES:]))
    return outcome


def _said(outcome: dict) -> str:
    how = "timed out" if outcome["timed_out"] else outcome.get("error") or f"exited {outcome['exit_code']}"
    tail = outcome["output_tail"].splitlines()[-1:] or [""]
    return f"{outcome['hook']}: `{outcome['command']}` {how} after {outcome['seconds']:g} s; last output: {tail[0]!r}"


def skipped(deployment: Deployment) -> dict[str, str]:
    """The phases that do not run on this deployment, and why."""
    out = {"store_alone": NO_STORE_ALONE}
    if not deployment.hooks.get("restart_milvus"):
        out["load_cold"] = NOT_CONTROLLABLE
    return out


def describe(d: Deployment) -> dict[str, str]:
    """For the manifest and the report's environment section: where, what, which hooks, and which
    variables hold the credentials (their names, never their values)."""
    return {"description": d.description or "none", "milvus": d.milvus_uri, "s3 endpoint": d.s3_endpoint,
            "bucket": d.bucket, "root path": d.root_path or "(none)", "region": d.region,
            "labels": ", ".join(f"{k}={v}" for k, v in d.labels.items()) or "none",
            "credentials from": ", ".join(f"{what} ${env}" for what, env in d.credential_envs.items()),
            **{f"hook {hook}": "; then ".join(shlex.join(c) for c in d.hooks[hook]) for hook in HOOKS
               if hook in d.hooks},
            "hook timeout (s)": f"{d.hook_timeout_s:g} per command",
            **{f"phase {phase}": why for phase, why in skipped(d).items()},
            "isolation": ISOLATION,
            "garbage collection": "the deployment's own dataCoord.gc settings (not msbench's milvus_gc_config)"}


@dataclass
class DeploymentStore:
    """The deployment's store as the phases see it; the keys are read from the environment when made."""

    endpoint_url: str
    host: str
    port: int
    restartable: bool                       # only by the user's restart_store hooks
    access_key: str = field(repr=False, default="")
    secret_key: str = field(repr=False, default="")


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} is not set (it holds a credential of the deployment)")
    return value


@dataclass
class DeploymentStack(StackBase):
    """Entering checks that Milvus answers and the bucket is reachable, and claims the trial's
    collection (``claim``); leaving drops that collection, and only if it is the trial's own."""

    run: str = ""
    trial: int = 0
    provider: str = PROVIDER
    deployment: Deployment = field(init=False)
    store: DeploymentStore | None = field(default=None, init=False)
    client: object = field(default=None, init=False, repr=False)   # pymilvus MilvusClient, the stack's own
    collection_id: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.deployment = self.user.deployments[self.backend.name]
        self.bucket = self.deployment.bucket
        self.collection = collection_name(self.run, self.backend.name, self.trial)
        self.collection_description = marker(self.run, self.backend.name, self.trial)

    @property
    def uri(self) -> str:
        return self.deployment.milvus_uri

    def milvus_token(self) -> str:
        """Read when used, never stored."""
        env = self.deployment.milvus_token_env
        return _env(env) if env else ""

    def secrets(self) -> list[str]:
        """Every credential variable's value, set or not (never raises: it runs while a failure is recorded)."""
        return [os.environ.get(env, "") for env in self.deployment.credential_envs.values()]

    def s3(self):
        return s3_client(self.store, region=self.deployment.region)

    def start(self) -> dict[str, float]:
        from pymilvus import MilvusClient   # imported on use: a dry run and the manifest need none of it

        d = self.deployment
        url = urlparse(d.s3_endpoint)
        self.store = DeploymentStore(d.s3_endpoint, url.hostname, url.port or (443 if url.scheme == "https" else 80),
                                     bool(d.hooks.get("restart_store")), _env(d.access_key_env), _env(d.secret_key_env))
        began = time.monotonic()
        self.client = MilvusClient(uri=self.uri, token=self.milvus_token(), timeout=REMOTE_TIMEOUT_S)
        self.client.get_server_version(timeout=REMOTE_TIMEOUT_S)
        self.s3().head_bucket(Bucket=self.bucket)
        if claim(self.collection, self._description(), self.run, self.backend.name, self.trial):
            self.client.drop_collection(self.collection, timeout=REMOTE_TIMEOUT_S)
        return {"deployment_ready_s": time.monotonic() - began}

    def _description(self) -> str | None:
        """The trial's collection's description, None when there is no such collection."""
        if not self.client.has_collection(self.collection, timeout=REMOTE_TIMEOUT_S):
            return None
        return self.client.describe_collection(self.collection, timeout=REMOTE_TIMEOUT_S).get("description", "")

    def close(self) -> None:
        """Drop the trial's collection if it is the trial's own (a refused one is left as it was)."""
        if self.client is None:
            return
        try:
            description = self._description()
            if description is not None and marked_by(description) == marked_by(self.collection_description):
                self.client.drop_collection(self.collection, timeout=REMOTE_TIMEOUT_S)
        finally:
            self.client.close()

    def listing(self) -> dict[str, int]:
        """The collection's own objects (``collection_objects``): its binlog prefixes, and the names
        under index_files/ (a listing of every index file in the bucket: names and sizes only)."""
        if self.collection_id is None:
            self.collection_id = self.client.describe_collection(self.collection, timeout=REMOTE_TIMEOUT_S)["collection_id"]
        root = self.deployment.root_path
        prefixes = [f"{p}/{self.collection_id}/" for p in BINLOG_PREFIXES] + [f"{INDEX_PREFIX}/"]
        found = {}
        for prefix in prefixes:
            pages = self.s3().get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{root}/{prefix}" if root else prefix)
            found.update({obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])})
        return collection_objects(found, root, self.collection_id)

    def restart(self) -> dict[str, object]:
        """The user's hooks, in config.HOOKS order: the store, the page caches, then Milvus. A failed
        restart hook fails the phase (what follows would not be a cold load); a failed page-cache drop
        is recorded, as the native stack records one it could not do."""
        began = time.monotonic()
        d, outcomes = self.deployment, []
        for hook in HOOKS:
            for i, argv in enumerate(d.hooks.get(hook, ()), 1):
                outcomes.append(run_hook(hook, argv, d.hook_timeout_s, self.log_dir / "hooks" / f"{hook}-{i}.log",
                                         self.secrets()))
                if hook != "drop_page_cache" and outcomes[-1]["exit_code"] != 0:
                    raise HookFailed(f"cold restart hook {_said(outcomes[-1])}")
        drops = [o for o in outcomes if o["hook"] == "drop_page_cache"]
        dropped = bool(drops) and all(o["exit_code"] == 0 for o in drops)
        note = ("no drop_page_cache hook" if not drops else "dropped by the hooks" if dropped
                else "; ".join(_said(o) for o in drops if o["exit_code"] != 0))
        return {"milvus_restarted": True, "store_restarted": self.store.restartable, "page_cache_dropped": dropped,
                "page_cache_note": note, "restart_s": time.monotonic() - began, "hooks": outcomes}

    def skipped_phases(self) -> dict[str, str]:
        return skipped(self.deployment)

    def watched(self) -> list[Watched]:
        """Milvus and the bucket, probed while a phase runs: a deployment that stops answering fails the
        phase after ``unresponsive_s`` (the phases' own calls to Milvus need no timeout of their own)."""
        if self.client is None:
            return []
        return [Watched(f"bucket {self.bucket} at {self.deployment.s3_endpoint}", lambda: None, self._bucket_answers),
                Watched(f"milvus at {self.uri}", lambda: None, self._milvus_answers)]

    def _bucket_answers(self) -> bool:
        try:
            self.s3().head_bucket(Bucket=self.bucket)
            return True
        except Exception:
            return False

    def _milvus_answers(self) -> bool:
        try:
            self.client.get_server_version(timeout=PROBE_TIMEOUT_S)
            return True
        except Exception:
            return False

    def capture_target(self) -> str:
        return ("Milvus reaches the deployment's store from its own nodes, not through this host: its S3 traffic "
                "is not visible here")

    def processes(self) -> dict[str, list]:
        """None of the deployment's servers runs here."""
        return {}

    def data_paths(self) -> list:
        """The store's disks are not on this host."""
        return []
