import h5py
import numpy as np
import pytest

from msbench.config import ConfigError, make_params
from msbench.workload import exact_neighbors, load_dataset, read_fvecs, recall_at_k


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MSBENCH_CACHE", str(tmp_path / "cache"))


def _brute(train, queries, k):
    d = ((queries[:, None, :].astype(np.float64) - train[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_exact_neighbors_match_brute_force():
    rng = np.random.default_rng(0)
    train, queries = rng.random((500, 8), dtype=np.float32), rng.random((37, 8), dtype=np.float32)
    assert (exact_neighbors(train, queries, 5, "L2", chunk=10) == _brute(train, queries, 5)).all()
    ip = exact_neighbors(train, queries, 3, "IP")
    assert (ip[:, 0] == np.argmax(queries @ train.T, axis=1)).all()


def test_random_dataset_is_seeded_held_out_and_cached(tmp_path):
    p = make_params("smoke", {"n_vectors": 300, "n_queries": 30, "warmup_queries": 5})
    a, b = load_dataset(p), load_dataset(p)
    assert a.train.dtype == np.float32 and a.train.shape == (300, 32) and a.queries.shape == (30, 32)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.neighbors, b.neighbors)
    assert not any((a.train == q).all(axis=1).any() for q in a.queries)  # queries never inserted
    assert len(list((tmp_path / "cache" / "groundtruth").glob("*.npy"))) == 1
    assert (a.neighbors == _brute(a.train, a.queries, 10)).all()


def test_npy_fvecs_and_hdf5_files(tmp_path):
    vectors = np.random.default_rng(1).random((120, 6), dtype=np.float32)
    np.save(tmp_path / "v.npy", vectors)
    with open(tmp_path / "v.fvecs", "wb") as fh:
        for row in vectors:
            np.int32(6).tofile(fh)
            row.tofile(fh)
    assert np.array_equal(read_fvecs(tmp_path / "v.fvecs"), vectors)
    for name in ("v.npy", "v.fvecs"):
        p = make_params("smoke", {"dataset": str(tmp_path / name), "n_vectors": 100, "n_queries": 20,
                                  "warmup_queries": 2})
        d = load_dataset(p)
        assert np.array_equal(d.train, vectors[:100]) and np.array_equal(d.queries, vectors[100:])
    with h5py.File(tmp_path / "ann.hdf5", "w") as f:
        f["train"], f["test"] = vectors[:100], vectors[100:]
        f["neighbors"] = _brute(vectors[:100], vectors[100:], 10)
    p = make_params("smoke", {"dataset": str(tmp_path / "ann.hdf5"), "n_vectors": 100, "n_queries": 20,
                              "warmup_queries": 2})
    assert (load_dataset(p).neighbors == _brute(vectors[:100], vectors[100:], 10)).all()
    too_big = make_params("smoke", {"dataset": str(tmp_path / "v.npy"), "n_vectors": 110, "n_queries": 20,
                                    "warmup_queries": 2})
    with pytest.raises(ConfigError, match="held out"):
        load_dataset(too_big)


def test_recall():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k([[1, 2, 3], [4, 9, 8]], truth, 3) == pytest.approx(4 / 6)
