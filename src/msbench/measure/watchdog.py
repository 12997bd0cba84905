"""While a phase runs, the stack's servers are watched: one that dies, or stops answering its
health check for ``unresponsive_s``, fails the phase at once, naming the server, how it ended
and the phase, instead of leaving Milvus retrying and the phase waiting for its timeout.

A thread checks every server's exit status every ``EXIT_POLL_S`` (a ``waitpid``, no traffic) and
asks each health check every ``PROBE_EVERY_S`` (one small HTTP request). On a fault it records
the cause and interrupts the main thread, where the phase runs: ``_thread.interrupt_main``
simulates a signal whose handler raises ``ComponentFailed`` (the blocking gRPC and HTTP waits
of pymilvus and boto3 wake every 0.1 s, so the phase ends within a moment). Shorter silences
that end (or health answers later than ``SLOW_ANSWER_S``) are kept as ``stalls`` for the record.
During an intended restart (the cold load: ``restarting``) the health checks rest, since the
servers are down on purpose, but exits are still watched: the stack's list of servers is read
afresh at every check, so the servers the restart brings up are watched from their start, and a
server we stopped ourselves is no fault (its exit status says None).
"""
from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
from typing import Callable, Iterator

import psutil

from msbench.providers import PROBE_TIMEOUT_S, Watched

EXIT_POLL_S = 0.5
PROBE_EVERY_S = 5.0
SLOW_ANSWER_S = 2.0   # a health answer this late is recorded as a stall (a lower bound of its length)
_SIGNAL = signal.SIGUSR2   # simulated only (interrupt_main): no signal is sent to any process


class ComponentFailed(BaseException):
    """A server of the stack died or stopped answering while a phase ran. Not an ``Exception``,
    like KeyboardInterrupt: it arrives asynchronously, and the retry loops it interrupts (ours,
    pymilvus's) must not swallow it."""


def _first_exit(components: list[Watched]) -> str | None:
    """The first component that has ended, and how ("store minio (...) was killed by SIGKILL")."""
    for comp in components:
        ended = comp.exit_status()
        if ended:
            return f"{comp.name} {ended}"
    return None


def _state_of(pids: tuple[int, ...]) -> str:
    states = []
    for pid in pids:
        try:
            states.append(psutil.Process(pid).status())
        except psutil.Error:
            continue
    if psutil.STATUS_STOPPED in states:
        return "; its process is stopped (SIGSTOP)"
    return f"; its process state: {', '.join(states)}" if states else ""


class Watchdog:
    """Use ``with Watchdog(stack.watched, unresponsive_s):`` around the phases, and
    ``with dog.phase(name):`` around each one."""

    def __init__(self, components: Callable[[], list[Watched]], unresponsive_s: float,
                 probe_every: float = PROBE_EVERY_S):
        self.components = components
        self.unresponsive_s = unresponsive_s
        self.probe_every = probe_every
        self.fault: str | None = None
        self.stalls: list[dict] = []     # silences that ended: component, phase, seconds
        self._phase = ""
        self._phase_began = 0.0
        self._armed = False
        self._restarting = 0
        self._silent_since: dict[str, float] = {}
        self._next_probe: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="msbench-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        # Only the main thread can be interrupted; elsewhere a fault is reported when the phase ends.
        self._in_main = threading.current_thread() is threading.main_thread()
        self._previous = signal.signal(_SIGNAL, self._interrupted) if self._in_main else None
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * PROBE_TIMEOUT_S)
        if self._in_main:
            signal.signal(_SIGNAL, self._previous)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Arm for one phase. Its own exception, if a server had failed, is reported as that failure."""
        with self._lock:
            self._phase, self._phase_began, self._armed = name, time.monotonic(), True
        try:
            yield
            self.check_now()
            if self.fault:
                raise ComponentFailed(self.fault)
        except ComponentFailed:
            raise
        except Exception as err:
            self.check_now()   # the phase may have seen the death before the watch did
            if self.fault:
                raise ComponentFailed(f"{self.fault} (the phase then failed with {type(err).__name__}: "
                                      f"{str(err)[:300]})") from err
            raise
        finally:
            with self._lock:
                self._armed = False

    @contextlib.contextmanager
    def restarting(self) -> Iterator[None]:
        """For a restart we asked for: health checks rest, exits of the servers it starts are watched."""
        with self._lock:
            self._restarting += 1
        try:
            yield
        finally:
            with self._lock:
                self._restarting -= 1
                self._silent_since.clear()

    def _interrupted(self, signum, frame) -> None:
        with self._lock:
            armed = self._armed
        if armed and self.fault:
            raise ComponentFailed(self.fault)

    def _where(self) -> str:
        return f"during phase {self._phase}, {time.monotonic() - self._phase_began:.1f} s into it"

    def _fail(self, cause: str) -> None:
        with self._lock:
            if self.fault or not self._armed:
                return
            self.fault = f"{cause} {self._where()}"
        _thread.interrupt_main(_SIGNAL)

    def check_now(self) -> None:
        """Exit statuses, read at once (cheap: no probe)."""
        with self._lock:
            if self.fault:
                return
        cause = _first_exit(self.components())
        if cause:
            with self._lock:
                if not self.fault:
                    self.fault = f"{cause} {self._where()}"

    def _probe(self, comp: Watched, now: float) -> None:
        if comp.answers is None or now < self._next_probe.get(comp.name, 0.0):
            return
        self._next_probe[comp.name] = now + self.probe_every
        asked = time.monotonic()
        if comp.answers():
            answered = time.monotonic()
            since = self._silent_since.pop(comp.name, None)
            if since is None and answered - asked >= SLOW_ANSWER_S:
                since = asked   # a silence shorter than the probe's timeout shows as a late answer
            if since is not None and self._armed:
                self.stalls.append({"component": comp.name, "phase": self._phase,
                                    "seconds": round(answered - since, 1)})
            return
        since = self._silent_since.setdefault(comp.name, asked)
        if time.monotonic() - since >= self.unresponsive_s:
            self._fail(f"{comp.name} did not answer its health check for {time.monotonic() - since:.0f} s"
                       f"{_state_of(comp.pids)}")

    def _loop(self) -> None:
        while not self._stop.wait(EXIT_POLL_S):
            with self._lock:
                idle = not self._armed or self.fault is not None
            if idle:
                continue
            try:
                components = self.components()
                cause = _first_exit(components)
                if cause:
                    self._fail(cause)
                    continue
                now = time.monotonic()
                for comp in components if not self._restarting else ():
                    self._probe(comp, now)
            except Exception:   # a stack half torn down: the phase's own error will say more
                continue
