"""Fixtures of the unit tests that check input before anything runs."""
import pytest

# A backend that is available wherever `true` is on PATH; prepare checks it, never starts it.
FAKE = ('backends:\n  fake: {launcher: process, binary: "true", command: ["${binary}"], '
        'ready_url: "http://127.0.0.1:1/"}\n')


@pytest.fixture
def config(tmp_path, monkeypatch):
    """An msbench.yaml defining the fake backend, with a cache of the test's own."""
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "msbench.yaml"
    path.write_text(FAKE)
    return path
