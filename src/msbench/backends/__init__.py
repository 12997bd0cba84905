"""Object-store backends as data: one YAML definition each, merged with the user's msbench.yaml.

A definition says how to start the store (``launcher``: a plain ``process`` from a command
template, the ``ceph`` bootstrap, or ``external`` for an endpoint someone else runs), which
ports it needs, which files to write, and how to tell it is ready.  Adding a backend that is
a single server process means adding one YAML file here or one entry in msbench.yaml.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from msbench.config import ConfigError, UserConfig
from msbench.providers import builds, handicap

LAUNCHERS = ("process", "ceph", "external")
_HERE = Path(__file__).parent


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
    install: dict[str, str] = field(default_factory=dict)      # how to build the binary (providers.builds)
    credentials: dict[str, int | str] = field(default_factory=dict)   # key format, when the store has one
    bootstrap: tuple[dict[str, Any], ...] = ()   # commands run once after the first start (run, capture, pattern)
    docker: dict[str, Any] = field(default_factory=dict)   # container definition (providers.docker)

    @property
    def kind(self) -> str:
        """The store this really is: aliases share it (an A/A comparison)."""
        return self.alias_of or self.name


_FIELD_NAMES = {f.name for f in fields(BackendDef)}


def _from_mapping(name: str, raw: dict[str, Any], source: str) -> BackendDef:
    unknown = set(raw) - _FIELD_NAMES
    if unknown:
        raise ConfigError(f"backend {name!r} ({source}): unknown fields {sorted(unknown)}; valid: {sorted(_FIELD_NAMES)}")
    data = {**raw, "name": name}
    if data.get("launcher") not in LAUNCHERS:
        raise ConfigError(f"backend {name!r} ({source}): launcher must be one of {', '.join(LAUNCHERS)}, "
                          f"got {data.get('launcher')!r}")
    for key in ("ports", "command", "leftovers"):
        if key in data:
            data[key] = tuple(str(v) for v in data[key])
    data["bootstrap"] = tuple(data.get("bootstrap") or ())
    if any(not isinstance(step, dict) or not step.get("run") for step in data["bootstrap"]):
        raise ConfigError(f"backend {name!r} ({source}): each bootstrap step needs 'run' (a command), "
                          "optionally 'capture' and 'pattern'")
    if data["launcher"] == "process" and not (data.get("command") and data.get("ready_url")):
        raise ConfigError(f"backend {name!r} ({source}): a process backend needs 'command' and 'ready_url'")
    data["handicap"] = handicap.validate(name, data.get("handicap"))
    data["install"] = builds.validate(name, data.get("install"))
    if data["handicap"] and data["launcher"] == "external":
        raise ConfigError(f"backend {name!r} ({source}): a handicap needs a store we run; an external endpoint has none")
    if "s3" not in data.get("ports", ("s3",)):
        raise ConfigError(f"backend {name!r} ({source}): 'ports' must include 's3'")
    return BackendDef(**data)


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
    return {name: _from_mapping(name, spec, source[name]) for name, spec in raw.items()}


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


def unavailable_reason(backend: BackendDef, user: UserConfig | None = None, install: bool = False) -> str | None:
    """None when this machine can run the backend; otherwise why not and how to enable it."""
    no_quota = handicap.unavailable_reason() if backend.handicap else None
    if no_quota:
        return f"its handicap {backend.handicap} cannot be applied: {no_quota}"
    if backend.launcher == "process":
        if find_binary(backend, user) is None:
            named = os.environ.get(backend.binary_env) if backend.binary_env else None
            what = f"{backend.binary_env}={named} is not an executable file" if named else \
                f"no '{backend.binary}' binary found"
            if backend.install and not named:
                what += f" (not built: {builds.missing_tool(backend.install) or 'no build yet'})"
            return f"{what}. To enable: {backend.enable_hint}"
        return None
    if backend.launcher == "ceph":
        from msbench.providers import ceph
        reason = ceph.ensure_ceph_installed() if install else ceph.ceph_unavailable_reason()
        return f"{reason}. To enable: {backend.enable_hint}" if reason else None
    if not backend.endpoint:
        return f"no endpoint configured. To enable: {backend.enable_hint}"
    missing = [v for v in (backend.access_key_env, backend.secret_key_env) if not os.environ.get(v)]
    if missing:
        return f"credentials missing: environment variables {', '.join(missing)} are not set. To enable: {backend.enable_hint}"
    return None


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
