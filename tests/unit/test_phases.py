"""Timed waits track the true completion within their stated resolution; footprint measures twice.

Fakes stand in for Milvus: a state that flips to done at a known time, on a simulated clock
(exact) or on the real one (the phase functions as they run in a trial).
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from pymilvus.client.types import LoadState, State

from msbench.run import phases
from msbench.config import make_params


class SimClock:
    """Simulated time: sleeping and state calls advance it, nothing else does."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _flips_at(clock: SimClock, done_at: float, rtt: float):
    """A state call taking ``rtt``, evaluated by the server halfway, done from ``done_at`` on."""
    def done() -> bool:
        clock.now += rtt / 2
        seen = clock.now >= done_at
        clock.now += rtt / 2
        return seen
    return done


@pytest.mark.parametrize("rtt", [0.0005, 0.002, 0.02])
@pytest.mark.parametrize("done_at", [0.0003, 0.137, 1.52, 2.03, 7.777, 95.4])
def test_wait_until_is_within_its_resolution_of_the_true_completion(done_at, rtt):
    clock = SimClock()
    request = 0.004                       # the request itself, before the first state call
    clock.now = request
    waited = phases.wait_until(_flips_at(clock, done_at, rtt), 0.0, 3600, "x", clock=clock, sleep=clock.sleep)
    assert abs(waited.elapsed_s - done_at) <= waited.resolution_s
    # one poll period (10 ms, or 1% of the time waited, at most 1 s) plus one round trip
    period = min(max(phases.POLL_MIN_S, phases.POLL_FRACTION * done_at), phases.POLL_MAX_S)
    assert waited.resolution_s <= max(period, request) + rtt + 1e-9


def test_short_waits_resolve_to_about_ten_ms_not_pymilvus_steps():
    elapsed = {round(phases.wait_until(_flips_at(clock := SimClock(), t, 0.001), 0.0, 60, "x",
                                       clock=clock, sleep=clock.sleep).elapsed_s, 3)
               for t in (1.50, 1.52, 1.55, 1.61, 1.73)}
    assert len(elapsed) == 5          # pymilvus's 0.5 s polling made all of these 2.0


def test_wait_until_gives_up_after_its_timeout():
    clock = SimClock()
    with pytest.raises(TimeoutError, match="flush not done after 5 s"):
        phases.wait_until(lambda: False, 0.0, 5, "flush", clock=clock, sleep=clock.sleep)
    assert 5 <= clock.now < 5.2


def test_settle_waits_for_a_quiet_window_and_is_bounded():
    clock = SimClock()
    changes = {3.0: "b", 7.0: "c"}        # the listing changes twice, then stays

    def read():
        return next((v for t, v in sorted(changes.items(), reverse=True) if clock.now >= t), "a")

    value, waited, settled = phases.settle(read, quiet=6.0, timeout=20.0, clock=clock, sleep=clock.sleep)
    assert (value, settled) == ("c", True) and 13.0 <= waited <= 13.6
    clock.now = 0.0
    changes[12.0] = "d"
    _, waited, settled = phases.settle(read, quiet=6.0, timeout=10.0, clock=clock, sleep=clock.sleep)
    assert not settled and 10.0 <= waited <= 10.6


# --- the phase functions against fakes on the real clock -----------------------------------

DELAY = 0.15   # the fake server is done this long after the request


class FakeServer:
    """One collection: flush, index, load and compaction states that flip DELAY after their request."""

    def __init__(self, rows: int, load_failures: int = 0) -> None:
        self.rows, self.load_failures = rows, load_failures
        self.requested: dict[str, float] = {}
        self.listing = {"files/insert_log/1/2/3/100/1": 1000, "files/index_files/9/1/2/3/HNSW": 500}

    def _done(self, what: str) -> bool:
        return time.perf_counter() >= self.requested[what] + DELAY

    # Collection
    def create_index(self, field, params, sync=True):
        assert sync is False            # pymilvus's own wait would add its 0.5 s steps
        self.requested["index"] = time.perf_counter()

    def load(self, timeout=None, _async=False):
        assert _async
        if self.load_failures:
            self.load_failures -= 1
            raise RuntimeError("node not match")
        self.requested["load"] = time.perf_counter()

    def compact(self):
        self.requested["compact"] = self.requested["index"] = time.perf_counter()

    def get_compaction_state(self):
        return SimpleNamespace(state=State.Completed if self._done("compact") else State.Executing)

    # handler (flush)
    def flush(self, names, _async=False):
        assert _async
        self.requested["flush"] = time.perf_counter()
        reply = SimpleNamespace(coll_segIDs={names[0]: SimpleNamespace(data=[11, 12])}, coll_flush_ts={names[0]: 42})
        return SimpleNamespace(_future=SimpleNamespace(result=lambda: reply))

    def get_flush_state(self, segments, name, flush_ts):
        assert (segments, flush_ts) == ([11, 12], 42)
        return self._done("flush")

    # utility
    def index_building_progress(self, name, using):
        done = self._done("index")
        return {"total_rows": self.rows, "indexed_rows": self.rows if done else 0,
                "pending_index_rows": 0 if done else self.rows, "state": "Finished" if done else "InProgress"}

    def loading_progress(self, name, using):
        return {"loading_progress": "100%" if self._done("load") else "40%"}

    def load_state(self, name, using):
        return LoadState.Loaded if self._done("load") else LoadState.Loading


@pytest.fixture()
def trial(monkeypatch, tmp_path):
    server = FakeServer(rows=100)
    monkeypatch.setattr(phases, "utility", server)
    monkeypatch.setattr(phases.connections, "_fetch_handler", lambda alias: server)
    monkeypatch.setattr(phases, "tcp_bytes_sent", lambda port: {"c": 1000})
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "blob").write_bytes(b"x" * 5000)
    stack = SimpleNamespace(store=SimpleNamespace(port=9000), bucket="b", listing=lambda: dict(server.listing),
                            data_paths=lambda: [tmp_path / "store"], capture_target=lambda: ("lo", 9000))
    s = phases.TrialState(stack, params=SimpleNamespace(index_params=lambda: {}, n_vectors=100, dim=4),
                          data=SimpleNamespace(train=range(100)), collection=server)
    return s, server


def _values(measured):
    assert all(isinstance(m, phases.Measurement) for m in measured)
    return {m.metric: m.value for m in measured}


@pytest.mark.parametrize("phase,metric", [(phases.flush, "flush"), (phases.index_build, "index_build"),
                                          (phases.load_first, "load_first")])
def test_timed_phase_tracks_the_true_completion(trial, phase, metric):
    s, _server = trial
    got = _values(phase(s))
    # the request is sent microseconds after the phase's clock starts
    assert abs(got[f"{metric}_s"] - DELAY) <= got[f"{metric}_resolution_s"] + 0.002
    assert got[f"{metric}_resolution_s"] < 0.05


def test_a_failed_index_build_stops_the_wait(trial, monkeypatch):
    s, server = trial
    monkeypatch.setattr(server, "index_building_progress", lambda name, using: {"state": "Failed"})
    with pytest.raises(RuntimeError, match="index build failed"):
        phases.index_build(s)


def test_load_retries_a_refused_load_and_still_times_the_successful_one(trial, monkeypatch):
    s, server = trial
    server.load_failures = 2
    monkeypatch.setattr(phases, "LOAD_RETRY_PAUSE_S", 0.1)   # 2 s in a trial
    got = _values(phases._timed_load(s, "load_warm"))
    assert got["load_retries"] == 2 and got["load_failed_attempts"] == 2
    assert 0.2 <= got["load_failed_attempts_s"] < 0.3           # the failed tries with their pauses
    assert got["store_bytes_served_during_load"] == 0 and s.bytes_served_note == ""
    assert abs(got["load_warm_s"] - DELAY) <= got["load_warm_resolution_s"] + 0.002
    assert s.load_failures == ["load_warm attempt 1: RuntimeError: node not match",
                                        "load_warm attempt 2: RuntimeError: node not match"]


def test_a_load_that_needed_no_retry_says_so(trial):
    s, _server = trial
    got = _values(phases._timed_load(s, "load_first"))
    assert (got["load_retries"], got["load_failed_attempts"], got["load_failed_attempts_s"]) == (0, 0, 0)
    assert s.load_failures == []


def test_the_last_failed_load_is_recorded_and_raised_and_a_timeout_is_not_retried(trial, monkeypatch):
    s, server = trial
    monkeypatch.setattr(phases, "LOAD_RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(server, "load", lambda timeout=None, _async=False: (_ for _ in ()).throw(
        RuntimeError("x" * 1000)))
    with pytest.raises(RuntimeError):
        phases._timed_load(s, "load_cold", attempts=3)
    assert [f[:len("load_cold attempt 1: RuntimeError: ")] for f in s.load_failures] == [
        f"load_cold attempt {n}: RuntimeError: " for n in (1, 2, 3)]
    assert all(len(f) == len("load_cold attempt 1: RuntimeError: ") + 300 for f in s.load_failures)
    calls = []

    def times_out(timeout=None, _async=False):
        calls.append(1)
        raise TimeoutError("load not done")

    monkeypatch.setattr(server, "load", times_out)
    s.load_failures.clear()
    with pytest.raises(TimeoutError):
        phases._timed_load(s, "load_warm")
    assert calls == [1] and s.load_failures == []


@pytest.mark.parametrize("after,why", [
    ({}, "no connection from port 9000 is visible on this host (the store is not on this host's loopback)"),
    (None, "the ss command (Debian iproute2) is missing or failed"),
])
def test_bytes_served_are_nan_with_the_reason_said_once_when_the_counter_cannot_see(trial, monkeypatch, after, why):
    s, _server = trial
    readings = iter([{"c": 1000}, after, {"c": 1000}, after])
    monkeypatch.setattr(phases, "tcp_bytes_sent", lambda port: next(readings))
    first = _values(phases._timed_load(s, "load_first"))
    note = s.bytes_served_note
    second = _values(phases._timed_load(s, "load_warm"))
    assert first["store_bytes_served_during_load"] != first["store_bytes_served_during_load"]   # NaN
    assert second["store_bytes_served_during_load"] != second["store_bytes_served_during_load"]
    assert note.startswith(f"store_bytes_served_during_load is NaN: {why}")
    assert s.bytes_served_note == note and s.load_failures == []


def test_bytes_served_count_what_the_store_sent_during_the_load(trial, monkeypatch):
    s, _server = trial
    readings = iter([{"a 1": 1000, "a 2": 10}, {"a 1": 5000, "a 3": 2000}])
    monkeypatch.setattr(phases, "tcp_bytes_sent", lambda port: next(readings))
    assert _values(phases._timed_load(s, "load_warm"))["store_bytes_served_during_load"] == 6000
    assert s.bytes_served_note == ""


def test_bytes_served_are_nan_when_milvus_does_not_reach_the_store_through_this_host(trial, monkeypatch):
    s, _server = trial
    monkeypatch.setattr(s.stack, "capture_target", lambda: "the store is elsewhere")
    monkeypatch.setattr(phases, "tcp_bytes_sent", lambda port: pytest.fail("counters read for an unseen store"))
    served = _values(phases._timed_load(s, "load_warm"))["store_bytes_served_during_load"]
    assert served != served and s.bytes_served_note == "store_bytes_served_during_load is NaN: the store is elsewhere"


def test_footprint_as_found_and_after_compaction_and_gc(trial, monkeypatch):
    s, server = trial
    s.index_build_s = 1.0
    monkeypatch.setattr(phases, "GC_QUIET_S", 0.3)
    monkeypatch.setattr(phases, "GC_SETTLE_TIMEOUT_S", 5.0)
    calls = {"n": 0}
    real_listing = s.stack.listing

    def listing():   # GC removes the old segment's binlog a little after the compaction
        calls["n"] += 1
        if calls["n"] == 3:
            server.listing = {k: v for k, v in server.listing.items() if "insert_log/1/2/3/100" not in k}
            server.listing["files/insert_log/1/2/3/200/1"] = 900
        return real_listing()

    monkeypatch.setattr(s.stack, "listing", listing)
    got = _values(phases.footprint(s))
    assert got["bucket_bytes"] == 1500 and got["bucket_insert_log_bytes"] == 1000
    assert got["bucket_bytes_after_gc"] == 1400 and got["bucket_insert_log_bytes_after_gc"] == 900
    assert got["bucket_objects_after_gc"] == 2 and got["gc_settled"] == 1
    assert got["disk_allocated_bytes"] > 0 and got["disk_allocated_bytes_after_gc"] > 0
    assert DELAY <= got["compaction_s"] < 1.0 and 0.3 <= got["gc_wait_s"] < 2.0


def test_timing_facts_state_the_poll_the_done_rules_the_timeouts_and_the_gc_settings():
    facts = phases.timing_facts(make_params("smoke"))
    assert facts["timeouts_s"]["flush"] == round(60 + 10 * 5_000 * 32 * 4 / 2**20, 1)
    assert facts["poll_interval_s"]["min"] == 0.01
    assert set(facts["done"]) >= {"flush", "index", "load", "footprint_after_gc"}
    assert facts["milvus_gc_config"]["dataCoord.gc.interval"] == phases.GC_INTERVAL_S


def test_timeouts_grow_with_the_data_and_stay_short_for_a_small_study():
    smoke, paper = phases.timeouts(make_params("smoke")), phases.timeouts(make_params("paper"))
    assert all(60 <= smoke[k] < 200 for k in smoke), smoke       # a stuck smoke trial fails in minutes
    assert all(paper[k] > 10 * smoke[k] for k in ("flush", "index", "load"))
