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

import numpy as np

from msbench.config import SYNTHETIC, ConfigError, Params
from msbench.providers.milvus_native import cache_dir


@dataclass(frozen=True)
class Dataset:
    name: str
    train: np.ndarray        # (n, d) float32, C-contiguous: what is inserted
    queries: np.ndarray      # (q, d) float32: held out
    neighbors: np.ndarray    # (q, k) int64: exact top-k ids into train
    source: str              # how it was made, for the manifest

    @property
    def ids(self) -> np.ndarray:
        return np.arange(len(self.train), dtype=np.int64)


def read_fvecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise ConfigError(f"{path} is empty")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1):
        raise ConfigError(f"{path} is not an .fvecs file (first int32 says dim={dim}, size does not fit)")
    return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32)


def _load_file(path: Path, p: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Vectors to insert, queries, and the file's own neighbors when it has them."""
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            if "train" not in f or "test" not in f:
                raise ConfigError(f"{path}: an HDF5 dataset needs 'train' and 'test' (and optionally 'neighbors')")
            train = np.asarray(f["train"][: p.n_vectors], dtype=np.float32)
            queries = np.asarray(f["test"][: p.n_queries], dtype=np.float32)
            full = len(f["train"]) <= p.n_vectors
            given = np.asarray(f["neighbors"][: p.n_queries], dtype=np.int64) if "neighbors" in f and full else None
        return train, queries, given
    vectors = np.load(path, mmap_mode="r") if suffix == ".npy" else read_fvecs(path)
    if vectors.ndim != 2:
        raise ConfigError(f"{path}: expected a 2-d array of vectors, got shape {vectors.shape}")
    if len(vectors) < p.n_vectors + p.n_queries:
        raise ConfigError(f"{path} has {len(vectors)} vectors; n_vectors + n_queries = {p.n_vectors + p.n_queries} "
                          f"needed (queries are held out from the end)")
    train = np.asarray(vectors[: p.n_vectors], dtype=np.float32)
    queries = np.asarray(vectors[len(vectors) - p.n_queries:], dtype=np.float32)
    return train, queries, None


def exact_neighbors(train: np.ndarray, queries: np.ndarray, k: int, metric: str, chunk: int = 256) -> np.ndarray:
    """Exact top-k by brute force, in query chunks so memory stays bounded."""
    out = np.empty((len(queries), k), dtype=np.int64)
    if metric == "COSINE":
        train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-30)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
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


def load_dataset(p: Params) -> Dataset:
    if p.dataset in SYNTHETIC:
        train, queries, source = _synthetic(p)
        name, given = f"{p.dataset}-{p.n_vectors}x{p.dim}", None
    else:
        path = Path(p.dataset)
        train, queries, given = _load_file(path, p)
        if train.shape[1] != queries.shape[1]:
            raise ConfigError(f"{path}: train dim {train.shape[1]} differs from query dim {queries.shape[1]}")
        name, source = path.stem, f"file {path.resolve()}"
    if given is not None and given.shape[1] >= p.top_k:
        neighbors = given[:, : p.top_k]
    else:
        cached = cache_dir() / "groundtruth" / f"{_fingerprint(p, train, queries)}.npy"
        if cached.exists():
            neighbors = np.load(cached)
        else:
            neighbors = exact_neighbors(train, queries, p.top_k, p.metric_type)
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npy")
            np.save(tmp, neighbors)
            tmp.replace(cached)
    return Dataset(name, np.ascontiguousarray(train), np.ascontiguousarray(queries), neighbors, source)


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found top-k ∩ true top-k| / k."""
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth))
    return hits / (k * len(truth))
