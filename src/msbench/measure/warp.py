"""What a store can do on its own: MinIO's S3 benchmark warp (v1.3.1) against one endpoint.

Milvus's phases say what a store does under Milvus; warp's figures are the ceiling beside them,
so a slow phase can be told apart from a slow store. Flags and numbers follow warp's own source
(cli/benchmark.go, cli/analyze.go, pkg/bench, pkg/aggregate).

Rows (``warp_{op}_`` + name, op = put or get), all from warp's own analysis (``--full --json``):

- ``mib_per_s``, ``obj_per_s``: warp's "Average" throughput: bytes (objects) of successful requests
  in the window where every thread was busy (ramp-up and tail cut, edge requests pro-rated) per second.
- ``latency_p50_ms``, ``_p90_ms``, ``_p99_ms``: whole-request time (put: until the store answered;
  get: until the last byte arrived), nearest-rank percentiles over every successful request in that
  window: warp's ``dur_median_millis``, ``dur_90_millis``, ``dur_99_millis``, exact, not per-second means.
- ``errors``, ``requests``: failed and all requests of the op in the timed phase (get's prepare
  uploads are not counted).
- ``obj_size_bytes``, ``concurrency``: the object size and the number of threads warp saw.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from shutil import which
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from msbench.backends import builds
from msbench.providers import registry
from msbench.providers.s3 import s3_client

OPS = ("get", "put")
PREFIX = "msbench-warp"             # every key warp writes starts with this (then a prefix per thread)
MIN_SIZE, MAX_SIZE = 4 << 10, 64 << 20
GET_SET_BYTES = 256 << 20            # what get uploads before it reads, unless told how many objects
Row = tuple[str, float, str]


@dataclass(frozen=True)
class WarpTarget:
    endpoint: str                                   # "127.0.0.1:9000": host:port, plain http
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    bucket: str                                     # warp's own: it creates, fills and clears it

    @property
    def endpoint_url(self) -> str:                  # what providers.s3.s3_client needs
        return f"http://{self.endpoint}"


def warp_binary() -> Path | None:
    """$MSBENCH_WARP_BIN, else the pinned build (``msbench stores install warp``), else warp on PATH."""
    if os.environ.get("MSBENCH_WARP_BIN"):
        return Path(os.environ["MSBENCH_WARP_BIN"])
    built = builds.installed("warp", builds.CLIENTS["warp"])
    return built or (Path(which("warp")) if which("warp") else None)


def plan_object_size(sizes: list[int]) -> int:
    """The byte-weighted median object size (half of the bytes lie in objects at most this big),
    clamped to [4 KiB, 64 MiB]: warp then moves objects of the size that carries the data, where a
    plain median would pick the many tiny metadata objects."""
    if not sizes or min(sizes) < 0:
        raise ValueError(f"need at least one object size, none negative; got {len(sizes)} sizes")
    half, seen = sum(sizes) / 2, 0
    for size in sorted(sizes):
        seen += size
        if seen >= half:
            break
    return min(max(size, MIN_SIZE), MAX_SIZE)


def rows_from_analysis(analysis: dict, op: str) -> list[Row]:
    """The rows (see the module docstring) for ``op`` in the JSON ``warp OP --full --json`` prints."""
    found = [o for o in analysis.get("operations") or [] if o.get("type") == op.upper()]
    if not found:
        raise RuntimeError(f"warp's analysis has no {op.upper()} requests")
    o, reqs = found[0], found[0].get("single_sized_requests")
    if o.get("skipped") or not reqs:
        why = "; ".join((o.get("first_errors") or [])[:3])
        raise RuntimeError(f"warp had too little {op.upper()} data to analyse ({o.get('n', 0)} requests, "
                           f"{o.get('errors', 0)} failed{': ' + why if why else ''}); run longer (over 2 s of all threads busy)")
    tp = o["throughput"]
    secs = tp["measure_duration_millis"] / 1000
    stem = f"warp_{op}_"
    return [(stem + "mib_per_s", tp["bytes"] / secs / 2**20, "MiB/s"),
            (stem + "obj_per_s", tp["objects"] / secs, "objects/s"),
            (stem + "latency_p50_ms", float(reqs["dur_median_millis"]), "ms"),
            (stem + "latency_p90_ms", float(reqs["dur_90_millis"]), "ms"),
            (stem + "latency_p99_ms", float(reqs["dur_99_millis"]), "ms"),
            (stem + "errors", float(o["errors"]), "count"),
            (stem + "requests", float(o["n"]), "count"),
            (stem + "obj_size_bytes", float(reqs["obj_size"]), "bytes"),
            (stem + "concurrency", float(o["concurrency"]), "count")]


def _check_bucket_is_warps(target: WarpTarget) -> None:
    """Before it starts, warp deletes *everything* in its bucket (cli/benchmark.go: clear unless
    --noclear; after the run it deletes only what it wrote). So refuse a bucket holding any key
    outside PREFIX: only warp's own leftovers (e.g. of a killed run) may go."""
    try:
        page = s3_client(target).list_objects_v2(Bucket=target.bucket, Delimiter="/", MaxKeys=1000)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return
        raise
    foreign = [c["Key"] for c in page.get("Contents", [])] + \
              [p["Prefix"] for p in page.get("CommonPrefixes", []) if p["Prefix"] != PREFIX + "/"]
    if foreign or page.get("IsTruncated"):
        raise ValueError(f"bucket {target.bucket!r} holds objects warp did not write ({', '.join(foreign[:5])}"
                         f"{', ...' if len(foreign) > 5 or page.get('IsTruncated') else ''}); warp clears its "
                         "bucket before it runs, so give it an empty bucket of its own")


def run_warp(binary: Path, target: WarpTarget, op: str, obj_size: int, concurrency: int, duration_s: float,
             work_dir: Path, objects: int | None = None, timeout_s: float | None = None) -> list[Row]:
    """Run ``warp put|get`` once and return its rows. Keys go to warp through its environment
    (WARP_ACCESS_KEY/WARP_SECRET_KEY), never argv; work_dir gets the command (warp-OP.log, with
    warp's stderr), the analysis (warp-OP.json) and every request (warp-OP.csv.zst), keys redacted.
    get first uploads ``objects`` objects (default: about 256 MiB, 2 per thread at least, 2500 at
    most). Path-style requests, as Milvus makes them. A call takes about duration + 3 s (warp waits
    3 s before timing) + prepare + cleanup; past ``timeout_s`` (default: duration + 300 s) warp is
    killed and TimeoutError raised."""
    if op not in OPS:
        raise ValueError(f"unknown warp op {op!r}; valid: {', '.join(OPS)}")
    if objects is not None and op != "get":
        raise ValueError("objects applies to get only (put writes for the whole duration)")
    if not re.fullmatch(r"[^/:\s]+:\d+", target.endpoint):
        raise ValueError(f"endpoint must be host:port (plain http), got {target.endpoint!r}")
    _check_bucket_is_warps(target)
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), op, "--host", target.endpoint, "--bucket", target.bucket, "--prefix", PREFIX,
            "--obj.size", str(obj_size), "--concurrent", str(concurrency),
            "--duration", f"{round(duration_s * 1000)}ms", "--lookup", "path",
            "--benchdata", str(work_dir / f"warp-{op}"), "--full", "--json", "--no-color", "--quiet"]
    if op == "get":
        count = objects if objects is not None else min(2500, max(2 * concurrency, GET_SET_BYTES // obj_size))
        argv += ["--objects", str(count)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARP_")}   # no stray WARP_TLS etc.
    env.update(WARP_ACCESS_KEY=target.access_key, WARP_SECRET_KEY=target.secret_key)
    limit = duration_s + 300.0 if timeout_s is None else timeout_s
    proc = subprocess.Popen(registry.die_with_parent(argv), cwd=work_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except BaseException as exc:
        proc.kill()                                  # our child, by its PID
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TimeoutError(f"warp {op} (pid {proc.pid}) ran past {limit:.0f} s and was killed; "
                               f"the next run clears what it left under {target.bucket}/{PREFIX}/") from None
        raise
    for key in filter(None, (target.secret_key, target.access_key)):   # warp echoes none; be sure
        out, err = out.replace(key, "*REDACTED*"), err.replace(key, "*REDACTED*")
    (work_dir / f"warp-{op}.log").write_text(f"$ {' '.join(argv)}\n(exit {proc.returncode})\n{err}")
    (work_dir / f"warp-{op}.json").write_text(out)
    if proc.returncode != 0:
        said = re.findall(r'"message": "(.*)"', out) or [(out + err).strip()[-800:]]
        raise RuntimeError(f"warp {op} failed (exit {proc.returncode}): {'; '.join(dict.fromkeys(said))}")
    return rows_from_analysis(json.loads(out), op)
