"""The measurement primitives on real sockets and a real child process."""
import math
import socket
import sys
import time

import pandas as pd
import pytest

from msbench import overhead
from msbench.providers.process import ManagedProcess, free_port
from msbench.resources import PhaseMonitor, bytes_sent_between, tcp_bytes_sent


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
        assert bytes_sent_between(before, after) >= 300_000
        assert bytes_sent_between(after, tcp_bytes_sent(port)) == 0
        assert math.isnan(bytes_sent_between(None, after))
    finally:
        for sock in (conn, client, server):
            sock.close()


def test_phase_monitor_measures_cpu_and_memory_of_a_real_process(tmp_path):
    busy = "import time\nx = bytearray(60_000_000)\nt = time.time()\nwhile time.time() - t < 30: pass\n"
    proc = ManagedProcess("busy", [sys.executable, "-c", busy], tmp_path / "busy.log").start()
    try:
        time.sleep(0.5)
        with PhaseMonitor(lambda: {"store": [proc]}) as mon:
            time.sleep(1.0)
        rows = {metric: value for metric, value, unit in mon.rows()}
        assert rows["store_cpu_s"] > 0.5 and rows["store_peak_rss_bytes"] > 50e6
    finally:
        proc.stop(grace=2)
    assert not proc.running()


def test_overhead_summary_is_the_ratio_minus_one():
    raw = pd.DataFrame([{"repetition": r, "work": "search", "way": way, "seconds": s}
                        for r in range(5) for way, s in (("bare", 1.0 + r / 100), ("ours", 1.02 + r / 100))])
    row = overhead.summary(raw).iloc[0]
    assert row.work == "search" and row.n == 5
    assert row.overhead_pct == pytest.approx(100 * (1.04 / 1.02 - 1), rel=1e-6)
    assert row.ci_low_pct <= row.overhead_pct <= row.ci_high_pct


def test_free_ports_avoid_the_ephemeral_range_and_never_repeat():
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200 and all(10_000 <= p < max(low, 12_000) for p in ports)
    with socket.create_server(("127.0.0.1", ports[0])):   # and each really can be bound
        pass
