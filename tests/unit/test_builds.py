"""Stores built from source registries: the pins as data, the cache, and the one-time bootstrap."""
import json
import sys

import pytest

from msbench.backends import find_binary, load_backends
from msbench.config import ConfigError, UserConfig
from msbench.backends import builds
from msbench.providers.stores import ProcessStore


def test_minio_and_garage_are_pinned_to_their_registries():
    registry = load_backends()
    # the commit of the pinned image RELEASE.2025-09-07T16-13-09Z, as a Go module version
    assert registry["minio"].install == builds.Build("go", "github.com/minio/minio",
                                                     "v0.0.0-20250907161309-07c3a429bfed", minutes=5)
    assert registry["garage"].install == builds.Build("cargo", "garage", "2.5.0", minutes=25)
    # RustFS 1.0.1 declares Rust 1.98.1; with this kind's 1.95 it builds when told to ignore that, without
    # the default features a single S3 server does not need (ftps, webdav, gcs), and a build script calls protoc
    assert registry["rustfs"].install == builds.Build("cargo", "rustfs", "1.0.1",
                                                      args=("--no-default-features", "--ignore-rust-version"),
                                                      needs=("protoc",), minutes=150)


@pytest.mark.parametrize("raw", [{"go": "x"}, {"go": "x", "cargo": "y", "version": "1"}, {"pip": "x", "version": "1"},
                                 "minio", {"cargo": "x", "version": "1", "args": "--locked"},
                                 {"cargo": "x", "version": "1", "minutes": True}])
def test_bad_install_pins_are_refused(raw):
    with pytest.raises(ConfigError, match="install must be"):
        load_backends(UserConfig(backends={"minio": {"install": raw}}))


def test_a_finished_build_is_found_and_skipped(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))   # no go, no minio on PATH
    minio = load_backends()["minio"]
    assert builds.installed("minio", minio.install) is None and find_binary(minio) is None
    folder = builds.target_dir("minio", minio.install)
    folder.mkdir(parents=True)
    (folder / "minio").write_text("#!/bin/sh\n")
    (folder / "minio").chmod(0o755)
    assert builds.installed("minio", minio.install) is None   # no install.json: an unfinished build
    (folder / "install.json").write_text(json.dumps({"binary": str(folder / "minio"), "sha256": "ab"}))
    assert find_binary(minio) == str(folder / "minio")
    assert builds.install("minio", minio.install)["sha256"] == "ab"   # not rebuilt
    assert "already built" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="'go' not on PATH"):
        builds.install("minio", minio.install, force=True)
    assert builds.missing_tool(load_backends()["rustfs"].install) == (
        "'cargo', 'protoc' not on PATH (needed to build rustfs@1.0.1)")


def test_bootstrap_runs_once_and_captures(tmp_path):
    """A one-process store whose set-up prints an id the next step uses (real processes, no mocks)."""
    marker = tmp_path / "steps.txt"
    backend = load_backends(UserConfig(backends={"fake": {
        "launcher": "process", "binary": sys.executable, "ports": ["s3"],
        "command": ["${binary}", "-m", "http.server", "--bind", "127.0.0.1", "${port_s3}"],
        "ready_url": "http://127.0.0.1:${port_s3}/",
        "bootstrap": [
            {"run": ["sh", "-c", f"echo 'abcdef0123456789@127.0.0.1' ; echo one >> {marker}"],
             "capture": "node_id", "pattern": "^([0-9a-f]{16,})"},
            {"run": ["sh", "-c", f"echo got ${{node_id}} >> {marker}"]},
        ]}}))["fake"]
    store = ProcessStore(backend, tmp_path / "store", tmp_path / "logs", binary=sys.executable)
    try:
        store.start(30)
        store.restart(30)
    finally:
        store.stop(fast=True)
    assert marker.read_text().splitlines() == ["one", "got abcdef0123456789"]
    assert store.captured == {"node_id": "abcdef0123456789"}
