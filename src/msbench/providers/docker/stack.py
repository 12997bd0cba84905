"""A Docker stack's lifecycle: provision (volumes, network, store, etcd, bucket or bootstrap,
Milvus), the cold restart, what the phases read (uri, s3, processes, data paths, watched), and
teardown: logs saved, then everything carrying the stack's label removed (``cleanup``)."""
from __future__ import annotations

import io
import os
import re
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from msbench.backends import BackendDef, fill_template
from msbench.config import ConfigError, Params, UserConfig
from msbench.providers import PROBE_TIMEOUT_S, StackBase, Watched
from msbench.providers.docker.cleanup import cleanup
from msbench.providers.docker.engine import (ContainerNotReady, ContainerProcess, container_exit, docker_client,
                                             drop_page_cache_via_container, ensure_image, tar_of, use_local_images,
                                             wait_healthy)
from msbench.providers.docker.specs import ROLE_LABEL, StackIdentity, StackPlan, plan_stack, resolve_definitions
from msbench.providers.process import LOOPBACK, http_ok
from msbench.providers.s3 import s3_client

PROVIDER = "docker"


@dataclass
class DockerStore:
    """The face phases and run_trial use: endpoint and keys of the store."""

    host: str
    port: int
    access_key: str
    secret_key: str
    restartable: bool = True

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class DockerStack(StackBase):
    run_id: str = ""
    trial: int | str = ""
    host_network: bool | None = None
    timeout: float = 300.0
    provider: str = PROVIDER
    plan: StackPlan | None = field(default=None, init=False)
    store: DockerStore | None = field(default=None, init=False)
    containers: dict[str, Any] = field(default_factory=dict, init=False)
    procs: dict[str, ContainerProcess] = field(default_factory=dict, init=False)
    restarting: bool = field(default=False, init=False)
    volume_owner: str = field(default="", init=False)   # whom the store's volumes were given to, if anyone

    def __post_init__(self) -> None:
        self.log_dir = Path(self.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.host_network is None:
            net = os.environ.get("MSBENCH_DOCKER_NETWORK", "host").strip().lower()
            if net not in ("host", "bridge"):
                raise ConfigError(f"MSBENCH_DOCKER_NETWORK must be host or bridge, got {net!r}")
            self.host_network = net == "host"
        self.ident = StackIdentity(secrets.token_hex(4), self.run_id, self.trial, self.backend.name)
        self.client = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> dict[str, float]:
        self.client = docker_client()
        defs = resolve_definitions(self.backend)
        self.plan = plan_stack(self.backend, self.params, self.ident, self.host_network, use_local_images(self.client, defs),
                               defs=defs, bucket=self.bucket)
        plan = self.plan
        for spec in plan.specs.values():
            ensure_image(self.client, spec["image"])
        labels = self.ident.labels()
        if plan.network:
            self.client.networks.create(plan.network, driver="bridge", labels=labels)
        for role, spec in plan.specs.items():
            for volume in spec["volumes"]:
                self.client.volumes.create(volume, labels={**labels, ROLE_LABEL: role})
        external = "store" not in plan.specs
        timings: dict[str, float] = {}
        if not external:
            owner = plan.defs["store"].get("volume_owner")
            if owner:
                self._chown_volumes(plan.specs["store"]["volumes"], str(owner))
            self._create("store")
        self._create("etcd")
        for role in ([] if external else ["store"]) + ["etcd"]:
            timings[f"{role}_ready_s"] = wait_healthy(self.containers[role], self.timeout, role)
        if external:
            self.store = DockerStore(plan.values["milvus"]["store_host"], int(plan.values["milvus"]["store_port"]),
                                     os.environ.get(self.backend.access_key_env, ""),
                                     os.environ.get(self.backend.secret_key_env, ""), restartable=False)
            self.bucket = f"msbench-{self.ident.stack_id}"
        else:
            self.store = DockerStore(LOOPBACK, plan.addr.host_port("store", "s3"), plan.access_key, plan.secret_key)
            self._bootstrap()
        if plan.defs.get("store", {}).get("create_bucket", True):
            self._create_bucket()
        self._create("milvus")
        timings["milvus_ready_s"] = wait_healthy(self.containers["milvus"], self.timeout, "milvus")
        return timings

    def _create(self, role: str) -> None:
        spec = dict(self.plan.specs[role])
        spec.pop("detach", None)
        container = self.client.containers.create(**spec)
        self.containers[role] = container
        if self.plan.files.get(role):
            container.put_archive("/", tar_of(self.plan.files[role]))
        container.start()
        proc = ContainerProcess(role, container)
        proc.refresh()
        self.procs[role] = proc

    def _chown_volumes(self, volumes: dict[str, dict], owner: str) -> None:
        helper = self.plan.defs["helper"]["image"]
        ensure_image(self.client, helper)
        mounts = {name: {"bind": f"/v/{i}", "mode": "rw"} for i, name in enumerate(volumes)}
        out = self.client.containers.run(helper, ["chown", "-R", owner, *[m["bind"] for m in mounts.values()]],
                                         volumes=mounts, network_mode="none", remove=True,
                                         labels={**self.ident.labels(), ROLE_LABEL: "helper"})
        self.volume_owner = owner
        return out

    def _bootstrap(self) -> None:
        """Data-driven setup after the store is healthy (Garage: layout, key, bucket)."""
        store = self.plan.defs["store"]
        values = dict(self.plan.values["store"])
        log = self.log_dir / "store-bootstrap.log"
        for step in store.get("bootstrap") or []:
            argv = fill_template(list(step["exec"]), values, "store bootstrap")
            result = self.containers["store"].exec_run(argv)
            output = result.output.decode(errors="replace")
            with open(log, "a") as fh:
                fh.write(f"$ {' '.join(argv)}\n{output}\n")
            if result.exit_code != 0:
                raise ContainerNotReady(f"store bootstrap step {' '.join(argv)} failed ({result.exit_code}): "
                                        f"{output[-1500:]}")
            if step.get("capture"):
                match = re.search(step.get("pattern", r"(\S+)"), output, re.M)
                if not match:
                    raise ContainerNotReady(f"store bootstrap: no {step['capture']} in output of {argv}: {output[-500:]}")
                values[step["capture"]] = match.group(1)

    def _create_bucket(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s3().create_bucket(Bucket=self.bucket)
                return
            except Exception as err:  # noqa: BLE001 (a fresh store may refuse the first requests)
                if "BucketAlreadyOwnedByYou" in str(err):
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def restart(self) -> dict[str, object]:
        """Cold restart: stop Milvus, restart the store container, drop the host page cache from
        a helper container, start Milvus, wait out stale sessions. Says what really happened."""
        began = time.monotonic()
        self.restarting = True   # containers stop on purpose: not watched until they are back
        milvus = self.containers["milvus"]
        milvus.stop(timeout=int(self.plan.defs["milvus"].get("stop_timeout_s", 30)))
        store = self.containers.get("store")
        if store is not None:
            store.restart(timeout=int(self.plan.defs["store"].get("stop_timeout_s", 20)))
            self.procs["store"].refresh()
            wait_healthy(store, self.timeout, "store after restart")
        if self.params.drop_page_cache:
            dropped, how = drop_page_cache_via_container(self.client, self.plan.defs["helper"]["image"],
                                                         self.ident.labels())
        else:
            dropped, how = False, "not requested"
        milvus.start()
        self.procs["milvus"].refresh()
        wait_healthy(milvus, self.timeout, "milvus after restart")
        self.restarting = False
        time.sleep(self.params.milvus_session_ttl_s + 2)
        return {"milvus_restarted": True, "store_restarted": store is not None, "page_cache_dropped": dropped,
                "page_cache_note": how, "restart_s": time.monotonic() - began}

    # -- what phases read ----------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.plan.addr.host_port('milvus', 'grpc')}"

    def s3(self):
        return s3_client(self.store, self.plan.region if self.plan else "us-east-1")

    def processes(self) -> dict[str, list[ContainerProcess]]:
        return {"milvus": [p for r, p in self.procs.items() if r == "milvus"],
                "store": [p for r, p in self.procs.items() if r == "store"]}

    def watched(self) -> list[Watched]:
        """Every container (its state from the engine) and the store's S3 endpoint; none while a cold
        restart has them down on purpose."""
        if self.restarting:
            return []
        order = sorted(self.containers, key=lambda role: role != "store")
        out = [Watched(f"{role} container {self.containers[role].name}", partial(container_exit, self.containers[role]))
               for role in order]
        if self.store is not None:
            url = self.store.endpoint_url
            out.append(Watched(f"store {self.backend.name} ({url})", lambda: None, lambda: http_ok(url, PROBE_TIMEOUT_S)))
        return out

    def data_paths(self) -> list[Path]:
        """The store's named volumes on the host (their Mountpoint under the engine's data root)."""
        if "store" not in self.plan.specs:
            return []
        keep = self.plan.defs["store"].get("data_volumes")
        paths = []
        for key, mount in (self.plan.defs["store"].get("volumes") or {}).items():
            if mount and (not keep or key in keep):
                paths.append(Path(self.client.volumes.get(self.ident.name("store", key)).attrs["Mountpoint"]))
        return paths

    def ran(self) -> dict[str, object]:
        """{"images": {image reference: digest}} of a running stack: the registry digest when the image
        came from a registry, else the local image id (sha256 of its config)."""
        digests = {}
        client = self.client or docker_client()
        images = set()
        if self.plan:
            images = {spec["image"] for spec in self.plan.specs.values()} | {self.plan.defs["helper"]["image"]}
        for ref in sorted(images):
            try:
                image = client.images.get(ref)
            except Exception:  # noqa: BLE001
                continue
            repo_digests = image.attrs.get("RepoDigests") or []
            digests[ref] = repo_digests[0].split("@", 1)[1] if repo_digests else image.id
        return {"images": digests, **({"volume_owner": self.volume_owner} if self.volume_owner else {})}

    def handicap_facts(self) -> dict[str, float]:
        return dict(self.backend.handicap)

    def capture_target(self) -> tuple[str, int] | str:
        if not self.plan.addr.host_network:
            return "a stack network: Milvus reaches the store inside it, not on loopback (capture needs host networking)"
        return super().capture_target()

    def _save_logs(self) -> None:
        for role, container in self.containers.items():
            try:
                (self.log_dir / f"{role}.log").write_bytes(container.logs())
            except Exception as err:  # noqa: BLE001
                (self.log_dir / f"{role}.log").write_text(f"(logs unavailable: {err})\n")
            for path in (self.plan.defs.get(role, {}).get("log_paths") or []) if self.plan else []:
                try:
                    stream, _ = container.get_archive(path)
                    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                        for member in tar.getmembers():
                            if member.isfile():
                                target = self.log_dir / f"{role}-{Path(member.name).name}"
                                target.write_bytes(tar.extractfile(member).read())
                except Exception:  # noqa: BLE001
                    continue

    def close(self) -> None:
        """Save logs, then remove every container, volume and network of this stack, by label."""
        if self.client is None:
            return
        self._save_logs()
        left = cleanup(self.client, stack=self.ident.stack_id)
        self.client.close()
        self.client = None
        if left.get("errors"):
            raise RuntimeError("teardown incomplete: " + "; ".join(left["errors"]))


def docker_stack(backend: BackendDef, params: Params, log_dir: Path, user: UserConfig | None,
                 run: str, trial: int) -> DockerStack:
    """The factory ``trial.PROVIDERS['docker']`` calls (same signature as the native one)."""
    return DockerStack(backend, params, Path(log_dir), user, run_id=run, trial=trial)
