"""The records a run writes and the report reads: typed, versioned, every table loadable with pandas.

A run folder, ``data/runs/<run_id>/`` (a sweep's runs: ``data/sweeps/<sweep>/<run_id>/`` beside its
``sweep.json``, a SweepManifest: run.sweep):

    manifest.json                     Manifest: parameters, seed, trial order, what ran (versions, hashes,
                                      images), host, msbench's own commit, the schema version
    trials.csv                        one row per trial (TrialRecord's flat fields): status, cause of failure
    results.csv / results.parquet     tidy: run, backend, provider, trial, seq, phase, metric, value, unit
    latencies.parquet                 every serial search latency: ..., query, latency_ms, warmup
    s3_requests.parquet               every S3 request Milvus made (measure.traffic): ..., phase, operation, bytes, ms
    s3_summary.csv                    those per trial, phase and operation: counts, bytes, latency percentiles
    phase_windows.csv                 when each phase of each trial ran (epoch seconds)
    trials/<backend>/trial-NN/        that trial's files (trial.json, the same tables for it alone, logs/, and
                                      trace.parquet: its S3 requests as a portable trace, measure.trace)
    traces/                           those traces gathered by ``msbench trace export`` (one file per trial)
    notebooks/                        each executed benchmark notebook (runs through run_all.ipynb)
    progress.json                     the trial under way and its phase (run.progress)

Each trial directory is written to a temporary name and renamed into place, and the run-level
tables are rebuilt from the trial directories and replaced atomically, so a crash mid-trial
never damages a finished one. The trial folders are the source of truth: the stopping rule reads
their records (``RunDir.records``, ``RunDir.rows``), the report a loaded ``Run``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import pandas as pd

from msbench.config import ConfigError, Params
from msbench.files import atomic_write_text

# Bumped whenever a record or a table changes meaning. 1: the files before versioning (no field);
# 2: typed records (trial.json's notes as fields, manifest.msbench / ran, trace.parquet).
SCHEMA_VERSION = 2
IDENT = ["run", "backend", "provider", "trial", "seq"]
# measure.traffic's tables: every S3 request of a trial, and those per phase and operation
REQUEST_COLUMNS = ["conn", "client", "start", "request_end", "response_start", "end", "method", "operation", "prefix",
                   "key", "query", "range", "status", "error_code", "request_wire_bytes", "response_wire_bytes",
                   "request_body_bytes", "response_body_bytes", "object_bytes", "duration_ms", "ttfb_ms", "retry",
                   "phase"]
SUMMARY_COLUMNS = ["phase", "operation", "requests", "errors", "unanswered", "slowdowns", "retries", "bytes_sent",
                   "bytes_received",
                   "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_max_ms", "ttfb_p50_ms",
                   "busy_s", "span_s"]

TIDY_COLUMNS = [*IDENT, "phase", "metric", "value", "unit"]
LATENCY_COLUMNS = [*IDENT, "query", "latency_ms", "warmup"]
PHASE_WINDOW_COLUMNS = ["phase", "start", "end"]   # epoch seconds, the capture's clock
# per-trial tables beyond results.csv, gathered into run-level ones of the same name
TRIAL_TABLES = {"latencies.parquet": LATENCY_COLUMNS, "s3_requests.parquet": [*IDENT, *REQUEST_COLUMNS],
                "s3_summary.csv": [*IDENT, *SUMMARY_COLUMNS], "phase_windows.csv": [*IDENT, *PHASE_WINDOW_COLUMNS]}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
Facts = dict[str, Any]   # a JSON object of descriptive facts (host, versions): shown, never computed on


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id or ""):
        raise ConfigError(f"run_id {run_id!r} is not valid: use letters, digits, '.', '_' or '-' "
                          f"(at most 81 characters)")
    return run_id


def check_results_root(root: Path | str) -> Path:
    """Where run folders go: a folder, or a path that does not exist yet."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"results folder {root} is a file, not a folder; give a folder (default data/runs)")
    return root


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def known_fields(cls, raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` in ``raw``: a file written by another schema version still loads (what it
    lacks takes the default, what it has beyond is left out)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


class JsonRecord:
    """A record dataclass as JSON and back: a file of another schema version still loads (known_fields);
    ``LISTS`` names the fields that hold lists of records, with their type."""

    LISTS: ClassVar[dict[str, type]] = {}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str):
        raw = known_fields(cls, json.loads(text))
        for name, kind in cls.LISTS.items():
            raw[name] = [kind(**known_fields(kind, item)) for item in raw.get(name) or []]
        return cls(**raw)


@dataclass(frozen=True)
class PlannedTrial:
    seq: int        # position in execution order, 0-based
    round: int
    backend: str
    trial: int      # this backend's trial number, 1-based


@dataclass(frozen=True)
class StopRule:
    """Trials until precise (run.stopping): the target, the limits, and the level intervals are computed at."""

    target: float              # largest interval half-width, as a fraction of the mean (0.05 = ±5%)
    max_trials: int            # per backend
    max_minutes: float | None = None   # of trial time; None = no limit
    confidence: float = 0.95   # the calibrated level (run.stopping.calibrated_level)


@dataclass
class StopDecision:
    """The rule applied after a complete round: why to stop (None: one more round), and what it saw."""

    reason: str | None
    rounds: int
    elapsed_s: float
    pairs: int                 # (backend, metric) intervals checked
    too_wide: int
    widest: Facts | None       # backend, metric, n, relative_half_width
    checks: list[Facts] = field(default_factory=list)   # every earlier decision, one per round count


@dataclass
class TrialRecord(JsonRecord):
    """trial.json: who ran, how it ended, and what the trial noted beside its figures."""

    run: str
    backend: str
    store: str
    provider: str
    trial: int
    seq: int
    status: str = "failed"              # ok only once the stack is torn down
    failed_phase: str = "provision"     # where it stopped ("" when ok)
    error: str = ""                     # the cause, secrets redacted
    traceback: str = ""
    started: str = ""
    finished: str = ""
    duration_s: float | None = None
    stack_ready_s: float | None = None
    ran: Facts = field(default_factory=dict)          # what ran in this trial (images, digests, versions)
    skipped_phases: str = ""            # phases this stack does not run, and why
    s3_capture: Facts = field(default_factory=dict)   # the capture's facts (tool, packets, drops) or why none
    s3_capture_note: str = ""           # empty when every request was recorded
    cold_load: Facts | None = None      # what the cold restart really did
    handicap: dict[str, float] = field(default_factory=dict)
    store_alone_note: str = ""
    bytes_served_note: str = ""
    trace_note: str = ""                # why the captured requests gave no trace.parquet ("" when they did)
    load_failures: str = ""
    integrity_problems: str = ""        # objects read back not as Milvus wrote them (measure.integrity), by key
    stalls: str = ""
    schema_version: int = SCHEMA_VERSION

    def flat(self) -> dict[str, Any]:
        """The fields trials.csv keeps: every one that is not a nested record."""
        return {k: v for k, v in asdict(self).items() if not isinstance(v, (dict, list))}


STUDY = "study"   # a Manifest's kind; a replay run's manifest is another (replay.record.ReplayManifest)


@dataclass
class Manifest:
    """manifest.json: everything a run was asked to do and everything it ran on."""

    run: str
    created: str = ""
    profile: str = ""
    params: Params = field(default_factory=Params)
    dataset: Facts = field(default_factory=dict)
    backends: list[str] = field(default_factory=list)
    stores: dict[str, str] = field(default_factory=dict)        # backend -> the store it really is (A/A twins)
    baseline: str = ""
    handicaps: dict[str, dict[str, float]] = field(default_factory=dict)
    controls: dict[str, Facts] = field(default_factory=dict)    # control backend -> its definition
    trials: int = 0
    provider: str = "native"
    until_precise: StopRule | None = None
    stopping: StopDecision | None = None
    order_seed: int = 0
    order: list[PlannedTrial] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)       # backends not run, and why
    host: Facts = field(default_factory=dict)
    packages: Facts = field(default_factory=dict)
    milvus: Facts = field(default_factory=dict)
    timing: Facts = field(default_factory=dict)
    tools: Facts = field(default_factory=dict)
    components: dict[str, Facts] = field(default_factory=dict)  # per backend: what its store ran as
    conformance: dict[str, Facts] = field(default_factory=dict)  # per store kind: its S3 checks (run.study)
    msbench: Facts = field(default_factory=dict)                 # version, commit, dirty tree
    config_file: str | None = None
    kind: str = STUDY
    schema_version: int = SCHEMA_VERSION

    @property
    def confidence(self) -> float:
        """The level this run's intervals are computed at: 95%, or its stop rule's calibrated level."""
        return self.until_precise.confidence if self.until_precise else 0.95

    def to_json(self) -> str:
        out = asdict(self)
        out["params"] = self.params.as_dict()
        return json.dumps(out, indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = known_fields(cls, json.loads(text))
        raw["params"] = Params.from_dict(raw.get("params") or {})
        raw["order"] = [PlannedTrial(**t) for t in raw.get("order") or []]
        if raw.get("until_precise"):
            raw["until_precise"] = StopRule(**raw["until_precise"])
        if raw.get("stopping"):
            raw["stopping"] = StopDecision(**known_fields(StopDecision, raw["stopping"]))
        return cls(**raw)


def _frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if path.exists() and path.stat().st_size > 1:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return pd.DataFrame(columns=columns)


def _atomic_frame(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _concat(dirs: list[Path], name: str, columns: list[str]) -> pd.DataFrame:
    """One table of every trial's ``name`` (trials without it, or with it empty, add nothing)."""
    frames = [frame for tdir in dirs if len(frame := _frame(tdir / name))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


class RunDir:
    """One run's folder: writes trials atomically and knows which trials are done. A run of another kind
    (a replay) keeps its own records: a subclass names their types."""

    record_type: type[TrialRecord] = TrialRecord
    manifest_type: type[Manifest] = Manifest

    def __init__(self, root: Path | str, run_id: str):
        self.run_id = check_run_id(run_id)
        self.path = check_results_root(root) / run_id
        self.path.mkdir(parents=True, exist_ok=True)

    def trial_path(self, backend: str, trial: int) -> Path:
        return self.path / "trials" / backend / f"trial-{trial:02d}"

    def record(self, backend: str, trial: int) -> TrialRecord | None:
        meta = self.trial_path(backend, trial) / "trial.json"
        return self.record_type.from_json(meta.read_text()) if meta.exists() else None

    def trial_status(self, backend: str, trial: int) -> str | None:
        found = self.record(backend, trial)
        return found.status if found else None

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write_text(self.path / "manifest.json", manifest.to_json())

    def read_manifest(self) -> Manifest | None:
        path = self.path / "manifest.json"
        return self.manifest_type.from_json(path.read_text()) if path.exists() else None

    def write_trial(self, record: TrialRecord, rows: pd.DataFrame, latencies: pd.DataFrame | None,
                    log_dir: Path | None, secrets: list[str], tables: dict[str, pd.DataFrame] | None = None,
                    files: dict[str, Callable[[Path], object]] | None = None) -> Path:
        """Everything of one trial, all or nothing: built in a temp dir, then renamed into place. ``files``:
        those that are not tables (a trace and its header), each written by its callable given its path."""
        final = self.trial_path(record.backend, record.trial)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        rows.reindex(columns=TIDY_COLUMNS).to_csv(staging / "results.csv", index=False)   # a header even when empty
        if latencies is not None:
            latencies.to_parquet(staging / "latencies.parquet", index=False)
        for name, frame in (tables or {}).items():
            _atomic_frame(frame, staging / name)
        for name, write in (files or {}).items():
            write(staging / name)
        if log_dir and log_dir.exists():
            for log in sorted(p for p in log_dir.rglob("*") if p.is_file() and not p.is_symlink()):
                target = staging / "logs" / log.relative_to(log_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(redact(log.read_text(errors="replace"), secrets))
        (staging / "trial.json").write_text(record.to_json())
        if final.exists():   # a failed attempt being redone: keep it beside, never half-overwrite
            shutil.rmtree(final.with_name(final.name + ".previous"), ignore_errors=True)
            final.rename(final.with_name(final.name + ".previous"))
        staging.rename(final)
        self.rebuild_tables()
        return final

    def trial_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.path.glob("trials/*/trial-[0-9][0-9]/trial.json"))

    def records(self) -> list[TrialRecord]:
        """Every trial's record, in folder order."""
        return [self.record_type.from_json((tdir / "trial.json").read_text()) for tdir in self.trial_dirs()]

    def rows(self) -> pd.DataFrame:
        """Every trial's tidy results, read from the trial folders."""
        return _concat(self.trial_dirs(), "results.csv", TIDY_COLUMNS)

    def rebuild_tables(self) -> None:
        """Run-level tables from the trial folders (the folders are the source of truth)."""
        dirs = self.trial_dirs()
        _atomic_frame(pd.DataFrame([r.flat() for r in self.records()]), self.path / "trials.csv")
        results = _concat(dirs, "results.csv", TIDY_COLUMNS)
        _atomic_frame(results, self.path / "results.csv")
        _atomic_frame(results, self.path / "results.parquet")
        for name, columns in TRIAL_TABLES.items():
            _atomic_frame(_concat(dirs, name, columns), self.path / name)


@dataclass
class Run:
    """A run as the report reads it: its manifest and its tables (every trial's, completed or not)."""

    path: Path
    manifest: Manifest
    trials: pd.DataFrame
    results: pd.DataFrame
    latencies: pd.DataFrame
    s3_requests: pd.DataFrame
    s3_summary: pd.DataFrame
    phase_windows: pd.DataFrame
    records: list[TrialRecord] = field(default_factory=list)   # every trial.json, nested facts included

    @property
    def confidence(self) -> float:
        return self.manifest.confidence

    @property
    def controls(self) -> set[str]:
        """The baseline's A/A and handicapped twins: they test the method, they are not stores."""
        return set(self.manifest.controls)

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def completed(self, name: str = "results") -> pd.DataFrame:
        """Rows of a table that belong to completed trials (status ok): a failed trial stopped at a broken stack."""
        trials, frame = self.trials, self.table(name)
        if trials.empty or "status" not in trials or frame.empty:
            return frame.iloc[0:0]
        ok = trials.loc[trials["status"] == "ok", ["backend", "trial"]]
        return frame.merge(ok, on=["backend", "trial"])


def _trials_frame(path: Path) -> pd.DataFrame:
    """trials.csv with its text columns as text: an empty note is "", not NaN."""
    text = [f.name for f in fields(TrialRecord) if f.type == "str"]
    frame = _frame(path)
    for column in set(text) & set(frame.columns):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), "").astype(str)
    return frame


def load_run(run_path: Path | str) -> Run:
    """A run folder as the report reads it; a ConfigError naming what is missing when it is not one."""
    run_path = Path(run_path)
    if not (run_path / "manifest.json").is_file():
        raise ConfigError(f"{run_path} is not a run folder (no manifest.json); give a folder under data/runs")
    manifest = Manifest.from_json((run_path / "manifest.json").read_text())
    if manifest.kind != STUDY:
        raise ConfigError(f"{run_path} is a {manifest.kind} run, not a study: its report is its own section "
                          f"(notebook parameter replay_run)")
    return Run(run_path, manifest,
               _trials_frame(run_path / "trials.csv"), _frame(run_path / "results.parquet", TIDY_COLUMNS),
               *(_frame(run_path / name, columns) for name, columns in TRIAL_TABLES.items()),
               records=RunDir(run_path.parent, run_path.name).records())



@dataclass(frozen=True)
class SizePoint:
    """One size of a sweep (run.sweep): the bucket bytes asked for, the workload they became, its run."""

    label: str                   # as given, without spaces: "200MB"
    target_bytes: int            # bucket bytes asked for
    n_vectors: int
    dim: int
    run_id: str                  # its study run: a run folder beside sweep.json
    overrides: dict[str, Any] = field(default_factory=dict)   # this size's own parameters (--at)


@dataclass
class SweepManifest(JsonRecord):
    """sweep.json: the ladder a sweep runs, how sizes became workloads, and what each size found."""

    LISTS = {"points": SizePoint}

    sweep: str
    created: str = ""
    profile: str = ""
    provider: str = "native"
    backends: str = ""           # as asked ("" = every backend available); each run's manifest says which ran
    trials: int = 0
    controls: bool | str | None = None
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)   # every size's parameters (--set)
    dim: int = 0
    points: list[SizePoint] = field(default_factory=list)
    bytes_per_vector: Facts = field(default_factory=dict)     # the model that mapped sizes to vectors
    bucket_bytes: dict[str, float | None] = field(default_factory=dict)   # size -> mean bytes found (footprint)
    schema_version: int = SCHEMA_VERSION


@dataclass
class Sweep:
    """A sweep as the report reads it: its manifest and the runs of the sizes that have one."""

    path: Path
    manifest: SweepManifest
    runs: dict[str, Run]         # size label -> its run, smallest size first

    def point(self, label: str) -> SizePoint:
        return next(p for p in self.manifest.points if p.label == label)


def load_sweep(path: Path | str) -> Sweep:
    """A sweep folder as the report reads it; a ConfigError when it is not one."""
    path = Path(path)
    if not (path / "sweep.json").is_file():
        raise ConfigError(f"{path} is not a sweep folder (no sweep.json); give a folder under data/sweeps")
    manifest = SweepManifest.from_json((path / "sweep.json").read_text())
    runs = {p.label: load_run(path / p.run_id) for p in manifest.points if (path / p.run_id / "manifest.json").is_file()}
    return Sweep(path, manifest, runs)
