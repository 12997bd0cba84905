"""Container specs from data, without an engine: ``images/stack.yaml`` (Milvus, etcd, the helper) and
each backend's ``docker:`` mapping, merged and filled into the exact keyword arguments of
``containers.run`` (``plan_stack``), with the labels every container, volume and network carries
(what ``cleanup`` finds them by). Pure apart from picking free ports: tested without Docker."""
from __future__ import annotations

import copy
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from msbench.backends import BackendDef, builtin_definitions, fill_template
from msbench.config import ConfigError, Params
from msbench.providers import handicap
from msbench.providers.process import LOOPBACK, free_port
from msbench.providers.stores import credentials_for

NS = 1_000_000_000                     # Docker healthcheck durations are nanoseconds
LABEL = "org.msbench"
MANAGED_LABEL = f"{LABEL}.managed"
RUN_LABEL, TRIAL_LABEL, BACKEND_LABEL = f"{LABEL}.run", f"{LABEL}.trial", f"{LABEL}.backend"
STACK_LABEL, ROLE_LABEL = f"{LABEL}.stack", f"{LABEL}.role"
STACK_FILE = Path(__file__).resolve().parents[2] / "images" / "stack.yaml"
_MILVUS_ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode",
                 "streamingNode", "mixCoord")


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


MILVUS_DATA = "/var/lib/milvus"   # the Milvus container's data volume
USER_YAML = "/milvus/configs/user.yaml"


def milvus_config(comp: dict, values: dict[str, str], addr: Addressing, bucket: str, region: str,
                  params: Params) -> tuple[str, str]:
    """(path in the container, YAML text): the full config (local 2.3.5 image, rendered from the
    wheel's template) or the overrides Milvus 2.4+ merges from user.yaml; with the pacing and mmap
    settings the parameters ask for (milvus_native.milvus_settings)."""
    from msbench.providers.milvus_native import GC_CONFIG, milvus_settings, render_config

    cfg = comp.get("config") or {}
    etcd = values["etcd_endpoint"]
    overrides: dict[str, Any] = {
        "etcd.use.embed": False, "etcd.endpoints": [etcd],
        "common.storageType": "minio", "common.session.ttl": params.milvus_session_ttl_s,
        "minio.address": values["store_host"], "minio.port": int(values["store_port"]),
        "minio.bucketName": bucket, "minio.rootPath": "files", "minio.useSSL": False,
        "minio.cloudProvider": "aws", "minio.useVirtualHost": False, "minio.region": region,
        # The keys reach Milvus through the environment, never a file.
        "minio.accessKeyID": "", "minio.secretAccessKey": "",
        "localStorage.path": f"{MILVUS_DATA}/data", "rocksmq.path": f"{MILVUS_DATA}/rdb_data",
    }
    for name, spec in (comp.get("ports") or {}).items():
        if isinstance(spec, dict) and spec.get("config"):
            overrides[spec["config"]] = addr.ports["milvus"][name]
    if addr.host_network:
        overrides.update({f"{role}.ip": LOOPBACK for role in _MILVUS_ROLES})
    overrides.update(GC_CONFIG)   # the same short GC as the native stack: footprint after GC
    overrides.update(milvus_settings(params, f"{MILVUS_DATA}/mmap"))
    overrides.update(comp.get("extra_config") or {})
    path = cfg.get("path", USER_YAML)
    if cfg.get("mode") == "full":
        config = render_config({"etcd_data_dir": f"{MILVUS_DATA}/etcd", "local_storage_dir": f"{MILVUS_DATA}/data",
                                "rocksmq_data_dir": f"{MILVUS_DATA}/rdb_data", "system_log_path": "",
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
    path, text = milvus_config(chosen["milvus"], values["milvus"], addr, bucket, region, params)
    files["milvus"][path] = text
    return StackPlan(ident, addr, chosen, specs, files, values, access, secret, bucket, region, network)


def milvus_settings_ran(plan: StackPlan) -> dict[str, Any]:
    """The pacing and load-read settings the stack's Milvus runs with: its config file, overridden by
    its container's environment; a key neither sets keeps the version's default (known for 2.3.5)."""
    from msbench.providers.milvus_native import DEFAULTS_2_3_5, effective_settings

    comp = plan.defs["milvus"]
    cfg = comp.get("config") or {}
    config = yaml.safe_load(plan.files["milvus"][cfg.get("path", USER_YAML)]) or {}
    defaults = (DEFAULTS_2_3_5 if str(comp.get("version")) == "2.3.5"
                else dict.fromkeys(DEFAULTS_2_3_5, f"Milvus {comp.get('version')}'s default"))
    return effective_settings(config, plan.specs["milvus"]["environment"], defaults)
