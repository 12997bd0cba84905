"""Where a replay's traces come from: trace files, folders of them, or a study run folder (its
trials' own trace.parquet, or traces made from their s3_requests when the run predates traces),
each checked before anything starts; and ``msbench trace export``, which writes them out."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from msbench.config import ConfigError
from msbench.measure import trace as tr
from msbench.replay.record import is_replay
from msbench.results import Manifest, TrialRecord


def find_traces(sources: list[str | Path], from_backend: str | None = None,
                objects: pd.DataFrame | None = None) -> list[tuple[str, Path | None, tr.Trace]]:
    """(name, file or None, trace) for every trace the sources name, each checked: a trace file; a
    folder of them (*.parquet, in name order); or a study run folder, whose trials of
    ``from_backend`` (default: its baseline) give their trace.parquet, or a trace made from their
    s3_requests when the run predates traces (file None: it is written with the replay)."""
    found = []
    for source in map(Path, sources):
        if source.is_file():
            found.append((source.stem, source, tr.read(source, objects)))
        elif _is_run_folder(source):
            found += _study_traces(source, from_backend, objects)
        elif source.is_dir():
            files = sorted(source.glob("*.parquet"))
            if not files:
                raise ConfigError(f"{source}: no trace files (*.parquet) in this folder")
            found += [(f.stem, f, tr.read(f, objects)) for f in files]
        else:
            raise ConfigError(f"{source}: no such trace file, folder of traces, or run folder")
    if not found:
        raise ConfigError("no trace given: name a trace file, a folder of traces, or a study run folder")
    names = [name for name, _, _ in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"two traces share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                          f"rename one")
    return found


def _is_run_folder(source: Path) -> bool:
    return (source / "manifest.json").is_file() and (source / "trials").is_dir()


def studies_control_cpu(sources: list[str | Path]) -> float | None:
    """The CPU share the study run folders among ``sources`` held their handicapped twin to
    (Params.control_cpu), so a replay of a study's traces holds its twin as the study did; None when
    no source is a study run folder. Runs that differ are refused: the share must then be given."""
    shares = {Manifest.from_json((Path(s) / "manifest.json").read_text()).params.control_cpu
              for s in sources if _is_run_folder(Path(s)) and not is_replay(Path(s))}
    if len(shares) > 1:
        raise ConfigError(f"the study runs given held their handicapped twins to different CPU shares "
                          f"({', '.join(f'{c:g}' for c in sorted(shares))}); give --control-cpu")
    return shares.pop() if shares else None


def _study_traces(run_path: Path, from_backend: str | None, objects) -> list[tuple[str, Path | None, tr.Trace]]:
    """The traces of a study run's trials of one backend (see find_traces)."""
    if is_replay(run_path):
        raise ConfigError(f"{run_path} is a replay run, not a study: give its traces/ folder to replay its traces again")
    manifest = Manifest.from_json((run_path / "manifest.json").read_text())
    backend = from_backend or manifest.baseline or manifest.backends[0]
    if backend not in manifest.backends:
        raise ConfigError(f"{run_path}: --from-backend {backend!r} is not in the run; it has: "
                          f"{', '.join(manifest.backends)}")
    out = []
    for tdir in sorted((run_path / "trials" / backend).glob("trial-[0-9][0-9]")):
        if not (tdir / "trial.json").exists() or _record(tdir).status != "ok":
            continue
        name = f"{run_path.name}-{backend}-{tdir.name}"
        if (tdir / tr.TRIAL_FILE).exists() or (tdir / "s3_requests.parquet").exists():
            made = export_trial(tdir)
            tr.validate(made, objects, where=name)
            out.append((name, None, made))
    if not out:
        raise ConfigError(f"{run_path}: no completed trial of {backend} with captured S3 traffic (trace.parquet or "
                          f"s3_requests.parquet)")
    return out


def _record(trial_dir: Path) -> TrialRecord:
    return TrialRecord.from_json((trial_dir / "trial.json").read_text())


def export_trial(trial_dir: Path) -> tr.Trace:
    """The trace of a study trial's folder: its own trace.parquet, else one made from its s3_requests and
    phase windows (a run made before traces), with each phase's CPU beside the store from its results
    where the trace lacks it; a ConfigError in one line when none can be made."""
    results_path = trial_dir / "results.csv"
    results = pd.read_csv(results_path) if results_path.exists() else None
    if (trial_dir / tr.TRIAL_FILE).exists():
        made = tr.read(trial_dir / tr.TRIAL_FILE)
        recorded = all(span.beside_cores is not None for span in made.meta.phases)
        return made if recorded or results is None else tr.with_beside_cores(made, results)
    windows_path = trial_dir / "phase_windows.csv"
    windows = pd.read_csv(windows_path) if windows_path.exists() else None
    record = _record(trial_dir)
    made, why = tr.of_trial(pd.read_parquet(trial_dir / "s3_requests.parquet"), windows, record, results)
    if made is None:
        raise ConfigError(f"{record.backend}/{record.trial}: {why}")
    return made


def export_run(run_path: str | Path, trials: list[str] | None = None, out: str | Path | None = None) -> list[Path]:
    """Trace files from a run folder: every trial that captured traffic, or those named
    ``BACKEND/N``; written to ``out`` (default RUN/traces) as BACKEND-trial-NN.parquet."""
    run_path = Path(run_path)
    if not (run_path / "trials").is_dir():
        raise ConfigError(f"{run_path}: not a run folder (no trials/ in it)")
    wanted = None
    if trials:
        wanted = set()
        for text in trials:
            backend, _, number = text.partition("/")
            if not backend or not number.isdigit():
                raise ConfigError(f"--trial {text!r}: give BACKEND/N, e.g. minio/1")
            wanted.add((backend, int(number)))
    dirs = {(p.parent.name, int(p.name.split("-")[1])): p for p in sorted(run_path.glob("trials/*/trial-[0-9][0-9]"))}
    missing = sorted(wanted - set(dirs)) if wanted else []
    if missing:
        raise ConfigError(f"trial(s) {', '.join(f'{b}/{n}' for b, n in missing)} not in {run_path}; it has: "
                          f"{', '.join(f'{b}/{n}' for b, n in sorted(dirs))}")
    folder = Path(out) if out else run_path / "traces"
    written = []
    for (backend, number), tdir in sorted(dirs.items()):
        if wanted is not None and (backend, number) not in wanted:
            continue
        if not (tdir / "s3_requests.parquet").exists() or pd.read_parquet(tdir / "s3_requests.parquet").empty:
            if wanted is not None:
                raise ConfigError(f"trial {backend}/{number} captured no S3 traffic (no s3_requests.parquet)")
            continue
        written.append(tr.write(export_trial(tdir), folder / f"{backend}-{tdir.name}.parquet"))
    if not written:
        raise ConfigError(f"{run_path}: no trial captured S3 traffic; nothing to export")
    return written
