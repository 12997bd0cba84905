"""A replay run's folder read back: the typed record the fidelity table and the report take."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from msbench.config import ConfigError
from msbench.replay import trace as tr
from msbench.replay.runner import REQUESTS_TABLE

PHASE_METRIC = r"^(?P<name>[a-z_0-9]+) \[(?P<phase>[^,\]]+)(?:, (?P<operation>[^\]]+))?\]$"


@dataclass(frozen=True)
class ReplayRun:
    path: Path
    manifest: dict
    trials: pd.DataFrame       # trials.csv: one row per trial (status, trace, ...)
    results: pd.DataFrame      # tidy rows of the completed trials only, with name / phase / operation split out
    requests: pd.DataFrame     # replay_requests of the completed trials, with latency_ms
    traces: dict[str, tr.Trace] = field(repr=False)

    @property
    def backends(self) -> list[str]:
        return list(self.manifest["backends"])

    @property
    def baseline(self) -> str:
        return self.manifest["baseline"]

    @property
    def phases(self) -> list[str]:
        """Every phase replayed, in the order of the first trace that has it."""
        return list(dict.fromkeys(p for t in self.traces.values() for p in t.phases))

    def handicapped(self) -> set[str]:
        return set(self.manifest.get("handicaps", {}))

    def metric(self, name: str) -> pd.DataFrame:
        """The tidy rows of one per-phase metric (replay_s, busy_s, ...), ``metric`` set to the phase:
        the frame stats.summarize and stats.compare take, one "metric" per phase."""
        rows = self.results[(self.results["name"] == name) & self.results["operation"].isna()]
        return rows.assign(metric=rows["phase"])


def load(path: str | Path) -> ReplayRun:
    """A replay run folder (runner's layout); only completed trials enter the results."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(f"{path}: no manifest.json: not a run folder")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("kind") != "replay":
        raise ConfigError(f"{path}: not a replay run (its manifest has no kind 'replay')")
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
    traces = {t["name"]: tr.read(path / "traces" / f"{t['name']}.parquet") for t in manifest["traces"]}
    chosen = manifest.get("phases")
    if chosen:
        traces = {name: t.only(chosen) for name, t in traces.items()}
    return ReplayRun(path, manifest, trials, results, requests, traces)
