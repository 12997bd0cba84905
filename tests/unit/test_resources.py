"""The measurement primitives on real sockets and a real child process."""
import math
import os
import socket
import sys
import threading
import time

import psutil
import pytest

from msbench.measure import resources
from msbench.providers.process import ManagedProcess, free_port
from msbench.measure.resources import (PhaseMonitor, bytes_sent_between, parse_ss, peak_rss, reset_peak_rss,
                               tcp_bytes_sent)


def test_tcp_bytes_sent_counts_what_a_server_port_served():
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    try:
        before = tcp_bytes_sent(port)
        if before is None:
            pytest.skip("prerequisite missing: the ss command (Debian iproute2)")
        conn.sendall(b"x" * 300_000)
        received = 0
        while received < 300_000:
            received += len(client.recv(65536))
        time.sleep(0.1)  # let the last ACK arrive
        after = tcp_bytes_sent(port)
        served, unseen = bytes_sent_between(before, after, port)
        assert served >= 300_000 and unseen == ""
        assert bytes_sent_between(after, tcp_bytes_sent(port), port) == (0.0, "")
        assert tcp_bytes_sent(free_port()) == {}   # a port nothing serves from: no connection seen
    finally:
        for sock in (conn, client, server):
            sock.close()



# ``ss -tinH state established '( sport = :9000 )'`` as iproute2 6.x prints it: two connections.
SS_OUT = ("0      0      127.0.0.1:9000 127.0.0.1:46778\n"
          "\t bbr wscale:10,10 rto:204 rtt:0.028/0.015 mss:35328 bytes_sent:1000 bytes_acked:1000 segs_out:1\n"
          "0      0      127.0.0.1:9000 127.0.0.1:46790\n"
          "\t cubic wscale:7,7 rto:204 bytes_sent:52 bytes_acked:51 lastsnd:8\n")


def test_ss_output_is_read_per_connection():
    assert parse_ss(SS_OUT) == {"127.0.0.1:9000 127.0.0.1:46778": 1000, "127.0.0.1:9000 127.0.0.1:46790": 51}
    assert parse_ss("0 0 127.0.0.1:9000 127.0.0.1:5\n\t cubic rto:204\n") == {"127.0.0.1:9000 127.0.0.1:5": 0}
    assert parse_ss("") == {}


def test_bytes_sent_between_counts_new_and_grown_connections_and_drops_closed_ones():
    before = {"a": 1000, "gone": 5000}
    assert bytes_sent_between(before, {"a": 3500, "new": 700}, 9000) == (3200.0, "")


def test_bytes_sent_between_is_nan_and_says_why_where_the_counter_cannot_see():
    served, unseen = bytes_sent_between({"a": 1}, {}, 9000)   # the store is elsewhere: no socket here
    assert math.isnan(served)
    assert unseen == "no connection from port 9000 is visible on this host (the store is not on this host's loopback)"
    for before, after in ((None, {"a": 1}), ({"a": 1}, None), (None, None)):
        served, unseen = bytes_sent_between(before, after, 9000)
        assert math.isnan(served) and unseen.startswith("the ss command (Debian iproute2) is missing")


def test_tcp_bytes_sent_is_none_without_ss(monkeypatch):
    monkeypatch.setattr(resources.shutil, "which", lambda name: None)
    assert tcp_bytes_sent(9000) is None

# Allocates 150 MB and frees it before the phase, then, once the phase has begun (the trigger
# file exists), 60 MB freed again at once, then burns CPU: only a high-water mark reset at the
# phase's start gives a peak between the two, and only a reading taken at the end gets the CPU.
BUSY = """import os, sys, time
x = b"x" * 150_000_000
del x
while not os.path.exists(sys.argv[1]): time.sleep(0.01)
x = b"x" * 60_000_000
del x
t = time.time()
while time.time() - t < 30: pass
"""


def test_phase_monitor_reads_the_phase_peak_and_cpu_of_a_real_process_without_sampling(tmp_path):
    trigger = tmp_path / "go"
    proc = ManagedProcess("busy", [sys.executable, "-c", BUSY, str(trigger)], tmp_path / "busy.log").start()
    try:
        deadline = time.monotonic() + 10
        while peak_rss(proc.pid) < 150e6 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)   # the 150 MB are freed: the child waits for the trigger
        assert peak_rss(proc.pid) >= 150e6
        threads = threading.active_count()
        with PhaseMonitor(lambda: {"store": [proc]}) as mon:
            assert threading.active_count() == threads   # nothing samples inside this process
            trigger.touch()
            began = time.process_time()
            while time.process_time() - began < 0.3:   # the client's own CPU
                pass
            time.sleep(1.0)
        rows = {metric: value for metric, value, unit in mon.rows()}
        assert 60e6 < rows["store_peak_rss_bytes"] < 140e6
        assert rows["store_cpu_s"] > 0.5
        assert rows["client_cpu_s"] >= 0.25 and rows["client_peak_rss_bytes"] > 10e6
        assert {"store_wchar_bytes", "client_wchar_bytes"} <= rows.keys()
    finally:
        proc.stop(grace=2)
    assert not proc.running()


def test_a_process_started_inside_the_phase_counts_from_its_start_with_its_children(tmp_path):
    child = "import time\nx = b'x' * 40_000_000\ntime.sleep(30)"
    parent = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(30)"
    procs: list[ManagedProcess] = []
    try:
        with PhaseMonitor(lambda: {"store": procs}) as mon:
            procs.append(ManagedProcess("late", [sys.executable, "-c", parent], tmp_path / "late.log").start())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                kids = psutil.Process(procs[0].pid).children()
                if kids and peak_rss(kids[0].pid) > 40e6:
                    break
                time.sleep(0.05)
        rows = {metric: value for metric, value, unit in mon.rows()}
        assert rows["store_peak_rss_bytes"] > 40e6 + peak_rss(procs[0].pid)
        assert rows["store_cpu_s"] > 0
    finally:
        for proc in procs:
            proc.stop(grace=2)


def test_a_refused_peak_reset_gives_no_peak_rather_than_a_lifetime_one(monkeypatch):
    assert reset_peak_rss(2 ** 22 + 1) is False   # above the largest pid_max: no such process
    assert reset_peak_rss(os.getpid()) is True
    monkeypatch.setattr(resources, "reset_peak_rss", lambda pid: False)
    with PhaseMonitor(dict) as mon:
        pass
    rows = {metric: value for metric, value, unit in mon.rows()}
    assert math.isnan(rows["client_peak_rss_bytes"]) and rows["client_cpu_s"] >= 0


def test_free_ports_avoid_the_ephemeral_range_and_never_repeat():
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200 and all(10_000 <= p < max(low, 12_000) for p in ports)
    with socket.create_server(("127.0.0.1", ports[0])):   # and each really can be bound
        pass
