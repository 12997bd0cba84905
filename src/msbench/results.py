"""Result files of a run, under ``data/runs/<run_id>/``; every file a user can load with pandas.

    manifest.json                     parameters, seed, trial order, versions and hashes, host
    trials.csv                        one row per trial: status, cause of failure, timings
    results.csv / results.parquet     tidy: run, backend, provider, trial, seq, phase, metric, value, unit
    latencies.parquet                 every serial search latency: ..., query, latency_ms, warmup
    s3_requests.parquet               every S3 request Milvus made (traffic.py): ..., phase, operation, bytes, ms
    s3_summary.csv                    those per trial, phase and operation: counts, bytes, latency percentiles
    phase_windows.csv                 when each phase of each trial ran (epoch seconds)
    trials/<backend>/trial-NN/        that trial's files (the same tables for it alone, logs/)
    notebooks/                        each executed benchmark notebook (runs through run_all.ipynb)
    progress.json                     the trial under way and its phase (progress.py; the bar reads it)

Each trial directory is written to a temporary name and renamed into place, and the run-level
tables are rebuilt from the trial directories and replaced atomically, so a crash mid-trial
never damages a finished one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from msbench.files import atomic_write_text
from msbench.measure.traffic import REQUEST_COLUMNS, SUMMARY_COLUMNS

IDENT = ["run", "backend", "provider", "trial", "seq"]
TIDY_COLUMNS = [*IDENT, "phase", "metric", "value", "unit"]
LATENCY_COLUMNS = [*IDENT, "query", "latency_ms", "warmup"]
PHASE_WINDOW_COLUMNS = ["phase", "start", "end"]   # epoch seconds, the capture's clock
# per-trial tables beyond results.csv, gathered into run-level ones of the same name
TRIAL_TABLES = {"latencies.parquet": LATENCY_COLUMNS, "s3_requests.parquet": [*IDENT, *REQUEST_COLUMNS],
                "s3_summary.csv": [*IDENT, *SUMMARY_COLUMNS], "phase_windows.csv": [*IDENT, *PHASE_WINDOW_COLUMNS]}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id or ""):
        raise ValueError(f"run_id {run_id!r} is not valid: use letters, digits, '.', '_' or '-' (at most 81 characters)")
    return run_id


def _atomic_frame(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


class RunDir:
    """One run's folder: writes trials atomically and knows which trials are done."""

    def __init__(self, root: Path | str, run_id: str):
        self.run_id = check_run_id(run_id)
        self.path = Path(root) / run_id
        self.path.mkdir(parents=True, exist_ok=True)

    def trial_path(self, backend: str, trial: int) -> Path:
        return self.path / "trials" / backend / f"trial-{trial:02d}"

    def trial_status(self, backend: str, trial: int) -> str | None:
        meta = self.trial_path(backend, trial) / "trial.json"
        return json.loads(meta.read_text())["status"] if meta.exists() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.path / "manifest.json", json.dumps(manifest, indent=2, default=str))

    def read_manifest(self) -> dict[str, Any]:
        path = self.path / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def write_trial(self, backend: str, trial: int, meta: dict[str, Any], rows: pd.DataFrame,
                    latencies: pd.DataFrame | None, log_dir: Path | None, secrets: list[str],
                    tables: dict[str, pd.DataFrame] | None = None) -> Path:
        """Everything of one trial, all or nothing: built in a temp dir, then renamed into place."""
        final = self.trial_path(backend, trial)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        rows.reindex(columns=TIDY_COLUMNS).to_csv(staging / "results.csv", index=False)   # a header even when empty
        if latencies is not None:
            latencies.to_parquet(staging / "latencies.parquet", index=False)
        for name, frame in (tables or {}).items():
            _atomic_frame(frame, staging / name)
        if log_dir and log_dir.exists():
            for log in sorted(p for p in log_dir.rglob("*") if p.is_file() and not p.is_symlink()):
                target = staging / "logs" / log.relative_to(log_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(redact(log.read_text(errors="replace"), secrets))
        (staging / "trial.json").write_text(json.dumps(meta, indent=2, default=str))
        if final.exists():   # a failed attempt being redone: keep it beside, never half-overwrite
            shutil.rmtree(final.with_name(final.name + ".previous"), ignore_errors=True)
            final.rename(final.with_name(final.name + ".previous"))
        staging.rename(final)
        self.rebuild_tables()
        return final

    def trial_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.path.glob("trials/*/trial-[0-9][0-9]/trial.json"))

    def rebuild_tables(self) -> None:
        """Run-level tables from the trial folders (the folders are the source of truth)."""
        dirs = self.trial_dirs()
        trials = pd.DataFrame([json.loads((tdir / "trial.json").read_text()) for tdir in dirs])
        if len(trials):
            trials = trials.drop(columns=[c for c in trials.columns if isinstance(trials[c].iloc[0], (dict, list))])
        _atomic_frame(trials, self.path / "trials.csv")
        results = _concat(dirs, "results.csv", TIDY_COLUMNS)
        _atomic_frame(results, self.path / "results.csv")
        _atomic_frame(results, self.path / "results.parquet")
        for name, columns in TRIAL_TABLES.items():
            _atomic_frame(_concat(dirs, name, columns), self.path / name)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _concat(dirs: list[Path], name: str, columns: list[str]) -> pd.DataFrame:
    """One table of every trial's ``name`` (trials without it, or with it empty, add nothing)."""
    frames = [frame for tdir in dirs if (tdir / name).exists() and len(frame := _read(tdir / name))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def load_run(run_path: Path | str) -> dict[str, Any]:
    """Everything a notebook needs from a run folder, as DataFrames."""
    run_path = Path(run_path)
    return {
        "manifest": json.loads((run_path / "manifest.json").read_text()),
        "trials": pd.read_csv(run_path / "trials.csv") if (run_path / "trials.csv").stat().st_size > 1 else pd.DataFrame(),
        "results": pd.read_parquet(run_path / "results.parquet"),
        **{name.split(".")[0]: _read(run_path / name) if (run_path / name).exists() else pd.DataFrame(columns=columns)
           for name, columns in TRIAL_TABLES.items()},
    }
