"""A replay run: traces in, each store alone (no Milvus) replaying them in RMIT order, a run folder out.

The folder has the study's layout (results.RunDir, with the replay's typed records of replay.record),
so the study's statistics apply unchanged:

    manifest.json            ReplayManifest, kind "replay": the traces (name, SHA-256, source), pacing,
                             phases, backends, baseline, controls, trial order, host and versions
    trials.csv               one row per trial (ReplayTrialRecord): status, cause of failure, trace replayed,
                             store start, objects created, the handicap's throttled seconds
    results.csv / .parquet   tidy: run, backend, provider, trial, seq, phase, metric, value, unit; metrics
                             named ``replay_s [PHASE]``, ``latency_p50_ms [PHASE, OPERATION]`` (engine.phase_rows)
    replay_requests.parquet  every replayed request: recorded and replayed times, status, bytes (no key)
    s3_requests.parquet,     the replay as tcpdump saw it (as root, unless --no-capture): the same parser
    phase_windows.csv        as the study's, so busy time is measured as the recording's was (``wire_*`` rows)
    traces/                  a copy of each trace replayed (the manifest's hashes are of these files)
    trials/<backend>/trial-NN/

Round k of the plan replays trace k (cycling when there are fewer traces than rounds) on every
store, so a round's trials are paired on one workload. Each trial: a fresh store of the backend
(the handicapped control runs under its CPU quota, as in the study), a bucket, the objects the
trace reads before it writes them (random bytes of the recorded sizes), the phases in the trace's
order, teardown; a failure is recorded and the run goes on.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
import traceback
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from msbench import backends as backend_registry
from msbench.backends import BackendDef
from msbench.config import BOUNDS, ConfigError, Params, UserConfig, load_user_config
from msbench.files import sha256_file
from msbench.measure import provenance, trace as tr, traffic
from msbench.providers import registry
from msbench.providers.catalog import unavailable_reason
from msbench.providers.handicap import CpuQuota
from msbench.providers.s3 import s3_client
from msbench.providers.stores import make_store
from msbench.replay import engine
from msbench.replay.client import Credentials, S3Connection
from msbench.replay.pressure import Pressure
from msbench.replay.record import REQUESTS_TABLE, ReplayManifest, ReplayRunDir, ReplayTrialRecord, TraceFacts
from msbench.replay.sources import find_traces, studies_control_cpu
from msbench.results import IDENT, PHASE_WINDOW_COLUMNS, TIDY_COLUMNS, PlannedTrial, \
    check_run_id, redact
from msbench.run import progress, schedule
from msbench.run.study import baseline_of, control_definitions

DEFAULT_RESULTS = Path("data") / "runs"
BUCKET = "msbench-replay"
DELETES = ("DELETE", "DELETE multi")
SETTLE_KEY = "msbench-replay-settle"
STORE_TIMEOUT_S = 240.0
DEFAULT_SEED = 0
PRESSURES = ("none", "recorded")


@dataclass(frozen=True)
class TraceInput:
    """One trace a replay run replays, as found and hashed."""

    name: str
    path: Path
    sha256: str
    trace: tr.Trace = field(repr=False)
    full: tr.Trace = field(repr=False)   # before --phases: what the bucket holds when the first chosen phase begins

    def facts(self) -> TraceFacts:
        return TraceFacts(self.name, self.sha256, self.trace.meta.source, self.trace.meta.keys, self.trace.phases,
                          len(self.trace.requests))


@dataclass
class Replay:
    """A prepared replay run: its folder, traces, stores and order (how each is replayed: its manifest)."""

    run: ReplayRunDir
    traces: list[TraceInput]
    backends: list[BackendDef]
    user: UserConfig
    objects: pd.DataFrame | None
    manifest: ReplayManifest

    @property
    def order(self) -> list[PlannedTrial]:
        return self.manifest.order

    def pending(self) -> list[PlannedTrial]:
        return [t for t in self.order if self.run.trial_status(t.backend, t.trial) != "ok"]

    def trace_of(self, planned: PlannedTrial) -> TraceInput:
        return self.traces[(planned.round - 1) % len(self.traces)]


# -- preparing a run -------------------------------------------------------------------------------

def _parse_list(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [v.strip() for v in items if v and v.strip()]


def prepare(traces: list[str | Path], backends=None, trials: int = 3, pacing: str = "fast", phases=None,
            controls: bool = False, run_id: str | None = None, results_root: str | Path = DEFAULT_RESULTS,
            seed: int | None = None, config: str | Path | None = None, objects: str | Path | None = None,
            from_backend: str | None = None, capture: bool = True, repeat: int = 1, pressure: str = "none",
            control_cpu: float | None = None, dry_run: bool = False) -> Replay | str:
    """Check everything (traces, phases, pacing, backends and their availability, controls) before
    anything is provisioned, then write the manifest and plan the order; ``dry_run`` returns the
    plan as text and writes nothing. Rerunning with the same run_id and inputs resumes the run.
    ``capture``: tcpdump the replay too (root), so its busy time is also measured on the wire.
    ``repeat``: each phase replayed that many times in a row on the trial's store, its times the
    median of them (engine.combine), once if it deletes: a trial's figure then has less of the
    machine's noise; the first replay is the one of the bucket as recorded (counts, capture).
    ``pressure``: "recorded" holds, during each phase, the CPU the recording's other processes used
    beside the store (replay.pressure), "none" leaves the store alone on the host.
    ``control_cpu``: the handicapped control's share of one CPU; None: the study's, when the traces are a
    study run folder's (sources.studies_control_cpu), else Params.control_cpu."""
    if pacing not in engine.PACINGS:
        raise ConfigError(f"--pacing {pacing!r} not valid; valid: {', '.join(engine.PACINGS)}")
    if pressure not in PRESSURES:
        raise ConfigError(f"--pressure {pressure!r} not valid; valid: {', '.join(PRESSURES)}")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ConfigError(f"trials must be a positive integer, got {trials!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"seed (of the trial order) must be a non-negative integer, got {seed!r}")
    if control_cpu is None:
        control_cpu = studies_control_cpu(traces) or Params.control_cpu
    low, high = BOUNDS["control_cpu"]
    if not low <= control_cpu <= high:
        raise ConfigError(f"control_cpu (the handicapped twin's share of one CPU) must be from {low} to {high}, "
                          f"got {control_cpu}")
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ConfigError(f"repeat (replays of each phase per trial) must be a positive integer, got {repeat!r}")
    declared = tr.read_objects(objects) if objects else None
    chosen_phases = _parse_list(phases)
    inputs = []
    for name, path, full in find_traces(traces, from_backend, declared):
        cut = full.only(chosen_phases) if chosen_phases else full
        if cut.requests.empty:
            raise ConfigError(f"trace {name}: no request in phase(s) {', '.join(chosen_phases or cut.phases)}")
        unrecorded = [span.name for span in cut.meta.phases if span.beside_cores is None]
        if pressure == "recorded" and unrecorded:
            raise ConfigError(f"trace {name}: no recorded CPU beside the store for phase(s) {', '.join(unrecorded)}, "
                              f"so --pressure recorded cannot hold it; replay a study run folder, or a trace exported "
                              f"from one with `msbench trace export`, or use --pressure none")
        inputs.append((name, path, cut, full))
    user = load_user_config(config)
    names = _parse_list(backends)
    if not names:
        raise ConfigError("--backends is required: the stores to replay against, e.g. minio,seaweedfs")
    registry_ = backend_registry.load_backends(user)
    baseline = baseline_of(names)
    control_defs = control_definitions(baseline, control_cpu) if controls else {}
    clash = sorted(set(control_defs) & (set(registry_) | set(names)))
    if clash:
        raise ConfigError(f"control backend name(s) {', '.join(clash)} already defined; rename them, or run without "
                          f"controls")
    if control_defs:
        user = replace(user, backends={**user.backends, **control_defs})
        registry_ = backend_registry.load_backends(user)
        names = [*names, *control_defs]
    chosen = backend_registry.select(names, registry_)
    foreign = [b.name for b in chosen if b.launcher not in ("process", "ceph")]
    if foreign:
        raise ConfigError(f"backend(s) {', '.join(foreign)}: a replay runs stores msbench starts itself (process or "
                          f"ceph launchers); an external endpoint or a deployment is not one")
    problems = {b.name: unavailable_reason(b, user) for b in chosen}
    problems = {n: why for n, why in problems.items() if why}
    if problems:
        raise ConfigError("unavailable backend(s): " + "; ".join(f"{n}: {why}" for n, why in problems.items()))
    run_id = check_run_id(run_id or dt.datetime.now().strftime("%Y%m%d-%H%M%S-replay"))
    order_seed = DEFAULT_SEED if seed is None else seed
    order = schedule.plan([b.name for b in chosen], trials, order_seed)
    if dry_run:
        return plan_text(run_id, pacing, pressure, inputs, chosen, order)
    run = ReplayRunDir(results_root, run_id)
    kept = []
    for name, path, cut, full in inputs:   # the run keeps the traces it replays: its hashes are of these files
        copy = run.path / "traces" / f"{name}.parquet"
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            if path is None:
                tr.write(full, copy)
            else:
                shutil.copyfile(path, copy)
        kept.append(TraceInput(name, copy, sha256_file(copy), cut, full))
    manifest = ReplayManifest(
        run=run_id, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        traces=[t.facts() for t in kept], phases=chosen_phases or None, pacing=pacing, repeat=repeat, pressure=pressure,
        late_tolerance_s=engine.LATE_TOLERANCE_S, objects=str(objects) if objects else None,
        backends=[b.name for b in chosen], stores={b.name: b.kind for b in chosen}, baseline=baseline,
        handicaps={b.name: b.handicap for b in chosen if b.handicap}, controls=control_defs, trials=trials,
        capture=capture, order_seed=order_seed, order=order, host=provenance.host_facts(results_root),
        packages=provenance.package_versions(), components={b.name: provenance.component_facts(b, user) for b in chosen},
        msbench=provenance.msbench_facts(), config_file=str(user.path) if user.path else None)
    previous = run.read_manifest()
    if previous:
        if previous.inputs() != manifest.inputs():
            raise ConfigError(f"run {run_id} exists with other traces, phases, pacing, repeat, pressure, backends, trials "
                              f"or seed; use a new run_id, or the same inputs to resume it")
        manifest = previous
    run.write_manifest(manifest)
    return Replay(run, kept, chosen, user, declared, manifest)


def plan_text(run_id: str, pacing: str, pressure: str, inputs, backends: list[BackendDef], order) -> str:
    lines = ["dry run: nothing was started, no file was written",
             f"replay run {run_id}, pacing {pacing}, pressure {pressure}, {len(order)} trials"]
    for name, _, cut, _ in inputs:
        lines.append(f"trace {name}: " + ", ".join(
            f"{row.phase} ({row.requests} requests on {row.connections} connections"
            + (f", {row.beside_cores:g} cores beside" if pressure == "recorded" else "") + ")"
            for row in tr.describe(cut).itertuples()))
    lines += [f"backend {b.name}: {b.description}" + (f" (handicap {b.handicap})" if b.handicap else "")
              for b in backends]
    lines.append("trials, in this order:")
    lines += [f"  #{t.seq + 1} (round {t.round}) {t.backend} trial {t.trial}: trace "
              f"{inputs[(t.round - 1) % len(inputs)][0]}" for t in order]
    return "\n".join(lines)


# -- objects ---------------------------------------------------------------------------------------

def _extent(row) -> int:
    """How many bytes an object must have for this successful read to be served as recorded."""
    if row["operation"] == "GET range":
        first, last = tr.parse_range(row["range"])
        if first is None:
            return int(last)
        return int(last) + 1 if last is not None else first + int(row["response_bytes"])
    return int(row["response_bytes"])


def objects_to_create(chosen: tr.Trace, full: tr.Trace, objects: pd.DataFrame | None = None) -> dict[str, int]:
    """Key -> size of what the bucket must hold when the first chosen phase begins: what the
    trace's earlier phases left in it, and what the chosen phases read before they write it (a
    read the recording saw fail does not create it). Sizes as the trace knows them
    (trace.known_sizes), else the least that serves every recorded read."""
    rank = {p: i for i, p in enumerate(full.phases)}
    frame = tr.in_time_order(full.requests)
    bucket = tr.Bucket()
    for _, row in frame[frame["phase"].map(rank) < rank[chosen.phases[0]]].iterrows():
        bucket.apply(row)
    sizes = tr.known_sizes(full.requests, objects)
    touched = set(bucket.sizes)
    needed: dict[str, int] = {}
    settled: set[str] = set()   # written or deleted by the chosen phases: later reads find the replay's own
    for i, row in tr.in_time_order(chosen.requests).iterrows():
        key, op = row["key"], row["operation"]
        if not key or op in ("LIST", "bucket other", "create bucket", "DELETE multi"):
            continue   # listings and bucket requests name no object
        read = op in tr.READS and tr.succeeded(row["status"])
        if read and key not in touched:
            needed[key] = 0
        touched.add(key)
        if read and key in needed and key not in settled:
            needed[key] = max(needed[key], sizes.get(i, _extent(row)))
        elif op not in tr.READS:
            settled.add(key)
    return {**bucket.sizes, **needed}


def settle(s3) -> None:
    """One object written, read and deleted before anything is timed: a store's lazy set-up (SeaweedFS
    grows its volumes at a bucket's first write, seconds) is not the first phase's. Milvus's own
    first write came long after its store started, so the recording did not see it either."""
    s3.put_object(Bucket=BUCKET, Key=SETTLE_KEY, Body=b"\0" * 1024)
    s3.get_object(Bucket=BUCKET, Key=SETTLE_KEY)["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=SETTLE_KEY)


def create_objects(s3, bucket: str, sizes: dict[str, int], seed: int) -> int:
    """Put each object, random bytes of its size (a generator per run seed: distinct contents, so a
    deduplicating store stores them all); returns the bytes written."""
    rng = np.random.default_rng(seed)
    total = 0
    for key, size in sorted(sizes.items()):
        s3.put_object(Bucket=bucket, Key=key, Body=rng.bytes(size))
        total += size
    return total


# -- a trial ---------------------------------------------------------------------------------------

def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_trial(replay: Replay, planned: PlannedTrial) -> ReplayTrialRecord:
    """One trial: a fresh store alone, the trace's objects, its phases replayed, teardown; the
    trial's folder written whatever happened (a failure is recorded, never raised)."""
    backend = next(b for b in replay.backends if b.name == planned.backend)
    chosen = replay.trace_of(planned)
    run = replay.run
    record = ReplayTrialRecord(run=run.run_id, backend=backend.name, store=backend.kind, provider="native",
                               trial=planned.trial, seq=planned.seq, round=planned.round, trace=chosen.name,
                               trace_sha256=chosen.sha256, pacing=replay.manifest.pacing, started=_now())
    rows: list[tuple[str, str, float, str]] = []
    frames: list[pd.DataFrame] = []
    tables: dict[str, pd.DataFrame] = {}
    secrets: list[str] = []
    began = time.monotonic()
    journal = registry.JOURNAL.set((run.path / "processes.jsonl", {"backend": backend.name, "trial": planned.trial}))
    with registry.scratch_dir("msbench-replay-") as scratch:
        log_dir = scratch / "logs"
        log_dir.mkdir()
        store = quota = None
        try:
            progress.write_phase(run.path, backend.name, planned.trial, "provision")
            if backend.handicap:
                quota = CpuQuota.create(backend.name, backend.handicap["cpu"])
            store = make_store(backend, scratch / "store", log_dir, replay.user, quota)
            secrets = [store.access_key, store.secret_key]
            record.stack_ready_s = round(store.start(STORE_TIMEOUT_S), 3)
            s3 = s3_client(store)
            s3.create_bucket(Bucket=BUCKET)
            settle(s3)
            record.failed_phase = "objects"
            sizes = objects_to_create(chosen.trace, chosen.full, replay.objects)
            record.objects_created = len(sizes)
            record.object_bytes_created = create_objects(s3, BUCKET, sizes, replay.manifest.order_seed + planned.seq)
            capture, record.s3_capture = _start_capture(replay, store, scratch / "replay.pcap")
            windows: list[tuple[str, float, float]] = []
            try:
                rows += _replay_phases(replay, chosen.trace, store, quota, record, planned, frames, windows)
            finally:
                if capture is not None:
                    rows += _wire(capture, windows, tables, record)
            if quota is not None:
                record.handicap = {"cpu": quota.cpu, "throttled_s": round(quota.throttled_s(), 3)}
            record.failed_phase = "teardown"
            progress.write_phase(run.path, backend.name, planned.trial, "teardown")
            _teardown(store, quota)
            store = quota = None
            record.status, record.failed_phase = "ok", ""
        except Exception as err:   # recorded, never lost: the run goes on
            record.error = f"{type(err).__name__}: {err}"
            record.traceback = traceback.format_exc()
        except KeyboardInterrupt:
            record.error = "interrupted"
            raise
        finally:
            try:
                _teardown(store, quota)
            except Exception as err:   # the trial's own error, if any, stays first
                record.error = "; ".join(filter(None, [record.error, f"teardown: {err}"]))
                record.status = "failed"
            registry.JOURNAL.reset(journal)
            record.finished, record.duration_s = _now(), round(time.monotonic() - began, 3)
            record.error, record.traceback = redact(record.error, secrets), redact(record.traceback, secrets)
            ident = {"run": run.run_id, "backend": backend.name, "provider": "native", "trial": planned.trial,
                     "seq": planned.seq}
            table = pd.DataFrame([{**ident, "phase": p, "metric": m, "value": float(v), "unit": u}
                                  for p, m, v, u in rows], columns=TIDY_COLUMNS)
            requests = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=engine.REQUEST_COLUMNS)
            tables[REQUESTS_TABLE] = requests
            tables = {name: frame.assign(**ident)[[*IDENT, *(c for c in frame.columns if c not in IDENT)]]
                      for name, frame in tables.items()}
            if record.error != "interrupted":
                run.write_trial(record, table, None, log_dir, secrets, tables)
                gather(run)
    return record


def _replay_phases(replay: Replay, chosen: tr.Trace, store, quota: CpuQuota | None, record: ReplayTrialRecord,
                   planned: PlannedTrial, frames: list, windows: list) -> list:
    """Each phase of the trace in order on one store (with the recorded CPU beside it when the run
    asks for it); returns the tidy rows, appends each phase's request frame and its window (epoch
    seconds, the capture's clock). A handicapped store's rows say how long its quota held it back
    in each phase (``throttled_s``): a phase it never bit in cannot show the handicap."""
    rows = []
    frame = chosen.requests
    puts = frame.loc[frame["operation"].isin(("PUT", "multipart part")), "request_bytes"]
    pool = np.random.default_rng(replay.manifest.order_seed + planned.seq).bytes(
        int(puts.max()) + engine.POOL_SLACK if len(puts) else 0)
    phase_of = partial(_replay_phase, replay, frame, engine.assign_uploads(frame), engine.Issuer(BUCKET, pool),
                       engine.Pacer(replay.manifest.pacing), store, frames, windows)
    beside = {span.name: span.beside_cores for span in chosen.meta.phases}
    record.reconnects = 0
    with Pressure() if replay.manifest.pressure == "recorded" else contextlib.nullcontext() as pressure:
        for phase in chosen.phases:
            record.failed_phase = phase
            progress.write_phase(replay.run.path, planned.backend, planned.trial, phase)
            throttled = quota.throttled_s() if quota is not None else 0.0
            with pressure.holding(beside[phase]) if pressure else contextlib.nullcontext() as held:
                record.reconnects += phase_of(phase, rows)
            if held is not None:
                rows += [(phase, f"pressure_cores [{phase}]", held.asked, "cores"),
                         (phase, f"pressure_used_cores [{phase}]", round(held.used, 3), "cores")]
            if quota is not None:
                rows.append((phase, f"throttled_s [{phase}]", round(quota.throttled_s() - throttled, 4), "s"))
    return rows


def _replay_phase(replay: Replay, frame: pd.DataFrame, uploads: dict, issuer: engine.Issuer, pacer: engine.Pacer,
                  store, frames: list, windows: list, phase: str, rows: list) -> int:
    """One phase, ``repeat`` times in a row (once if it deletes: a repetition would miss what it deleted;
    a later repetition first begins again the uploads it completes, engine.earlier_uploads); its rows
    appended to ``rows``, its request frames to ``frames``, its first replay's window to ``windows``;
    returns the reconnects."""
    mine = frame[frame["phase"] == phase]
    times = 1 if mine["operation"].isin(DELETES).any() else replay.manifest.repeat
    connect = partial(S3Connection, store.host, store.port, Credentials(store.access_key, store.secret_key),
                      pacer.clock)
    restage = engine.earlier_uploads(frame, phase, uploads)
    repetitions, reconnects = [], 0
    for repetition in range(1, times + 1):
        if repetition > 1:
            for _, begin in restage.groupby("phase", sort=False):
                staged = engine.replay_phase(phase, begin, uploads, connect, issuer, engine.Pacer("fast"))
                failed = engine.request_rows(staged)["error"]
                if (failed != "").any():
                    raise RuntimeError(f"{phase}, repetition {repetition}: beginning its upload again failed: "
                                       f"{failed[failed != ''].iloc[0]}")
        opened = time.time()
        try:
            replayed = engine.replay_phase(phase, mine, uploads, connect, issuer, pacer)
        finally:
            if repetition == 1:   # the capture's phase: the replay of the bucket as recorded
                windows.append((phase, opened, time.time()))
        requests = engine.request_rows(replayed, repetition)
        frames.append(requests)
        reconnects += replayed.reconnects
        repetitions.append(engine.phase_rows(phase, requests, replayed.replay_s, replay.manifest.pacing))
    rows += [(phase, metric, value, unit) for metric, value, unit in engine.combine(repetitions)]
    return reconnects


def _start_capture(replay: Replay, store, path: Path) -> tuple[traffic.Capture | None, dict]:
    """tcpdump on the store's loopback port while the phases run, if asked and possible: the
    replay's busy time measured on the wire, by the instrument that measured the recording's."""
    if not replay.manifest.capture:
        return None, {"enabled": False, "reason": "capture off (--no-capture)"}
    missing = traffic.missing_prerequisite()
    if missing:
        return None, {"enabled": False, "reason": missing}
    try:
        capture = traffic.Capture("lo", store.port, path).start()
    except traffic.CaptureUnavailable as err:
        return None, {"enabled": False, "reason": str(err)}
    return capture, capture.facts


def _wire(capture: traffic.Capture, windows: list, tables: dict,
          record: ReplayTrialRecord) -> list[tuple[str, str, float, str]]:
    """The capture parsed (every client: the replay's requests are not Milvus's), phases assigned,
    kept as the trial's s3_requests and phase_windows; its rows. A parse failure is recorded, never raised."""
    try:
        capture.stop()
        requests, facts = traffic.parse_capture(capture.path, capture.port, BUCKET)
    except Exception as err:
        record.s3_capture = {**capture.facts, "error": f"{type(err).__name__}: {err}"}
        return []
    record.s3_capture = {**capture.facts, **facts}
    requests = traffic.assign_phases(requests, windows).assign(key="")   # the trace has them; no record repeats them
    tables.update({"s3_requests.parquet": requests,
                   "phase_windows.csv": pd.DataFrame(windows, columns=PHASE_WINDOW_COLUMNS)})
    return wire_rows(requests, windows)


def wire_rows(requests: pd.DataFrame, windows: list) -> list[tuple[str, str, float, str]]:
    """Per phase, what the capture saw: requests and busy seconds, from each request's first byte
    (``wire_busy_s [PHASE]``) and from its last (``wire_store_busy_s``): the figures the recording's
    trace has (trace.describe), measured the same way."""
    rows = []
    for phase, _, _ in windows:
        mine = requests[requests["phase"] == phase]
        ends = mine["end"].fillna(mine["request_end"])
        rows += [(phase, f"wire_requests [{phase}]", float(len(mine)), "count"),
                 (phase, f"wire_busy_s [{phase}]", traffic.busy_seconds(mine["start"], ends), "s"),
                 (phase, f"wire_store_busy_s [{phase}]", traffic.busy_seconds(mine["request_end"], ends), "s")]
    return rows


def _teardown(store, quota) -> None:
    """Stop the store by PID (its data is discarded), then remove its CPU group."""
    if store is not None:
        store.stop(fast=True)
    if quota is not None:
        quota.close()


def gather(run: ReplayRunDir) -> None:
    """The run-level table of every trial's replayed requests (results.RunDir gathers the others)."""
    frames = [pd.read_parquet(p) for p in sorted(run.path.glob(f"trials/*/trial-[0-9][0-9]/{REQUESTS_TABLE}"))]
    frames = [f for f in frames if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*IDENT, *engine.REQUEST_COLUMNS])
    tmp = run.path / f".{REQUESTS_TABLE}.tmp"
    table.to_parquet(tmp, index=False)
    tmp.replace(run.path / REQUESTS_TABLE)


def run_all(replay: Replay, show: bool = True) -> list[ReplayTrialRecord]:
    """Every pending trial in the planned order, a bar over them and a line per trial."""
    todo = replay.pending()
    outcomes = []
    with progress.TrialBar(replay.run.path, replay.run.run_id, len(todo), enabled=show) as bar:
        for planned in todo:
            bar.start(planned)
            outcomes.append(run_trial(replay, planned))
            bar.finish(planned, outcomes[-1])
    return outcomes
