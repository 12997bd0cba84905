"""The Docker provider: per trial, Milvus standalone + etcd + one object store as containers.

Everything goes through the Python ``docker`` SDK (no CLI).  A stack is a context manager like
the native one: entering creates labelled named volumes (and a network, unless host
networking), starts the store and etcd, waits until their healthchecks pass, creates the bucket
(or runs the backend's bootstrap, e.g. Garage's layout/key/bucket), then starts Milvus; leaving
saves every container's log into the trial's log folder and removes whatever carries this
stack's label: containers, volumes, network, also after a failure.  ``cleanup()`` (``msbench
cleanup``) removes what a crashed run left behind, by the project's labels only.

The containers are described by data: ``src/msbench/images/stack.yaml`` (Milvus, etcd, the
helper) and the ``docker:`` mapping of each backend YAML.  ``plan_stack()`` turns definitions
and parameters into the exact keyword arguments of ``containers.run`` (a pure function, tested
without Docker).  Local images (``msbench images build-local``) run through the same
definitions with the ``local:`` overrides.

Healthchecks: the configured Docker healthcheck runs every 30 s (so probes do not perturb the
measured phases); while a container starts we run the same probe with ``exec`` twice a second,
so readiness is seen at once.  A container that exits or turns unhealthy fails the wait at once,
with its last log lines in the error.
"""
from __future__ import annotations

import copy
import io
import os
import re
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from string import Template
from typing import Any

import psutil
import yaml

from msbench.backends import BackendDef, builtin_definitions, fill_template
from msbench.config import ConfigError, Params, UserConfig
from msbench.providers import StackBase, handicap
from msbench.providers.process import LOOPBACK, describe_exit, free_port, http_ok
from msbench.providers.s3 import s3_client
from msbench.providers.stores import credentials_for
from msbench.watchdog import PROBE_TIMEOUT_S, Watched

PROVIDER = "docker"
NS = 1_000_000_000                     # Docker healthcheck durations are nanoseconds
LABEL = "org.msbench"
MANAGED_LABEL = f"{LABEL}.managed"
RUN_LABEL, TRIAL_LABEL, BACKEND_LABEL = f"{LABEL}.run", f"{LABEL}.trial", f"{LABEL}.backend"
STACK_LABEL, ROLE_LABEL = f"{LABEL}.stack", f"{LABEL}.role"
STACK_FILE = Path(__file__).resolve().parent.parent / "images" / "stack.yaml"
IMAGE_MODES = ("auto", "local", "registry")
HELPER_VM_DIR = "/host/proc/sys/vm"
_MILVUS_ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode",
                 "streamingNode", "mixCoord")


class DockerUnavailable(RuntimeError):
    """The Docker engine cannot be reached; says why and how to start it."""


class ContainerNotReady(RuntimeError):
    """A container exited, turned unhealthy or timed out; carries its last log lines."""


# -- engine --------------------------------------------------------------------------------------
def docker_client(timeout: int = 300):
    """A client for the local engine, or DockerUnavailable naming what is missing."""
    try:
        import docker
        import requests
    except ImportError as err:  # pragma: no cover (a dependency of msbench)
        raise DockerUnavailable(f"the docker Python SDK is missing ({err}); pip install docker") from err
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as err:
        raise DockerUnavailable(
            f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')} ({err}). "
            "Start one (as root: apt-get install docker.io; dockerd &) or use provider=native") from err
    return client


def docker_unavailable_reason() -> str | None:
    try:
        docker_client(timeout=10).close()
    except DockerUnavailable as err:
        return str(err)
    return None


# -- definitions as data -------------------------------------------------------------------------
def deep_merge(base: Any, over: Any, keep_nulls: bool = False) -> Any:
    """``over`` on top of ``base``; mappings merge key by key, a ``None`` value deletes the key
    (or, with ``keep_nulls``, stays as a marker for a later merge: a ``local:`` block's deletions)."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None and not keep_nulls:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, keep_nulls)
        else:
            out[key] = copy.deepcopy(value)
    return out


def stack_definitions() -> dict[str, dict]:
    return yaml.safe_load(STACK_FILE.read_text())


def resolve_definitions(backend: BackendDef) -> dict[str, dict]:
    """The definitions of one stack: {store, milvus, etcd, helper}, each still holding its ``local:``.

    A user's ``docker:`` entry in msbench.yaml replaces the built-in mapping wholesale (the
    registry merges fields one level deep), so the built-in one is merged back underneath."""
    builtin = (builtin_definitions().get(backend.kind) or {}).get("docker") or {}
    store = deep_merge(builtin, backend.docker or {}, keep_nulls=True)
    if not store:
        raise ConfigError(f"backend {backend.name!r} has no docker definition; add a 'docker:' mapping "
                          f"(image, ports, env, command, volumes, healthcheck) to run it with provider=docker")
    defs = stack_definitions()
    for role in ("milvus", "etcd", "helper"):
        defs[role] = deep_merge(defs[role], store.pop(role, None) or {})
    if os.environ.get("MSBENCH_MILVUS_VERSION"):
        defs["milvus"]["version"] = os.environ["MSBENCH_MILVUS_VERSION"]
    layout = store.get("layout")
    if layout:
        layouts = store.get("layouts") or {}
        if layout not in layouts:
            raise ConfigError(f"backend {backend.name!r}: docker layout {layout!r} unknown; valid: {', '.join(layouts)}")
        store = deep_merge(store, layouts[layout])
    store.pop("layouts", None)
    defs["store"] = store
    return defs


def variant(comp: dict, use_local: bool) -> dict:
    """The component as run: its ``local:`` overrides applied when the local image is used."""
    comp = copy.deepcopy(comp)
    local = comp.pop("local", None) or {}
    return deep_merge(comp, local) if use_local else comp


def image_mode() -> str:
    mode = os.environ.get("MSBENCH_DOCKER_IMAGES", "auto").strip().lower() or "auto"
    if mode not in IMAGE_MODES:
        raise ConfigError(f"MSBENCH_DOCKER_IMAGES must be one of {', '.join(IMAGE_MODES)}, got {mode!r}")
    return mode


def _port_default(spec: Any) -> int:
    return int(spec["port"]) if isinstance(spec, dict) else int(spec)


def healthcheck_spec(hc: dict, values: dict[str, str], where: str) -> dict | None:
    """Docker's healthcheck mapping: the test, and durations in nanoseconds."""
    if not hc or not hc.get("test"):
        return None
    out = {"test": fill_template(list(hc["test"]), values, where)}
    for key in ("interval", "timeout", "start_period"):
        if hc.get(f"{key}_s") is not None:
            out[key] = int(float(hc[f"{key}_s"]) * NS)
    if hc.get("retries") is not None:
        out["retries"] = int(hc["retries"])
    return out


@dataclass
class StackIdentity:
    stack_id: str
    run: str = ""
    trial: int | str = ""
    backend: str = ""

    def labels(self) -> dict[str, str]:
        return {MANAGED_LABEL: "true", RUN_LABEL: str(self.run), TRIAL_LABEL: str(self.trial),
                BACKEND_LABEL: self.backend, STACK_LABEL: self.stack_id}

    def name(self, *parts: str) -> str:
        return "-".join(["msbench", self.stack_id, *parts])


@dataclass
class Addressing:
    """Where each component listens and how the others reach it."""

    host_network: bool
    ports: dict[str, dict[str, int]]          # role -> port name -> port inside the container
    published: dict[str, dict[str, int]]      # role -> port name -> port on 127.0.0.1 of the host

    def bind(self) -> str:
        return LOOPBACK if self.host_network else "0.0.0.0"

    def advertise(self, ident: StackIdentity, role: str) -> str:
        return LOOPBACK if self.host_network else ident.name(role)

    def host_port(self, role: str, name: str) -> int:
        return self.ports[role][name] if self.host_network else self.published[role][name]


def plan_addressing(defs: dict[str, dict], host_network: bool, port_source=free_port) -> Addressing:
    """Host networking: every port a free one on 127.0.0.1. A stack network: the defaults inside,
    the ``publish`` ports mapped to free ports on 127.0.0.1."""
    ports, published = {}, {}
    for role in ("store", "etcd", "milvus"):
        comp = defs.get(role) or {}
        declared = comp.get("ports") or {}
        ports[role] = {n: (port_source() if host_network else _port_default(s)) for n, s in declared.items()}
        published[role] = {} if host_network else {n: port_source() for n in comp.get("publish") or []}
    return Addressing(host_network, ports, published)


def template_values(role: str, ident: StackIdentity, addr: Addressing, creds: dict[str, str]) -> dict[str, str]:
    values = {"bind": addr.bind(), "advertise": addr.advertise(ident, role),
              "etcd_endpoint": f"{addr.advertise(ident, 'etcd')}:{addr.ports['etcd'].get('client', 2379)}",
              "store_host": creds.get("store_host") or addr.advertise(ident, "store"),
              "store_port": str(creds.get("store_port") or addr.ports["store"].get("s3", "")),
              **{k: str(v) for k, v in creds.items() if k not in ("store_host", "store_port")}}
    values.update({f"port_{name}": str(port) for name, port in addr.ports.get(role, {}).items()})
    return values


def container_spec(role: str, comp: dict, values: dict[str, str], ident: StackIdentity, addr: Addressing,
                   network: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.run`` (pure: no engine needed)."""
    where = f"docker definition of {role}"
    env = {k: fill_template(v, values, where) for k, v in (comp.get("env") or {}).items() if v is not None}
    for name, spec in (comp.get("ports") or {}).items():
        if isinstance(spec, dict) and spec.get("env"):
            env[spec["env"]] = str(addr.ports[role][name])
    spec: dict[str, Any] = {
        "image": comp["image"],
        "name": ident.name(role),
        "command": fill_template(comp["command"], values, where) if comp.get("command") else None,
        "environment": env,
        "labels": {**ident.labels(), ROLE_LABEL: role},
        "volumes": {ident.name(role, key): {"bind": path, "mode": "rw"}
                    for key, path in (comp.get("volumes") or {}).items() if path},
        "detach": True,
    }
    if comp.get("entrypoint"):
        spec["entrypoint"] = fill_template(comp["entrypoint"], values, where)
    if comp.get("user"):
        spec["user"] = str(comp["user"])
    hc = healthcheck_spec(comp.get("healthcheck") or {}, values, where)
    if hc:
        spec["healthcheck"] = hc
    for key in ("security_opt", "cap_add"):
        if comp.get(key):
            spec[key] = list(comp[key])
    if addr.host_network:
        spec["network_mode"] = "host"
    else:
        spec["network"] = network
        spec["hostname"] = ident.name(role)
        spec["ports"] = {f"{addr.ports[role][n]}/tcp": (LOOPBACK, hp) for n, hp in addr.published[role].items()}
    return spec


def container_files(comp: dict, values: dict[str, str], role: str) -> dict[str, str]:
    return {path: fill_template(text, values, f"docker definition of {role}, file {path}")
            for path, text in (comp.get("files") or {}).items()}


def milvus_config(comp: dict, values: dict[str, str], addr: Addressing, bucket: str, region: str,
                  session_ttl_s: int) -> tuple[str, str]:
    """(path in the container, YAML text): the full config (local 2.3.5 image, rendered from the
    wheel's template) or the overrides Milvus 2.4+ merges from user.yaml."""
    cfg = comp.get("config") or {}
    etcd = values["etcd_endpoint"]
    overrides: dict[str, Any] = {
        "etcd.use.embed": False, "etcd.endpoints": [etcd],
        "common.storageType": "minio", "common.session.ttl": session_ttl_s,
        "minio.address": values["store_host"], "minio.port": int(values["store_port"]),
        "minio.bucketName": bucket, "minio.rootPath": "files", "minio.useSSL": False,
        "minio.cloudProvider": "aws", "minio.useVirtualHost": False, "minio.region": region,
        # The keys reach Milvus through the environment, never a file.
        "minio.accessKeyID": "", "minio.secretAccessKey": "",
        "localStorage.path": "/var/lib/milvus/data", "rocksmq.path": "/var/lib/milvus/rdb_data",
    }
    for name, spec in (comp.get("ports") or {}).items():
        if isinstance(spec, dict) and spec.get("config"):
            overrides[spec["config"]] = addr.ports["milvus"][name]
    if addr.host_network:
        overrides.update({f"{role}.ip": LOOPBACK for role in _MILVUS_ROLES})
    from msbench.providers.milvus_native import GC_CONFIG, render_config

    overrides.update(GC_CONFIG)   # the same short GC as the native stack: footprint after GC
    overrides.update(comp.get("extra_config") or {})
    path = cfg.get("path", "/milvus/configs/user.yaml")
    if cfg.get("mode") == "full":
        config = render_config({"etcd_data_dir": "/var/lib/milvus/etcd", "local_storage_dir": "/var/lib/milvus/data",
                                "rocksmq_data_dir": "/var/lib/milvus/rdb_data", "system_log_path": "",
                                "etcd_log_path": "stdout"}, overrides)
        for role in _MILVUS_ROLES[8:]:   # 2.6 roles: not in the 2.3.5 template
            config.pop(role, None)
    else:
        config = {}
        for dotted, value in overrides.items():
            node = config
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
    return path, yaml.safe_dump(config, sort_keys=False)


@dataclass
class StackPlan:
    """Everything the engine needs for one stack; built without touching the engine."""

    ident: StackIdentity
    addr: Addressing
    defs: dict[str, dict]                     # the variants that will run
    specs: dict[str, dict[str, Any]]          # role -> containers.run kwargs
    files: dict[str, dict[str, str]]          # role -> {path in container: text}
    values: dict[str, dict[str, str]]
    access_key: str
    secret_key: str
    bucket: str
    region: str
    network: str | None


def plan_stack(backend: BackendDef, params: Params, ident: StackIdentity, host_network: bool = True,
               use_local: dict[str, bool] | None = None, defs: dict[str, dict] | None = None,
               port_source=free_port, credentials: tuple[str, str] | None = None,
               bucket: str = "milvus-bucket") -> StackPlan:
    """Definitions + parameters -> container specs. Pure apart from picking free ports."""
    raw = defs or resolve_definitions(backend)
    use_local = use_local or {}
    chosen = {role: variant(comp, use_local.get(role, False)) for role, comp in raw.items()}
    external = bool(chosen["store"].get("external"))
    if chosen["store"].get("host_network_only") and not host_network:
        raise ConfigError(f"backend {backend.name!r}: its docker definition needs host networking "
                          f"(MSBENCH_DOCKER_NETWORK=host)")
    if external:
        chosen.pop("store")
    addr = plan_addressing({r: c for r, c in chosen.items() if r != "helper"}, host_network, port_source)
    store = chosen.get("store", {})
    access, secret = credentials or (credentials_for(store.get("credentials") or {}) if store else ("", ""))
    region = str(store.get("region", "us-east-1"))
    version = str(chosen["milvus"].get("version", ""))
    creds = {"access_key": access, "secret_key": secret, "bucket": bucket, "region": region,
             "milvus_version": version, "rpc_secret": secrets.token_hex(32)}
    if external:
        from urllib.parse import urlparse

        url = urlparse(backend.endpoint)
        creds.update(store_host=url.hostname or "", store_port=url.port or 0)
    network = None if host_network else ident.name("net")
    specs, files, values = {}, {}, {}
    for role in ("store", "etcd", "milvus"):
        if role not in chosen:
            continue
        comp = chosen[role]
        if "${" in comp.get("image", ""):
            comp["image"] = fill_template(comp["image"], {"milvus_version": version}, f"{role} image")
        values[role] = template_values(role, ident, addr, creds)
        specs[role] = container_spec(role, comp, values[role], ident, addr, network)
        files[role] = container_files(comp, values[role], role)
    if "store" in specs:
        specs["store"].update(handicap.docker_quota(backend.handicap))
    path, text = milvus_config(chosen["milvus"], values["milvus"], addr, bucket, region, params.milvus_session_ttl_s)
    files["milvus"][path] = text
    return StackPlan(ident, addr, chosen, specs, files, values, access, secret, bucket, region, network)


# -- running containers --------------------------------------------------------------------------
def _tar_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        made = set()
        for path, text in files.items():
            parts = Path(path.lstrip("/")).parts
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made:
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    made.add(d)
            data = text.encode()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def container_log_tail(container, lines: int = 40) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace")
    except Exception as err:  # noqa: BLE001 (diagnostics must not mask the real error)
        return f"(no log: {err})"


def _probe(container, test: list[str]) -> bool:
    if not test or test[0] == "NONE":
        return False
    argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:] if test[0] == "CMD" else test)
    try:
        return container.exec_run(argv, stdout=False, stderr=False).exit_code == 0
    except Exception:  # noqa: BLE001 (the container may be restarting)
        return False


def wait_healthy(container, timeout: float, what: str = "") -> float:
    """Until the container's healthcheck passes; fails at once when it exits or turns unhealthy,
    and on timeout, with its last log lines in the error."""
    began = time.monotonic()
    test = ((container.attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    while True:
        container.reload()
        state = container.attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy" or (state.get("Running") and (not test or _probe(container, test))):
            return time.monotonic() - began
        problem = None
        if state.get("Status") in ("exited", "dead"):
            problem = f"exited with code {state.get('ExitCode')}"
        elif health == "unhealthy":
            problem = "turned unhealthy"
        elif time.monotonic() - began > timeout:
            problem = f"not healthy after {timeout:.0f} s"
        if problem:
            raise ContainerNotReady(f"container {container.name} ({what or container.image.tags}) {problem}; "
                                    f"last log lines:\n{container_log_tail(container)}")
        time.sleep(0.5)


def container_exit(container) -> str | None:
    """None while the container runs, else how it ended (for the watchdog)."""
    try:
        container.reload()
    except Exception as err:   # noqa: BLE001 (removed, or the engine went away)
        return f"cannot be inspected ({type(err).__name__}: {err})"
    state = container.attrs.get("State", {})
    if state.get("Running"):
        return None
    code = int(state.get("ExitCode") or 0)
    how = "was OOM-killed" if state.get("OOMKilled") else describe_exit(-(code - 128) if code > 128 else code)
    return f"{how} (container {state.get('Status')}, exit code {code})"


@dataclass
class ContainerProcess:
    """A container's main process as seen from the host (for resources.snapshot)."""

    role: str
    container: Any
    pid: int = 0

    def refresh(self) -> None:
        self.container.reload()
        self.pid = int(self.container.attrs["State"].get("Pid") or 0)

    def running(self) -> bool:
        return self.pid > 0 and psutil.pid_exists(self.pid)

    def psutil(self) -> psutil.Process | None:
        if self.pid <= 0:
            return None
        try:
            return psutil.Process(self.pid)
        except psutil.Error:
            return None


def drop_page_cache_via_container(client, image: str, labels: dict[str, str], timeout: float = 60) -> tuple[bool, str]:
    """sync + ``echo 3 > drop_caches`` from a short-lived helper container: CAP_SYS_ADMIN and the
    host's /proc/sys/vm bind-mounted read-write (``privileged`` fails on this host). The mount
    target is /host/proc/sys/vm: runc refuses a bind mount onto the container's own /proc."""
    os.sync()
    try:
        helper = client.containers.create(
            image, ["sh", "-c", f"sync && echo 3 > {HELPER_VM_DIR}/drop_caches"], cap_add=["SYS_ADMIN"],
            volumes={"/proc/sys/vm": {"bind": HELPER_VM_DIR, "mode": "rw"}}, network_mode="none",
            labels={**labels, ROLE_LABEL: "helper"})
    except Exception as err:  # noqa: BLE001 (recorded: the cold load says the cache was not dropped)
        return False, f"not dropped: helper container {image} could not be created: {err}"
    try:
        helper.start()
        code = helper.wait(timeout=timeout).get("StatusCode")
        if code == 0:
            return True, f"dropped from a helper container ({image}, cap_add SYS_ADMIN, /proc/sys/vm rw)"
        return False, f"not dropped: helper exited {code}: {container_log_tail(helper, 5).strip()}"
    except Exception as err:  # noqa: BLE001
        return False, f"not dropped: {err}"
    finally:
        try:
            helper.remove(force=True)
        except Exception:  # noqa: BLE001
            pass


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
    backend: BackendDef
    params: Params
    log_dir: Path
    user: UserConfig | None = None
    run_id: str = ""
    trial: int | str = ""
    host_network: bool | None = None
    bucket: str = "milvus-bucket"
    timeout: float = 300.0
    provider: str = PROVIDER
    plan: StackPlan | None = field(default=None, init=False)
    store: DockerStore | None = field(default=None, init=False)
    containers: dict[str, Any] = field(default_factory=dict, init=False)
    procs: dict[str, ContainerProcess] = field(default_factory=dict, init=False)
    notes: dict[str, Any] = field(default_factory=dict, init=False)

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
    def _use_local(self, defs: dict[str, dict]) -> dict[str, bool]:
        import docker.errors

        mode = image_mode()
        out = {}
        for role, comp in defs.items():
            local = (comp.get("local") or {}).get("image")
            if mode == "registry" or not local:
                out[role] = False
            elif mode == "local":
                out[role] = True
            else:
                image = comp.get("image", "")
                if "${" in image:
                    image = Template(image).safe_substitute(milvus_version=comp.get("version", ""))
                try:
                    self.client.images.get(image)
                    out[role] = False
                except docker.errors.ImageNotFound:
                    try:
                        self.client.images.get(local)
                        out[role] = True
                    except docker.errors.ImageNotFound:
                        out[role] = False
        return out

    def _ensure_image(self, image: str) -> None:
        import docker.errors

        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            self.client.images.pull(image)
        except docker.errors.APIError as err:  # no registry: the engine's pull fails
            raise ContainerNotReady(f"image {image} is not present and cannot be pulled ({err.explanation or err}); "
                                    "build local images with `msbench images build-local` "
                                    "(used automatically, or force with MSBENCH_DOCKER_IMAGES=local)") from err

    def start(self) -> dict[str, float]:
        self.client = docker_client()
        defs = resolve_definitions(self.backend)
        self.plan = plan_stack(self.backend, self.params, self.ident, self.host_network, self._use_local(defs),
                               defs=defs, bucket=self.bucket)
        plan = self.plan
        for spec in plan.specs.values():
            self._ensure_image(spec["image"])
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
        self.notes["images"] = {role: spec["image"] for role, spec in plan.specs.items()}
        return timings

    def _create(self, role: str) -> None:
        spec = dict(self.plan.specs[role])
        spec.pop("detach", None)
        container = self.client.containers.create(**spec)
        self.containers[role] = container
        if self.plan.files.get(role):
            container.put_archive("/", _tar_of(self.plan.files[role]))
        container.start()
        proc = ContainerProcess(role, container)
        proc.refresh()
        self.procs[role] = proc

    def _chown_volumes(self, volumes: dict[str, dict], owner: str) -> None:
        helper = self.plan.defs["helper"]["image"]
        self._ensure_image(helper)
        mounts = {name: {"bind": f"/v/{i}", "mode": "rw"} for i, name in enumerate(volumes)}
        out = self.client.containers.run(helper, ["chown", "-R", owner, *[m["bind"] for m in mounts.values()]],
                                         volumes=mounts, network_mode="none", remove=True,
                                         labels={**self.ident.labels(), ROLE_LABEL: "helper"})
        self.notes["volume_owner"] = owner
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
        """Every container (its state from the engine) and the store's S3 endpoint."""
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

    def image_digests(self) -> dict[str, str]:
        return image_digests(self)

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


def image_digests(stack: DockerStack) -> dict[str, str]:
    """{image reference: digest} of a running stack, for the manifest: the registry digest when
    the image came from a registry, else the local image id (sha256 of its config)."""
    out = {}
    client = stack.client or docker_client()
    images = set()
    if stack.plan:
        images = {spec["image"] for spec in stack.plan.specs.values()} | {stack.plan.defs["helper"]["image"]}
    for ref in sorted(images):
        try:
            image = client.images.get(ref)
        except Exception:  # noqa: BLE001
            continue
        repo_digests = image.attrs.get("RepoDigests") or []
        out[ref] = repo_digests[0].split("@", 1)[1] if repo_digests else image.id
    return out


def cleanup(client=None, run: str | None = None, stack: str | None = None) -> dict[str, Any]:
    """Remove containers, then networks and volumes, carrying our labels (optionally one run's or
    one stack's). Nothing without the ``org.msbench.managed`` label is touched."""
    own = client is None
    client = client or docker_client()
    filters = [f"{MANAGED_LABEL}=true"]
    if run:
        filters.append(f"{RUN_LABEL}={run}")
    if stack:
        filters.append(f"{STACK_LABEL}={stack}")
    removed = {"containers": [], "networks": [], "volumes": [], "errors": []}
    for container in client.containers.list(all=True, filters={"label": filters}):
        try:
            container.remove(force=True, v=True)
            removed["containers"].append(container.name)
        except Exception as err:  # noqa: BLE001 (keep removing the rest)
            if "No such container" not in str(err) and "already in progress" not in str(err):
                removed["errors"].append(f"container {container.name}: {err}")
    for network in client.networks.list(filters={"label": filters}):
        try:
            network.remove()
            removed["networks"].append(network.name)
        except Exception as err:  # noqa: BLE001
            removed["errors"].append(f"network {network.name}: {err}")
    for _ in range(20):   # a just-removed container can hold its volume for a moment
        volumes = client.volumes.list(filters={"label": filters})
        pending = []
        for volume in volumes:
            try:
                volume.remove(force=True)
                removed["volumes"].append(volume.name)
            except Exception as err:  # noqa: BLE001
                pending.append(f"volume {volume.name}: {err}")
        if not pending:
            break
        time.sleep(0.5)
    else:
        removed["errors"] += pending
    if own:
        client.close()
    return removed


def leftovers(client=None, run: str | None = None) -> dict[str, list[str]]:
    """What still carries our labels (tests assert this is empty after teardown)."""
    client = client or docker_client()
    filters = {"label": [f"{MANAGED_LABEL}=true"] + ([f"{RUN_LABEL}={run}"] if run else [])}
    return {"containers": [c.name for c in client.containers.list(all=True, filters=filters)],
            "networks": [n.name for n in client.networks.list(filters=filters)],
            "volumes": [v.name for v in client.volumes.list(filters=filters)]}


def docker_stack(backend: BackendDef, params: Params, log_dir: Path, user: UserConfig | None,
                 run: str, trial: int) -> DockerStack:
    """The factory ``trial.PROVIDERS['docker']`` calls (same signature as the native one)."""
    return DockerStack(backend, params, Path(log_dir), user, run_id=run, trial=trial)
