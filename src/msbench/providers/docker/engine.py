"""The Docker engine as the provider uses it: a client, the images a stack runs, and containers
seen from outside (healthy yet? how did it end? its main process on the host), plus the helper
container that drops the host's page cache. No stack logic here: ``stack.py`` composes these."""
from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import psutil

from msbench.config import ConfigError
from msbench.providers.docker.specs import ROLE_LABEL
from msbench.providers.process import describe_exit

IMAGE_MODES = ("auto", "local", "registry")
HELPER_VM_DIR = "/host/proc/sys/vm"


class DockerUnavailable(RuntimeError):
    """The Docker engine cannot be reached; says why and how to start it."""


class ContainerNotReady(RuntimeError):
    """A container exited, turned unhealthy or timed out; carries its last log lines."""


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


# -- images ----------------------------------------------------------------------------------------
def image_mode() -> str:
    mode = os.environ.get("MSBENCH_DOCKER_IMAGES", "auto").strip().lower() or "auto"
    if mode not in IMAGE_MODES:
        raise ConfigError(f"MSBENCH_DOCKER_IMAGES must be one of {', '.join(IMAGE_MODES)}, got {mode!r}")
    return mode


def use_local_images(client, defs: dict[str, dict]) -> dict[str, bool]:
    """Per role, whether its local image runs (MSBENCH_DOCKER_IMAGES; ``auto``: the registry image
    when the engine has it, else the local one when it has that)."""
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
                client.images.get(image)
                out[role] = False
            except docker.errors.ImageNotFound:
                try:
                    client.images.get(local)
                    out[role] = True
                except docker.errors.ImageNotFound:
                    out[role] = False
    return out


def ensure_image(client, image: str) -> None:
    """The image present in the engine, pulled if need be; says how to build it locally when no
    registry answers."""
    import docker.errors

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except docker.errors.APIError as err:  # no registry: the engine's pull fails
        raise ContainerNotReady(f"image {image} is not present and cannot be pulled ({err.explanation or err}); "
                                "build local images with `msbench images build-local` "
                                "(used automatically, or force with MSBENCH_DOCKER_IMAGES=local)") from err


# -- containers ------------------------------------------------------------------------------------
def tar_of(files: dict[str, str]) -> bytes:
    """``files`` ({path in the container: text}) as a tar archive for ``put_archive``."""
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
