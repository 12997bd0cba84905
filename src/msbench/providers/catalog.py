"""The providers, listed once: which can run here, which backend each can run, and the stack it makes.

``PROVIDERS`` is the one list (the CLI's choices, the notebooks' check, the manifest's value):
``native`` (local processes), ``docker`` (containers through the Docker SDK) and ``deployment``
(an existing Milvus and bucket from msbench.yaml). :func:`check_provider` refuses any other name in
one line, before anything is provisioned; :func:`unavailable_reason` says why a backend cannot run
under a provider here, and how to enable it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from msbench.backends import DEPLOYMENT, BackendDef, builds, find_binary, load_backends
from msbench.config import ConfigError, Deployment, Params, UserConfig
from msbench.providers import Stack, ceph, handicap
from msbench.providers.native import NativeStack

# (backend, params, log_dir, user config, run id, trial) -> a Stack, not yet started
StackFactory = Callable[[BackendDef, Params, Path, "UserConfig | None", str, int], Stack]


def _native(backend: BackendDef, params: Params, log_dir: Path, user: UserConfig | None, run: str, trial: int) -> Stack:
    return NativeStack(backend, params, log_dir, user)


def _docker(backend: BackendDef, params: Params, log_dir: Path, user: UserConfig | None, run: str, trial: int) -> Stack:
    from msbench.providers import docker   # on use: the docker SDK, and an engine, only for this provider

    return docker.docker_stack(backend, params, log_dir, user, run, trial)


def _deployment(backend: BackendDef, params: Params, log_dir: Path, user: UserConfig | None, run: str,
                trial: int) -> Stack:
    from msbench.providers.deployment import DeploymentStack   # on use: pymilvus's client

    return DeploymentStack(backend, params, log_dir, user, run=run, trial=trial)


PROVIDERS: dict[str, StackFactory] = {"native": _native, "docker": _docker, DEPLOYMENT: _deployment}


def check_provider(provider: object) -> str:
    """``provider`` when it is one of PROVIDERS; a ConfigError naming the valid ones otherwise."""
    if provider not in PROVIDERS:
        raise ConfigError(f"provider {provider!r} is not supported; valid: {', '.join(PROVIDERS)}")
    return str(provider)


def make_stack(provider: str, backend: BackendDef, params: Params, log_dir: Path, user: UserConfig | None,
               run: str, trial: int) -> Stack:
    """The stack ``provider`` makes for one trial, not yet started."""
    return PROVIDERS[check_provider(provider)](backend, params, log_dir, user, run, trial)


def provider_unavailable_reason(provider: str) -> str | None:
    """Docker needs an engine that answers, known before any trial is planned; the others need nothing more."""
    if check_provider(provider) != "docker":
        return None
    from msbench.providers.docker import docker_unavailable_reason   # on use: the docker SDK

    return docker_unavailable_reason()


def available_backends(user: UserConfig | None = None, provider: str = "native") -> list[str]:
    """Backends that can run here now under ``provider`` (no installs attempted), in a stable order."""
    return [name for name, b in sorted(load_backends(user).items())
            if unavailable_reason(b, user, provider=provider) is None]


def unavailable_reason(backend: BackendDef, user: UserConfig | None = None, install: bool = False,
                       provider: str = "native") -> str | None:
    """None when this machine can run the backend under ``provider``; otherwise why not and how to
    enable it. Nothing is installed unless ``install`` (Ceph's packages: set-up, never a run's check).
    Under docker the store runs from its image, so no binary is needed; the engine itself is
    checked once by the caller (providers.docker.docker_unavailable_reason). A deployment runs under
    the deployment provider only, and a store msbench starts never does."""
    if (backend.launcher == DEPLOYMENT) != (provider == DEPLOYMENT):
        return ("an existing deployment (msbench.yaml deployments:): run it with --provider deployment"
                if backend.launcher == DEPLOYMENT else "a store msbench starts itself; the deployment provider runs "
                                                       "the existing deployments named in msbench.yaml")
    if backend.launcher == DEPLOYMENT:
        return _deployment_unavailable(user.deployments[backend.name])
    if backend.launcher == "external":
        if not backend.endpoint:
            return f"no endpoint configured. To enable: {backend.enable_hint}"
        missing = [v for v in (backend.access_key_env, backend.secret_key_env) if not os.environ.get(v)]
        if missing:
            return (f"credentials missing: environment variables {', '.join(missing)} are not set. "
                    f"To enable: {backend.enable_hint}")
        return None
    if provider == "docker":
        from msbench.providers.docker import resolve_definitions   # on use: the docker SDK

        try:
            resolve_definitions(backend)
        except ConfigError as err:
            return str(err)
        return None
    no_quota = handicap.unavailable_reason() if backend.handicap else None
    if no_quota:
        return f"its handicap {backend.handicap} cannot be applied: {no_quota}"
    if backend.launcher == "process":
        if find_binary(backend, user) is None:
            env = os.environ.get(backend.binary_env) if backend.binary_env else None
            configured = (user.binaries.get(backend.binary) if user else None) if not env else None
            what = (f"{backend.binary_env}={env} is not an executable file" if env else
                    f"binaries.{backend.binary} in {user.path or 'msbench.yaml'} ({configured}) is not an executable "
                    f"file" if configured else f"no '{backend.binary}' binary found")
            if backend.install and not (env or configured):
                what += f" (not built: {builds.missing_tool(backend.install) or 'no build yet'})"
            return f"{what}. To enable: {backend.enable_hint}"
        return None
    reason = ceph.ensure_ceph_installed() if install else ceph.ceph_unavailable_reason()
    return f"{reason}. To enable: {backend.enable_hint}" if reason else None


def _deployment_unavailable(deployment: Deployment) -> str | None:
    """What is missing here for a deployment: a credential's variable, a hook's program. Checks
    the environment and PATH only: nothing is contacted."""
    missing = [env for env in deployment.credential_envs.values() if not os.environ.get(env)]
    if missing:
        return (f"credentials missing: environment variables {', '.join(missing)} are not set (export them; "
                f"their values are read when used, never stored)")
    programs = sorted({cmd[0] for cmds in deployment.hooks.values() for cmd in cmds if not shutil.which(cmd[0])})
    if programs:
        return f"hook program(s) {', '.join(programs)} not found on PATH"
    return None


