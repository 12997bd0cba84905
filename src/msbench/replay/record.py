"""A replay run's records: what its runner writes (ReplayManifest, ReplayTrialRecord, in a ReplayRunDir)
and the folder read back (ReplayRun), the typed input of the fidelity table and the report."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from msbench.config import ConfigError
from msbench.measure import trace as tr
from msbench.results import SCHEMA_VERSION, Facts, JsonRecord, PlannedTrial, RunDir, TrialRecord

KIND = "replay"   # manifest.json's kind: a replay run, not a study
REQUESTS_TABLE = "replay_requests.parquet"
PHASE_METRIC = r"^(?P<name>[a-z_0-9]+) \[(?P<phase>[^,\]]+)(?:, (?P<operation>[^\]]+))?\]$"


@dataclass(frozen=True)
class TraceFacts:
    """One trace a replay run replays, as its manifest names it (the hash is of the run's own copy)."""

    name: str
    sha256: str
    source: Facts = field(default_factory=dict)   # the trace header's: run, backend, store, trial; or a pcap
    keys: str = "plain"
    phases: list[str] = field(default_factory=list)
    requests: int = 0


@dataclass
class ReplayManifest(JsonRecord):
    """manifest.json of a replay run: the traces, how they are replayed, on which stores, and what ran."""

    LISTS = {"traces": TraceFacts, "order": PlannedTrial}

    run: str
    created: str = ""
    traces: list[TraceFacts] = field(default_factory=list)
    phases: list[str] | None = None     # the phases chosen (None: every phase of each trace)
    pacing: str = "fast"
    repeat: int = 1
    pressure: str = "none"              # CPU beside the store: none, or as recorded per phase (replay.pressure)
    late_tolerance_s: float = 0.0
    objects: str | None = None          # the declared object table, if any
    backends: list[str] = field(default_factory=list)
    stores: dict[str, str] = field(default_factory=dict)        # backend -> the store it really is (twins)
    baseline: str = ""
    handicaps: dict[str, dict[str, float]] = field(default_factory=dict)
    controls: dict[str, Facts] = field(default_factory=dict)    # control backend -> its definition
    trials: int = 0
    provider: str = "native"
    capture: bool = True
    order_seed: int = 0
    order: list[PlannedTrial] = field(default_factory=list)
    host: Facts = field(default_factory=dict)
    packages: Facts = field(default_factory=dict)
    components: dict[str, Facts] = field(default_factory=dict)
    msbench: Facts = field(default_factory=dict)
    config_file: str | None = None
    kind: str = KIND
    schema_version: int = SCHEMA_VERSION

    def inputs(self) -> tuple:
        """What a resumed run must share with the run it resumes."""
        return ([t.sha256 for t in self.traces], self.phases, self.pacing, self.repeat, self.pressure, self.backends,
                self.trials, self.order_seed)


@dataclass
class ReplayTrialRecord(TrialRecord):
    """trial.json of a replay trial: the study's record (the store's start as ``stack_ready_s``, the
    handicap's throttled seconds, the replay's capture) and what was replayed on it."""

    round: int = 0
    trace: str = ""
    trace_sha256: str = ""
    pacing: str = ""
    objects_created: int = 0
    object_bytes_created: int = 0
    reconnects: int = 0


class ReplayRunDir(RunDir):
    """A replay run's folder: the study's layout, the replay's records."""

    record_type = ReplayTrialRecord
    manifest_type = ReplayManifest


def is_replay(path: Path) -> bool:
    """Whether the run folder at ``path`` is a replay run (its manifest's kind)."""
    manifest = Path(path) / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("kind") == KIND


@dataclass(frozen=True)
class ReplayRun:
    """A replay run as the report reads it: completed trials only in ``results`` and ``requests``."""

    path: Path | None
    manifest: ReplayManifest
    trials: pd.DataFrame       # trials.csv: one row per trial (status, trace, ...)
    results: pd.DataFrame      # tidy rows of the completed trials only, with name / phase / operation split out
    requests: pd.DataFrame     # replay_requests of the completed trials, with latency_ms
    traces: dict[str, tr.Trace] = field(repr=False)

    @property
    def controls(self) -> set[str]:
        """The baseline's A/A and handicapped twins: they test the method, they are not stores."""
        return set(self.manifest.controls)

    @property
    def phases(self) -> list[str]:
        """Every phase replayed, in the order of the first trace that has it."""
        return list(dict.fromkeys(p for t in self.traces.values() for p in t.phases))

    def handicapped(self) -> set[str]:
        return set(self.manifest.handicaps)

    def metric(self, name: str) -> pd.DataFrame:
        """The tidy rows of one per-phase metric (replay_s, busy_s, ...), ``metric`` set to the phase:
        the frame stats.summarize and stats.compare take, one "metric" per phase."""
        rows = self.results[(self.results["name"] == name) & self.results["operation"].isna()]
        return rows.assign(metric=rows["phase"])


def load(path: str | Path) -> ReplayRun:
    """A replay run folder (runner's layout); only completed trials enter the results."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"{path}: no manifest.json: not a run folder")
    if not is_replay(path):
        raise ConfigError(f"{path}: not a replay run (its manifest's kind is not '{KIND}')")
    manifest = ReplayRunDir(path.parent, path.name).read_manifest()
    trials = pd.read_csv(path / "trials.csv") if (path / "trials.csv").stat().st_size > 1 else pd.DataFrame(
        columns=["backend", "trial", "status", "trace"])
    ok = trials.loc[trials["status"] == "ok", ["backend", "trial"]]
    results = pd.read_parquet(path / "results.parquet").merge(ok, on=["backend", "trial"])
    parts = results["metric"].str.extract(PHASE_METRIC)
    results = results.assign(name=parts["name"], operation=parts["operation"])
    requests = pd.read_parquet(path / REQUESTS_TABLE) if (path / REQUESTS_TABLE).exists() else pd.DataFrame(
        columns=["backend", "trial", "start_s", "end_s"])
    requests = requests.merge(ok, on=["backend", "trial"])
    requests = requests.assign(latency_ms=(requests["end_s"] - requests["start_s"]) * 1000.0)
    traces = {t.name: tr.read(path / "traces" / f"{t.name}.parquet") for t in manifest.traces}
    if manifest.phases:
        traces = {name: t.only(manifest.phases) for name, t in traces.items()}
    return ReplayRun(path, manifest, trials, results, requests, traces)
