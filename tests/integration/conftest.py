"""Session fixtures for the integration tests: a Docker engine, started only when needed.

``docker_engine`` reuses an engine that already answers; otherwise, as root, it installs
Debian's ``docker.io`` when ``dockerd`` is missing, starts ``dockerd`` on
unix:///var/run/docker.sock, and at the end of the session removes whatever carries our
labels and stops that dockerd by its PID (never by name).  The Docker tests are skipped, with
the missing prerequisite named, only when no engine can be reached or started.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from msbench.providers.process import apt_install

DOCKER_SOCKET = "unix:///var/run/docker.sock"
DOCKER_PACKAGE = "docker.io"


def _install_docker() -> str | None:
    """Install Debian's docker.io; None on success, else why not."""
    failed = apt_install(DOCKER_PACKAGE)
    if failed or shutil.which("dockerd") is None:
        return f"dockerd is not installed: {failed or 'docker.io installed no dockerd'}"
    return None


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """TERM (dockerd stops its containerd and shims), wait, then KILL: by PID only."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def docker_engine():
    """A docker SDK client for a running engine (see the module docstring)."""
    from msbench.providers.docker import DockerUnavailable, cleanup, docker_client

    try:
        client = docker_client(timeout=300)
    except DockerUnavailable:
        client = None
    if client is not None:  # someone else's engine: use it, leave it running
        yield client
        client.close()
        return
    if shutil.which("dockerd") is None:
        reason = _install_docker()
        if reason:
            pytest.skip(f"prerequisite missing for the Docker tests: {reason}")
    if os.geteuid() != 0:
        pytest.skip("prerequisite missing for the Docker tests: no engine runs and starting dockerd needs root")
    log = tempfile.NamedTemporaryFile(prefix="msbench-dockerd-", suffix=".log", delete=False, dir="/var/tmp")
    proc = subprocess.Popen(["dockerd", "--host", DOCKER_SOCKET], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            client = docker_client(timeout=300)
            break
        except DockerUnavailable as err:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                tail = Path(log.name).read_text(errors="replace")[-1500:]
                pytest.skip(f"prerequisite missing for the Docker tests: dockerd did not start ({err}); "
                            f"its log {log.name}:\n{tail}")
            time.sleep(0.5)
    try:
        yield client
    finally:
        try:
            cleanup(client)
        finally:
            client.close()
            _stop(proc)
            log.close()
            os.unlink(log.name)
