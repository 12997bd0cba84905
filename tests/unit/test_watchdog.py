"""The watchdog's logic with stand-in components (callables): a death or a silence ends the phase
at once with the component and the phase named; a restart we asked for does not."""
from __future__ import annotations

import threading
import time

import pytest

from msbench.measure.watchdog import ComponentFailed, Watchdog
from msbench.providers import Watched


class Server:
    """A component whose fate the test decides."""

    def __init__(self, name: str = "store minio (PID 1)"):
        self.ended: str | None = None
        self.answering = True
        self.name = name

    def watched(self) -> Watched:
        return Watched(self.name, lambda: self.ended, lambda: self.answering)


def _busy(seconds: float) -> None:
    """A phase body: Python code that keeps running, like pymilvus's 0.1 s gRPC waits."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)


def _later(delay: float, action) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def test_a_death_interrupts_the_phase_at_once_naming_component_how_and_phase():
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=60) as dog:
        _later(0.3, lambda: setattr(server, "ended", "was killed by SIGKILL"))
        began = time.monotonic()
        with pytest.raises(ComponentFailed) as failed:
            with dog.phase("flush"):
                _busy(20)
    assert time.monotonic() - began < 3
    assert "store minio (PID 1) was killed by SIGKILL during phase flush" in str(failed.value)


def test_a_death_just_after_the_phase_body_still_fails_that_phase():
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=60) as dog:
        with pytest.raises(ComponentFailed, match="exited with code 2 during phase search"):
            with dog.phase("search"):
                server.ended = "exited with code 2"


def test_the_phase_own_error_is_reported_as_the_death_that_caused_it():
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=60) as dog:
        with pytest.raises(ComponentFailed, match=r"killed by SIGKILL during phase load_first.*MilvusException: gone"):
            with dog.phase("load_first"):
                server.ended = "was killed by SIGKILL"
                raise RuntimeError("MilvusException: gone")


def test_a_phase_error_with_every_server_alive_stays_what_it_was():
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=60) as dog:
        with pytest.raises(TimeoutError):
            with dog.phase("flush"):
                raise TimeoutError("flush not done after 66 s")
    assert dog.fault is None


def test_a_restart_we_asked_for_is_not_a_fault():
    """Down on purpose (stopped by us: its exit status says None; its health check silent) is no fault."""
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=0.5, probe_every=0.1) as dog:
        with dog.phase("load_cold"):
            with dog.restarting():
                server.answering = False
                _busy(1.2)
                server.answering = True   # the restarted server
            _busy(0.6)
    assert dog.fault is None


def test_a_server_that_dies_during_the_restart_fails_the_phase_at_once():
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=60) as dog:
        began = time.monotonic()
        with pytest.raises(ComponentFailed, match=r"killed by SIGKILL during phase load_cold"):
            with dog.phase("load_cold"):
                with dog.restarting():
                    server.ended = "was killed by SIGKILL"
                    _busy(10)
        assert time.monotonic() - began < 5


def test_silence_longer_than_the_limit_fails_the_phase_and_a_short_one_is_recorded():
    server = Server()
    with Watchdog(lambda: [server.watched()], unresponsive_s=1.0, probe_every=0.2) as dog:
        with dog.phase("index"):
            server.answering = False
            _busy(0.5)
            server.answering = True
            _busy(0.8)
        assert dog.stalls and dog.stalls[0]["phase"] == "index" and 0.2 <= dog.stalls[0]["seconds"] < 1.0
        server.answering = False
        with pytest.raises(ComponentFailed, match=r"did not answer its health check for \d+ s during phase search"):
            with dog.phase("search"):
                _busy(10)


def test_outside_the_main_thread_the_fault_is_reported_when_the_phase_ends():
    server = Server()
    outcome = {}

    def trial():
        with Watchdog(lambda: [server.watched()], unresponsive_s=60) as dog:
            try:
                with dog.phase("insert"):
                    _later(0.2, lambda: setattr(server, "ended", "exited with code 1"))
                    _busy(1.5)
            except ComponentFailed as err:
                outcome["error"] = str(err)

    worker = threading.Thread(target=trial)
    worker.start()
    worker.join(10)
    assert "exited with code 1 during phase insert" in outcome["error"]


def test_a_late_health_answer_is_recorded_as_a_stall():
    """A silence shorter than the probe's timeout: the answer comes, but late."""
    server = Server()

    def slow_answer() -> bool:
        time.sleep(2.2)
        return True

    with Watchdog(lambda: [Watched(server.name, lambda: None, slow_answer)], unresponsive_s=60,
                  probe_every=10) as dog:
        with dog.phase("load_first"):
            _busy(3.0)
    assert [(s["phase"], s["seconds"] >= 2.0) for s in dog.stalls] == [("load_first", True)]
