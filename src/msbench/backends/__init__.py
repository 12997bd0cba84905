"""Object-store backends as data: one YAML definition each, merged with the user's msbench.yaml.

A definition says how to start the store (``launcher``: a plain ``process`` from a command
template, the ``ceph`` bootstrap, or ``external`` for an endpoint someone else runs), which
ports it needs, which files to write, and how to tell it is ready.  Adding a backend that is
a single server process means adding one YAML file here or one entry in msbench.yaml.
msbench.yaml's ``deployments:`` (config.Deployment) join them as backends of launcher ``deployment``:
an existing Milvus and its bucket, which only the deployment provider runs.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from string import Template
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

import yaml

from msbench.config import ConfigError, UserConfig
from msbench.backends import builds

LAUNCHERS = ("process", "ceph", "external")   # of a backend definition; "deployment" comes from deployments:
DEPLOYMENT = "deployment"    # the launcher of msbench.yaml's deployments, and the provider that runs them
_HERE = Path(__file__).parent
HANDICAP_KEYS = ("cpu",)   # a known slowdown (providers.handicap applies it): the share of one CPU


@dataclass(frozen=True)
class BackendDef:
    name: str
    launcher: str
    description: str = ""
    binary: str = ""                      # executable name, looked up as described in find_binary
    binary_env: str = ""                  # environment variable that may name the binary
    enable_hint: str = ""
    ports: tuple[str, ...] = ("s3",)
    files: dict[str, str] = field(default_factory=dict)    # conf files: name -> ${template}
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    ready_url: str = ""
    stop_grace_s: float = 20.0
    leftovers: tuple[str, ...] = ()       # files it creates outside its directories, removed at teardown
    endpoint: str = ""                    # external only
    access_key_env: str = ""              # external only
    secret_key_env: str = ""              # external only
    alias_of: str = ""                    # set when this is another name for the same store
    handicap: dict[str, float] = field(default_factory=dict)   # a known slowdown: the positive control
    install: builds.Build | None = None   # how to build the binary (backends.builds)
    credentials: dict[str, int | str] = field(default_factory=dict)   # key format, when the store has one
    bootstrap: tuple[dict[str, Any], ...] = ()   # commands run once after the first start (run, capture, pattern)
    docker: dict[str, Any] = field(default_factory=dict)   # container definition (providers.docker)

    @property
    def kind(self) -> str:
        """The store this really is: aliases share it (an A/A comparison)."""
        return self.alias_of or self.name


_FIELD_NAMES = {f.name for f in fields(BackendDef)}


def fill_template(obj: Any, values: dict[str, str], where: str) -> Any:
    """A definition's ``${placeholders}`` filled from ``values``, in a string or every string of a
    list or mapping (native commands and files, container specs alike); an unknown placeholder is
    a ConfigError that names ``where`` and the valid ones."""
    if isinstance(obj, str):
        try:
            return Template(obj).substitute(values)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{where}: bad template placeholder {err} in {obj!r}; "
                              f"valid: {', '.join('${' + k + '}' for k in sorted(values))}") from None
    if isinstance(obj, list):
        return [fill_template(v, values, where) for v in obj]
    if isinstance(obj, dict):
        return {k: fill_template(v, values, where) for k, v in obj.items()}
    return obj


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _argv(v: Any) -> bool:
    """A command as a list of words: a string would be split into characters."""
    return isinstance(v, (list, tuple)) and all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in v)


def _text_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _http(v: Any) -> bool:
    url = urlparse(v) if isinstance(v, str) else None
    return url is not None and url.scheme in ("http", "https") and bool(url.netloc)


def _endpoint(v: Any) -> bool:
    """What ExternalStore and Milvus's plain-HTTP S3 client can use: http://HOST:PORT ("" = not set yet)."""
    if v == "":
        return True
    url = urlparse(v) if isinstance(v, str) else None
    try:
        return url is not None and url.scheme == "http" and bool(url.hostname) and bool(url.port)
    except ValueError:   # a port that is not a number
        return False


def _step(v: Any) -> bool:
    return (isinstance(v, dict) and set(v) <= {"run", "capture", "pattern"} and _argv(v.get("run")) and bool(v["run"])
            and all(isinstance(v.get(k, ""), str) for k in ("capture", "pattern")))


# Each field's check and what is valid, so that a bad msbench.yaml entry fails when it is loaded.
# handicap and install have validators of their own (providers.handicap, providers.builds).
_FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{key: (_text, "a string") for key in ("description", "binary", "binary_env", "enable_hint",
                                            "access_key_env", "secret_key_env", "alias_of")},
    "ports": (lambda v: _argv(v) and all(isinstance(w, str) for w in v), "a list of port names such as [s3, console]"),
    "files": (_text_map, "a mapping of file names to their text"),
    "env": (_text_map, "a mapping of variable names to strings (quote numbers and booleans)"),
    "command": (_argv, "a list of words such as [weed, server] (a single string is not split)"),
    "leftovers": (_argv, "a list of file paths"),
    "ready_url": (_http, "an http:// or https:// URL"),
    "endpoint": (_endpoint, "an http://HOST:PORT URL"),
    "stop_grace_s": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     and 0 < v <= 600, "a number of seconds above 0, at most 600"),
    "credentials": (lambda v: isinstance(v, dict) and all(isinstance(x, (int, str)) and not isinstance(x, bool)
                                                          for x in v.values()),
                    "a mapping of names to numbers or strings"),
    "bootstrap": (lambda v: isinstance(v, (list, tuple)) and all(_step(step) for step in v),
                  "a list of steps {run: [command words], capture: NAME, pattern: REGEX}"),
    "docker": (lambda v: isinstance(v, dict), "a mapping (image, ports, env, command, volumes, healthcheck)"),
}


def _from_mapping(name: str, raw: dict[str, Any], source: str) -> BackendDef:
    unknown = set(raw) - _FIELD_NAMES
    if unknown:
        raise ConfigError(f"backend {name!r} ({source}): unknown fields {sorted(unknown)}; valid: {sorted(_FIELD_NAMES)}")
    data = {**raw, "name": name}
    if data.get("launcher") not in LAUNCHERS:
        raise ConfigError(f"backend {name!r} ({source}): launcher must be one of {', '.join(LAUNCHERS)}, "
                          f"got {data.get('launcher')!r}")
    for key, (ok, valid) in _FIELD_TYPES.items():
        if key in data and not ok(data[key]):
            raise ConfigError(f"backend {name!r} ({source}): {key} must be {valid}, got {data[key]!r}")
    for key in ("ports", "command", "leftovers"):
        if key in data:
            data[key] = tuple(str(v) for v in data[key])
    data["bootstrap"] = tuple(data.get("bootstrap") or ())
    if data["launcher"] == "process" and not (data.get("command") and data.get("ready_url")):
        raise ConfigError(f"backend {name!r} ({source}): a process backend needs 'command' and 'ready_url'")
    data["handicap"] = _handicap(name, data.get("handicap"))
    data["install"] = builds.validate(name, data.get("install"))
    if data["handicap"] and data["launcher"] == "external":
        raise ConfigError(f"backend {name!r} ({source}): a handicap needs a store we run; an external endpoint has none")
    if data["launcher"] == "external" and not (data.get("access_key_env") and data.get("secret_key_env")):
        raise ConfigError(f"backend {name!r} ({source}): an external backend needs 'access_key_env' and "
                          f"'secret_key_env' (the environment variables holding its keys)")
    if "s3" not in data.get("ports", ("s3",)):
        raise ConfigError(f"backend {name!r} ({source}): 'ports' must include 's3'")
    return BackendDef(**data)


def _handicap(name: str, raw: Any) -> dict[str, float]:
    """A handicap mapping checked before anything runs: ``{cpu: fraction of one CPU}``."""
    if raw in (None, {}):
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"backend {name!r}: handicap must be a mapping such as {{cpu: 0.25}}, got {raw!r}")
    unknown = set(raw) - set(HANDICAP_KEYS)
    if unknown:
        raise ConfigError(f"backend {name!r}: unknown handicap keys {sorted(unknown)}; valid: {', '.join(HANDICAP_KEYS)} "
                          "(cpu: the share of one CPU the store's processes may use, e.g. 0.25)")
    cpu = raw.get("cpu")
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not 0.01 <= cpu <= os.cpu_count():
        raise ConfigError(f"backend {name!r}: handicap cpu must be a number from 0.01 to {os.cpu_count()} "
                          f"(CPUs the store may use), got {cpu!r}")
    return {"cpu": float(cpu)}


def builtin_definitions() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(_HERE.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        out[raw.pop("name")] = raw
    return out


def load_backends(user: UserConfig | None = None) -> dict[str, BackendDef]:
    """Built-in definitions, then the user's: a known name is overridden field by field;
    ``alias_of: X`` copies X under a new name; a new name needs a full definition."""
    raw = builtin_definitions()
    source = {name: "built-in" for name in raw}
    for name, entry in ((user.backends if user else {}) or {}).items():
        entry = dict(entry)
        where = str(user.path or "msbench.yaml")
        if "alias_of" in entry:
            target = entry["alias_of"]
            if target not in raw:
                raise ConfigError(f"backend {name!r} ({where}): alias_of {target!r} is not a known backend; "
                                  f"known: {', '.join(sorted(raw))}")
            raw[name] = {**raw[target], **entry}
        elif name in raw:
            raw[name] = {**raw[name], **entry}
        else:
            raw[name] = entry
        source[name] = where
    defs = {name: _from_mapping(name, spec, source[name]) for name, spec in raw.items()}
    deployments = user.deployments if user else {}
    clash = sorted(set(deployments) & set(defs))
    if clash:
        raise ConfigError(f"deployment(s) {', '.join(clash)} ({user.path or 'msbench.yaml'}) have the name of a "
                          f"built-in backend; rename them")
    return {**defs, **{name: BackendDef(name=name, launcher=DEPLOYMENT, endpoint=d.s3_endpoint,
                                        description=d.description or f"existing deployment at {d.milvus_uri}",
                                        access_key_env=d.access_key_env, secret_key_env=d.secret_key_env)
                       for name, d in deployments.items()}}


def find_binary(backend: BackendDef, user: UserConfig | None = None) -> str | None:
    """Environment variable, then msbench.yaml ``binaries``, then the pinned build (``msbench stores
    install``), then PATH, then this Python's bin dir."""
    candidates = [os.environ.get(backend.binary_env, "") if backend.binary_env else "",
                  (user.binaries.get(backend.binary, "") if user else "")]
    for candidate in candidates:
        if candidate:
            return candidate if os.access(candidate, os.X_OK) else None
    built = builds.installed(backend.binary, backend.install)
    if built:
        return str(built)
    found = shutil.which(backend.binary)
    if found:
        return found
    beside = Path(sys.executable).parent / backend.binary
    return str(beside) if os.access(beside, os.X_OK) else None


def select(names: list[str], registry: dict[str, BackendDef]) -> list[BackendDef]:
    """Validate a user's backend list before anything starts."""
    if not names:
        raise ConfigError(f"no backends given; known backends: {', '.join(sorted(registry))}")
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; known backends: {', '.join(sorted(registry))}")
    if len(set(names)) != len(names):
        raise ConfigError(f"backend listed twice in {names}; to run one store under two names use alias_of in msbench.yaml")
    return [registry[n] for n in names]
