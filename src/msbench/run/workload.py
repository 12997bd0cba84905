"""The vectors a trial inserts and the queries it asks, with exact ground truth.

Seeded uniform random float32 vectors are the published workload; a seeded Gaussian mixture
("clustered") is the realistic one for search (see ``_synthetic``); users may bring their own
as ``.npy`` (rows = vectors), ``.fvecs`` (TEXMEX) or ann-benchmarks HDF5 (train/test/neighbors).
Queries are always held out: never inserted. Ground truth is exact (numpy, chunked) and cached.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msbench.config import BOUNDS, SYNTHETIC, ConfigError, Params
from msbench.files import cache_dir, sha256_file


@dataclass(frozen=True)
class Dataset:
    name: str
    train: np.ndarray        # (n, d) float32, C-contiguous: what is inserted
    queries: np.ndarray      # (q, d) float32: held out
    neighbors: np.ndarray    # (q, k) int64: exact top-k ids into train
    source: str              # how it was made, for the manifest
    sha256: str              # of the file, or of the generated train and query bytes
    ground_truth: str        # where the neighbours came from

    @property
    def ids(self) -> np.ndarray:
        return np.arange(len(self.train), dtype=np.int64)

    def facts(self) -> dict[str, Any]:
        """What was really used, for the manifest: the data's own counts and dim, not the profile's."""
        return {"name": self.name, "source": self.source, "sha256": self.sha256, "n_vectors": len(self.train),
                "n_queries": len(self.queries), "dim": int(self.train.shape[1]), "top_k": int(self.neighbors.shape[1]),
                "ground_truth": self.ground_truth}


NEIGHBOR_CHECKS = 10   # queries whose given neighbours are recomputed exactly before they are trusted


def read_fvecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise ConfigError(f"{path} is empty")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1) or (raw.reshape(-1, dim + 1)[:, 0] != dim).any():
        raise ConfigError(f"{path} is not an .fvecs file (each vector must be an int32 dim={dim} followed by "
                          f"that many float32 values)")
    return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32)


def _shape_ok(path: Path, what: str, array: Any) -> None:
    if array.ndim != 2 or array.dtype.kind not in "fiu" or 0 in array.shape:
        raise ConfigError(f"{path}: {what} must be a non-empty 2-d array of numbers (a row per vector), "
                          f"got shape {array.shape} of {array.dtype}")


def _enough(path: Path, what: str, have: int, name: str, want: int) -> None:
    if have < want:
        raise ConfigError(f"{path}: {what} has {have} vectors, {name}={want} asked for; set {name} to at most {have}")


def _finite(path: Path, what: str, rows: Any) -> np.ndarray:
    """float32 rows, refused when any value is NaN or infinite (also after the cast to float32)."""
    with np.errstate(over="ignore"):   # too large for float32 becomes inf: reported below
        out = np.asarray(rows, dtype=np.float32)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise ConfigError(f"{path}: {what} has {int(bad.sum())} vectors with NaN or infinite values as float32 "
                          f"(first: row {int(np.argmax(bad))}); valid: finite numbers only")
    return out


def _read_hdf5(path: Path, p: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ConfigError(f"{path} is not a readable HDF5 file ({err}); valid: an ann-benchmarks file with "
                          f"datasets 'train' and 'test' (and optionally 'neighbors')") from None
    with f:
        if not all(isinstance(f.get(key), h5py.Dataset) for key in ("train", "test")):
            raise ConfigError(f"{path}: an HDF5 dataset needs datasets 'train' and 'test' (and optionally "
                              f"'neighbors'), it has {sorted(f)}")
        for key in ("train", "test"):
            _shape_ok(path, f"'{key}'", f[key])
        _enough(path, "'train'", len(f["train"]), "n_vectors", p.n_vectors)
        _enough(path, "'test'", len(f["test"]), "n_queries", p.n_queries)
        train = _finite(path, "'train'", f["train"][: p.n_vectors])
        queries = _finite(path, "'test'", f["test"][: p.n_queries])
        given = None
        if isinstance(f.get("neighbors"), h5py.Dataset) and len(f["train"]) == p.n_vectors:   # ids into all of train
            given = np.asarray(f["neighbors"][: p.n_queries])
            if given.ndim != 2 or given.dtype.kind not in "iu" or len(given) != p.n_queries:
                raise ConfigError(f"{path}: 'neighbors' must be a 2-d integer array with a row per test vector, "
                                  f"got shape {given.shape} of {given.dtype}")
            given = given.astype(np.int64)
        distance = f.attrs.get("distance", "")
    return train, queries, given, distance.decode() if isinstance(distance, bytes) else str(distance)


def _read_rows(path: Path, p: Params) -> tuple[np.ndarray, np.ndarray]:
    """.npy or .fvecs: the first n_vectors rows are inserted, the last n_queries held out as queries."""
    if path.suffix.lower() == ".npy":
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise ConfigError(f"{path} is not a .npy file (no NumPy header); valid: a 2-d float array "
                                  f"written by numpy.save")
        try:
            vectors = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise ConfigError(f"{path} cannot be read as a .npy array ({err}); valid: a 2-d float array "
                              f"written by numpy.save") from None
    else:
        vectors = read_fvecs(path)
    _shape_ok(path, "the array", vectors)
    if len(vectors) < p.n_vectors + p.n_queries:
        raise ConfigError(f"{path} has {len(vectors)} vectors; n_vectors + n_queries = {p.n_vectors + p.n_queries} "
                          f"needed (queries are held out from the end)")
    return (_finite(path, "the array", vectors[: p.n_vectors]),
            _finite(path, "the array", vectors[len(vectors) - p.n_queries:]))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)


def _distances(train: np.ndarray, query: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """Of one query to the listed vectors, smaller nearer, as exact_neighbors ranks them."""
    rows, q = train[ids].astype(np.float64), query.astype(np.float64)
    if metric == "L2":
        return ((rows - q) ** 2).sum(axis=1)
    if metric == "COSINE":
        rows, q = _unit(rows), _unit(q)
    return -(rows @ q)


def check_neighbors(path: Path, train: np.ndarray, queries: np.ndarray, given: np.ndarray, metric: str,
                    distance: str = "") -> int:
    """A file's own ground truth is trusted only when it agrees with metric_type: the exact top-k of
    NEIGHBOR_CHECKS queries, spread over the file, are recomputed and their distances compared
    (distances, not ids, so that ties may come in any order). Returns how many were checked."""
    k = given.shape[1]
    if given.min() < 0 or given.max() >= len(train):
        raise ConfigError(f"{path}: 'neighbors' holds ids from {given.min()} to {given.max()}, outside the "
                          f"{len(train)} train vectors")
    rows = np.unique(np.linspace(0, len(queries) - 1, NEIGHBOR_CHECKS).astype(int))
    exact = exact_neighbors(train, queries[rows], k, metric)
    for row, truth in zip(rows, exact):
        theirs = np.sort(_distances(train, queries[row], given[row], metric))
        ours = np.sort(_distances(train, queries[row], truth, metric))
        if not np.allclose(theirs, ours, rtol=1e-3, atol=1e-6):
            said = f" (the file says distance={distance})" if distance else ""
            raise ConfigError(f"{path}: its 'neighbors' are not the exact top-{k} under metric_type={metric}"
                              f"{said}: query {row}'s k-th distance is {theirs[-1]:.6g}, exactly {ours[-1]:.6g}; "
                              f"set metric_type to the file's metric (ann-benchmarks' distance: euclidean = L2, "
                              f"angular = COSINE)")
    return len(rows)


def exact_neighbors(train: np.ndarray, queries: np.ndarray, k: int, metric: str, chunk: int = 256) -> np.ndarray:
    """Exact top-k by brute force, in query chunks so memory stays bounded."""
    out = np.empty((len(queries), k), dtype=np.int64)
    if metric == "COSINE":
        train, queries = _unit(train), _unit(queries)
    train_sq = np.einsum("ij,ij->i", train, train, dtype=np.float64) if metric == "L2" else None
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        dots = q.astype(np.float64) @ train.T.astype(np.float64)
        score = train_sq[None, :] - 2.0 * dots if metric == "L2" else -dots   # smaller is nearer
        part = np.argpartition(score, kth=min(k, score.shape[1] - 1), axis=1)[:, :k]
        order = np.take_along_axis(score, part, axis=1).argsort(axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def _fingerprint(p: Params, train: np.ndarray, queries: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(f"{p.metric_type}|{p.top_k}|{train.shape}|{queries.shape}".encode())
    digest.update(np.ascontiguousarray(train[:: max(1, len(train) // 1000)]).tobytes())
    digest.update(np.ascontiguousarray(queries).tobytes())
    return digest.hexdigest()[:24]


CLUSTERS = 256        # mixture components of the "clustered" synthetic dataset
CLUSTER_SPREAD = 0.3  # within-cluster sd relative to the spread of the centres


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Points of a Gaussian mixture: a centre each, plus isotropic noise of CLUSTER_SPREAD."""
    pick = rng.integers(len(centres), size=n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(CLUSTER_SPREAD)
    return centres[pick] + noise


def _synthetic(p: Params) -> tuple[np.ndarray, np.ndarray, str]:
    """Seeded vectors and held-out queries. "random" is the published workload (uniform, no
    structure: HNSW needs a huge ef for good recall on it); "clustered" is a Gaussian mixture,
    the low intrinsic dimension real embeddings have, where the usual ef gives recall >= 0.9."""
    rng, query_rng = np.random.default_rng(p.seed), np.random.default_rng([p.seed, 1])
    if p.dataset == "random":
        return (rng.random((p.n_vectors, p.dim), dtype=np.float32),
                query_rng.random((p.n_queries, p.dim), dtype=np.float32),
                f"numpy default_rng({p.seed}) uniform [0,1) float32")
    centres = rng.standard_normal((CLUSTERS, p.dim), dtype=np.float32)
    return (clustered(p.n_vectors, p.dim, rng, centres), clustered(p.n_queries, p.dim, query_rng, centres),
            f"numpy default_rng({p.seed}) Gaussian mixture: {CLUSTERS} N(0,1) centres, within-cluster sd "
            f"{CLUSTER_SPREAD}, float32; queries drawn from the same mixture")


def _read_file(p: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """A file's vectors, held-out queries, its own neighbours (if any) and its distance, all checked
    (shape, numbers, finite, counts, dim)."""
    path = Path(p.dataset)
    if path.suffix.lower() in (".hdf5", ".h5"):
        train, queries, given, distance = _read_hdf5(path, p)
    else:
        (train, queries), given, distance = _read_rows(path, p), None, ""
    if train.shape[1] != queries.shape[1]:
        raise ConfigError(f"{path}: train dim {train.shape[1]} differs from query dim {queries.shape[1]}")
    low, high = BOUNDS["dim"]
    if not low <= train.shape[1] <= high:
        raise ConfigError(f"{path}: its vectors have {train.shape[1]} dimensions; valid: {low} to {high} (Milvus)")
    return train, queries, given, distance


def check_dataset(p: Params) -> None:
    """What a dry run checks: a file's contents as load_dataset would, without computing ground truth
    (seeded synthetic data needs no check)."""
    if p.dataset not in SYNTHETIC:
        _read_file(p)


def load_dataset(p: Params) -> Dataset:
    """Vectors, queries and ground truth, all checked (shape, numbers, finite, counts, dim, a file's
    own neighbours against metric_type), so that a bad dataset fails before anything is provisioned."""
    distance = ""
    if p.dataset in SYNTHETIC:
        train, queries, source = _synthetic(p)
        digest = hashlib.sha256(train.data)
        digest.update(queries.data)
        name, given, sha256 = f"{p.dataset}-{p.n_vectors}x{p.dim}", None, digest.hexdigest()
    else:
        train, queries, given, distance = _read_file(p)
        path = Path(p.dataset)
        name, source, sha256 = path.stem, f"file {path.resolve()}", sha256_file(path)
    if given is not None and given.shape[1] >= p.top_k:
        neighbors = given[:, : p.top_k]
        checked = check_neighbors(Path(p.dataset), train, queries, neighbors, p.metric_type, distance)
        ground_truth = f"the file's own 'neighbors', {checked} queries recomputed exactly under {p.metric_type}"
    else:
        neighbors = _ground_truth(p, train, queries)
        ground_truth = f"exact top-{p.top_k} under {p.metric_type} (numpy brute force)"
    return Dataset(name, np.ascontiguousarray(train), np.ascontiguousarray(queries), neighbors, source, sha256,
                   ground_truth)


def _ground_truth(p: Params, train: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact neighbours, cached by content: computing them is the slow part of a large dataset."""
    cached = cache_dir() / "groundtruth" / f"{_fingerprint(p, train, queries)}.npy"
    if cached.exists():
        return np.load(cached)
    neighbors = exact_neighbors(train, queries, p.top_k, p.metric_type)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npy")
    np.save(tmp, neighbors)
    tmp.replace(cached)
    return neighbors


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found top-k ∩ true top-k| / k."""
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth))
    return hits / (k * len(truth))
