"""A scale sweep: the same study at a ladder of sizes, to see from which size the store matters.

Sizes are stated as bytes in the bucket (``50MB,200MB,800MB``); each is mapped to a number of
vectors at a stated dimension through the bucket bytes a vector takes (``bucket_bytes_per_vector``,
from a pilot), and the bytes really found in the bucket are recorded by each trial's footprint.
Each size is one study run (``study.prepare`` + ``study.run_all``: the same backends and controls,
RMIT order within the size), in a folder of its own under the sweep's folder:

    data/sweeps/<sweep>/sweep.json           SweepManifest: the ladder, the mapping, what each size found
    data/sweeps/<sweep>/<sweep>-<size>/      that size's run folder (results.py), resumable as any run

Sizes run smallest first, one after another. Rerunning with the same sweep id completes what is
missing (every size's run resumes itself); other inputs under the same id are refused. Every
size is checked (as a dry run) before the first trial runs, so bad input fails before anything
is provisioned.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from msbench.config import DEFAULT_PROFILE, ConfigError, Params, load_user_config, make_params
from msbench.providers.catalog import available_backends
from msbench.files import atomic_write_text
from msbench.results import SizePoint, SweepManifest, TrialRecord, check_results_root, check_run_id, load_run
from msbench.run import study

DEFAULT_SWEEPS = Path("data") / "sweeps"
DEFAULT_TRIALS = 2
# 768 as the published study (1,000,000 x 768) and most text embeddings: at a given size in the bucket
# a load then moves the same bytes in 6x fewer rows than at 128, so Milvus's per-row work (row ids,
# timestamps, bloom filters, graph links) is a smaller share of what is timed and the store's a larger.
DEFAULT_DIM = 768
# Milvus 2.3.5 builds no index for a segment under 1,024 rows (indexCoord.segment.minSegmentNumRowsToEnableIndex):
# fewer vectors would make the index phase wait for nothing.
MIN_VECTORS = 2_048
_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

# Bucket bytes per vector after the index build, before any compaction copy (binlogs + index files +
# stats), as a pilot found them with the clustered dataset (minio, 2026-12-02; footprint as found):
# 315 B at dim 32 (5,000 rows), 1,056 at 128 (50,000), 6,001 at 768 (48,000 and 129,000 rows), HNSW
# M=16: the vector's binlog (4 x dim + 13) and its index files (3.72 x dim + 58 for HNSW's links; an
# IVF_FLAT index 2,853 B at 768, the same 3.72 x dim without links: knowhere stores them compressed).
# A size's measured footprint is recorded beside it (sweep.json): from about 800 MB the bucket can hold
# compaction copies not yet collected (967 MB found for 767 MB of IVF_FLAT collection), so the footprint
# is no size measure there, and the fits use the bytes each phase moved.
BYTES_PER_DIM = 7.72
ROW_BYTES = {"HNSW": 73.0, "IVF_FLAT": 15.0}

# MinIO's trial time on this project's 2-core machine (pilot, 2026-12-02, a build running beside it;
# default pacing; 53 MB: 107 s, 288 MB: 182 s with the footprint after GC; 774 MB HNSW: 214 s, 767 MB
# IVF_FLAT: 203 s without). A fixed part (stack start, Milvus's waits, the cold restart's 22 s, warp 19 s,
# throughput 5 s) and a part per GB (insert 36 s, index: HNSW 130 s or IVF_FLAT 44 s, loads 3 x ~5 s;
# IVF_FLAT's serial search at nlist 128 scans an eighth of the vectors: ~45 s per GB for 1,000 queries).
# The footprint after GC (a forced compaction re-indexes everything, then GC's quiet window) apart.
# Beyond about 1 GB Milvus makes enough segments for its auto-compaction to merge some while the index
# is built (every 60 s), and the index phase then waits for their re-index: at 1.6 GB a trial took
# 681 s (HNSW; index 510 s, 6.3 GB moved) and 401 s (IVF_FLAT nlist 1024; index 235 s), not the 360 s
# and 300 s of the lines here. The dry run says so for such sizes.
LINEAR_UP_TO_BYTES = 1e9
TRIAL_FIXED_S = 75.0
TRIAL_S_PER_GB = {"HNSW": 180.0, "IVF_FLAT": 140.0}
AFTER_GC_FIXED_S = 14.0
AFTER_GC_S_PER_GB = {"HNSW": 135.0, "IVF_FLAT": 50.0}


def bucket_bytes_per_vector(p: Params) -> float:
    """The bytes one vector of ``p`` takes in the bucket after the index build (the model above)."""
    return BYTES_PER_DIM * p.dim + ROW_BYTES[p.index_type]


def estimate_trial_s(p: Params, bucket_bytes: float) -> float:
    """Seconds one trial of MinIO takes here at this size (the pilot's model; other stores are slower)."""
    gb = bucket_bytes / 1e9
    after_gc = AFTER_GC_FIXED_S + AFTER_GC_S_PER_GB[p.index_type] * gb if p.footprint_after_gc else 0.0
    return TRIAL_FIXED_S + TRIAL_S_PER_GB[p.index_type] * gb + after_gc


def parse_size(text: str) -> int:
    """``200MB``, ``1.6GB``, ``512MiB`` -> bytes (decimal units as written, binary with an i)."""
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise ConfigError(f"size {text!r} is not valid; valid: a number and a unit such as 50MB, 1.6GB or 512MiB "
                          f"(units: {', '.join(u.replace('I', 'i').replace('K', 'k') for u in _UNITS)})")
    value = float(match.group(1)) * _UNITS[unit]
    if value < 1:
        raise ConfigError(f"size {text!r} must be at least 1 byte")
    return int(round(value))


def size_label(text: str) -> str:
    """The size as a folder name: its number and unit, without spaces (``1.6GB``)."""
    match = _SIZE.match(text)
    return f"{float(match.group(1)):g}{match.group(2)}"


def parse_sizes(sizes: str | Iterable[str]) -> list[tuple[str, int]]:
    """(label, bytes) of each size, smallest first; repeats refused."""
    items = [s for s in (sizes.split(",") if isinstance(sizes, str) else sizes) if str(s).strip()]
    if not items:
        raise ConfigError("sizes: give at least one, such as 50MB,200MB,800MB")
    parsed = sorted(((size_label(s), size) for s in items for size in [parse_size(s)]), key=lambda x: x[1])
    if len({b for _, b in parsed}) != len(parsed):
        raise ConfigError(f"sizes repeat: {', '.join(items)}; give each size once")
    return parsed


def parse_at(pairs: Iterable[str], labels: list[str]) -> dict[str, dict[str, str]]:
    """``--at SIZE:NAME=VALUE`` -> {size label: {name: value}}, for the sizes of the ladder only."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        size, _, setting = pair.partition(":")
        name, eq, value = setting.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--at takes SIZE:NAME=VALUE such as 800MB:index_type=IVF_FLAT, got {pair!r}")
        label = size_label(size) if _SIZE.match(size) else size
        if label not in labels:
            raise ConfigError(f"--at {pair!r}: {size} is not a size of this sweep; valid: {', '.join(labels)}")
        out.setdefault(label, {})[name.strip()] = value.strip()
    return out


def ladder(sizes: str | Iterable[str], dim: int, profile: str, overrides: dict[str, Any],
           at: dict[str, dict[str, Any]], sweep_id: str) -> list[SizePoint]:
    """Each size as a workload: its vectors at ``dim`` (bucket_bytes_per_vector of that size's own
    parameters), and its run's id. Every size's parameters checked."""
    points = []
    for label, target in parse_sizes(sizes):
        extra = {**overrides, **at.get(label, {}), "dim": dim}
        shape = make_params(profile, {**extra, "n_vectors": MIN_VECTORS})   # index type etc. as this size has them
        n_vectors = int(round(target / bucket_bytes_per_vector(shape)))
        if n_vectors < MIN_VECTORS:
            need = MIN_VECTORS * bucket_bytes_per_vector(shape)
            raise ConfigError(f"size {label} is {n_vectors:,} vectors at dim {dim}: Milvus 2.3.5 builds no index "
                              f"under 1,024 rows a segment; give at least {math.ceil(need / 1e6):g}MB at dim {dim}, "
                              f"or a smaller dim")
        make_params(profile, {**extra, "n_vectors": n_vectors})
        points.append(SizePoint(label, target, n_vectors, dim, check_run_id(f"{sweep_id}-{label}"),
                                dict(at.get(label, {}))))
    return points


def size_overrides(overrides: dict[str, Any], point: SizePoint) -> dict[str, Any]:
    """A size's parameters: the sweep's (every size), the size's own (--at), and its workload."""
    return {**overrides, **point.overrides, "dim": point.dim, "n_vectors": point.n_vectors}


@dataclass
class PreparedSweep:
    """A prepared sweep: its folder and its manifest (the ladder and what it found so far)."""

    path: Path
    manifest: SweepManifest
    config: str | Path | None = None

    def write(self) -> None:
        atomic_write_text(self.path / "sweep.json", self.manifest.to_json())

    def prepare_size(self, point: SizePoint) -> study.Study:
        m = self.manifest
        return study.prepare(backends=m.backends or None, trials=m.trials, profile=m.profile,
                             overrides=size_overrides(m.overrides, point), provider=m.provider, run_id=point.run_id, results_root=self.path, seed=m.seed,
                             config=self.config, controls=m.controls)

    def record_size(self, point: SizePoint) -> None:
        """What the size's completed trials found in the bucket (the footprint as found, mean)."""
        results = load_run(self.path / point.run_id).completed("results")
        found = results.loc[results["metric"] == "bucket_bytes", "value"]
        self.manifest.bucket_bytes[point.label] = float(found.mean()) if len(found) else None
        self.write()


def _backend_names(backends: str | Iterable[str] | None, provider: str, config, controls, cpu: float) -> list[str]:
    """The backends each size runs, controls included (as study.prepare chooses them)."""
    names = study._parse_list(backends) or available_backends(load_user_config(config), provider)
    kinds = study.control_kinds(controls, provider)
    return [*names, *study.control_definitions(study.baseline_of(names), cpu, kinds)] if names else []


def prepare(sizes: str | Iterable[str], dim: int = DEFAULT_DIM, trials: int = DEFAULT_TRIALS,
            backends: str | Iterable[str] | None = None, profile: str = DEFAULT_PROFILE,
            overrides: dict[str, Any] | None = None, at: Iterable[str] | dict[str, dict[str, Any]] = (),
            provider: str = "native", sweep_id: str | None = None, results_root: str | Path = DEFAULT_SWEEPS,
            seed: int | None = None, config: str | Path | None = None,
            controls: bool | str | Iterable[str] | None = None, dry_run: bool = False) -> PreparedSweep | str:
    """Check every size (its parameters, the backends, as ``study.prepare`` would), then write the sweep's
    manifest; or, with ``dry_run``, return the ladder as text (sizes -> vectors x dim, estimated trial
    time): nothing contacted, nothing written. ``at``: parameters of single sizes, {size: {name: value}}
    or ``SIZE:NAME=VALUE`` strings (an index type, efConstruction or footprint_after_gc at large sizes)."""
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ConfigError(f"dim must be a positive integer, got {dim!r}")
    overrides = dict(overrides or {})
    wrong = sorted({"n_vectors", "dim"} & set(overrides))
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} is set by the sweep from each size (and --dim); leave it out of --set")
    sweep_id = check_run_id(sweep_id or dt.datetime.now().strftime("%Y%m%d-%H%M%S-sweep"))
    root = check_results_root(results_root)
    labels = [label for label, _ in parse_sizes(sizes)]
    per_size = at if isinstance(at, dict) else parse_at(at, labels)
    points = ladder(sizes, dim, profile, overrides, per_size, sweep_id)
    manifest = SweepManifest(
        sweep=sweep_id, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), profile=profile,
        provider=provider, backends=",".join(study._parse_list(backends)), trials=trials,
        controls=controls if isinstance(controls, (bool, type(None))) else ",".join(study._parse_list(controls)),
        seed=seed, overrides=overrides, dim=dim, points=points,
        bytes_per_vector={"model": f"{BYTES_PER_DIM} x dim + row bytes by index",
                          "row_bytes": dict(ROW_BYTES), "source": "pilot, clustered vectors, footprint as found"})
    sweep = PreparedSweep(root / sweep_id, manifest, config)
    for point in points:   # every size as its run would check it, before anything runs
        study.prepare(backends=backends, trials=trials, profile=profile, provider=provider, run_id=point.run_id,
                      overrides=size_overrides(overrides, point), results_root=sweep.path, seed=seed, config=config, controls=controls, dry_run=True)
    if dry_run:
        names = _backend_names(backends, provider, config, controls, make_params(profile, overrides).control_cpu)
        return ladder_text(sweep, names)
    previous = sweep.path / "sweep.json"
    if previous.exists():
        recorded = SweepManifest.from_json(previous.read_text())
        if replace(recorded, created="", bucket_bytes={}) != replace(manifest, created="", bucket_bytes={}):
            raise ConfigError(f"sweep {sweep_id} exists with other sizes, dimension, parameters, backends, trials or "
                              f"provider; use a new sweep id, or the same inputs to resume it")
        sweep.manifest = recorded
    sweep.write()
    return sweep


def ladder_text(sweep: PreparedSweep, backends: list[str]) -> str:
    """The dry run's answer: each size as vectors x dim, its expected bucket bytes, its index and the
    estimated time, per trial and for the size."""
    m = sweep.manifest
    lines = ["dry run: nothing was contacted, no file was written",
             f"sweep {m.sweep} -> {sweep.path} (pass --sweep-id {m.sweep} to run this ladder): profile {m.profile}, "
             f"dim {m.dim}, {m.trials} trial(s) per backend and size, provider {m.provider}",
             f"backends at every size ({len(backends)}): {', '.join(backends)}",
             f"{'size':>8}  {'vectors x dim':>16}  {'bucket (model)':>14}  {'index':>24}  {'trial':>8}  {'size total':>10}"]
    total = 0.0
    for point in m.points:
        p = make_params(m.profile, size_overrides(m.overrides, point))
        expected = point.n_vectors * bucket_bytes_per_vector(p)
        trial = estimate_trial_s(p, expected)
        size_total = trial * m.trials * len(backends)
        total += size_total
        index = (f"HNSW M={p.hnsw_m} efC={p.hnsw_ef_construction}" if p.index_type == "HNSW"
                 else f"IVF_FLAT nlist={p.ivf_nlist}")
        lines.append(f"{point.label:>8}  {point.n_vectors:>9,} x {point.dim:<4}  {expected / 1e6:>11,.0f} MB  {index:>24}"
                     f"  {trial / 60:>6.1f} m  {size_total / 3600:>8.2f} h"
                     + ("" if p.footprint_after_gc else "  (no footprint after GC)")
                     + ("  (beyond the pilot's lines: compaction during the index build, longer)"
                        if expected > LINEAR_UP_TO_BYTES else ""))
    lines.append(f"estimated total: {total / 3600:.1f} h of trials (MinIO's trial time on a 2-core machine, from a "
                 f"pilot; slower stores and a busy machine take longer)")
    return "\n".join(lines)


def run(sweep: PreparedSweep, progress: bool = True) -> list[TrialRecord]:
    """Every size's run in turn, smallest first (each resumes what it has done); after each, what its
    trials found in the bucket goes into the sweep's manifest."""
    outcomes = []
    for point in sweep.manifest.points:
        prepared = sweep.prepare_size(point)
        if progress:
            print(f"sweep {sweep.manifest.sweep}: size {point.label} ({point.n_vectors:,} x {point.dim}), "
                  f"{len(prepared.pending())} of {len(prepared.order)} trials to run -> {prepared.run.path}")
        outcomes += study.run_all(prepared, progress)
        sweep.record_size(point)
    return outcomes
