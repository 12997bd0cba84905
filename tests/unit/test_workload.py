import hashlib
from dataclasses import replace

import h5py
import numpy as np
import pytest

from msbench.config import ConfigError, make_params
from msbench.run.workload import exact_neighbors, load_dataset, read_fvecs, recall_at_k


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


def _params(path, **extra):
    return make_params("smoke", {"dataset": str(path), "n_vectors": 100, "n_queries": 20, "warmup_queries": 2,
                                 **extra})


def _ann(path, train, test, neighbors=None, distance=None):
    with h5py.File(path, "w") as f:
        f["train"], f["test"] = train, test
        if neighbors is not None:
            f["neighbors"] = neighbors
        if distance:
            f.attrs["distance"] = distance
    return path


@pytest.mark.parametrize("name, content, message", [
    ("bad.hdf5", b"not hdf5 at all", r"bad.hdf5 is not a readable HDF5 file \(.*\); valid: an ann-benchmarks file"),
    ("bad.npy", b"not an array", r"bad.npy is not a .npy file \(no NumPy header\); valid: a 2-d float array"),
    ("bad.fvecs", b"\x03\x00\x00\x00abc", r"bad.fvecs is not an .fvecs file"),
])
def test_garbage_files_are_refused_by_name(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_dataset(_params(tmp_path / name))


def test_npy_contents_are_checked(tmp_path):
    vectors = np.random.default_rng(2).random((120, 6), dtype=np.float32)
    vectors[7, 3] = np.nan
    np.save(tmp_path / "nan.npy", vectors)
    with pytest.raises(ConfigError, match=r"nan.npy: the array has 1 vectors with NaN or infinite .*first: row 7"):
        load_dataset(_params(tmp_path / "nan.npy"))
    np.save(tmp_path / "huge.npy", np.full((120, 6), 1e300))   # finite as float64, infinite as float32
    with pytest.raises(ConfigError, match="NaN or infinite values as float32"):
        load_dataset(_params(tmp_path / "huge.npy"))
    np.save(tmp_path / "words.npy", np.array([["a", "b"]] * 120))
    with pytest.raises(ConfigError, match=r"must be a non-empty 2-d array of numbers .* got shape \(120, 2\) of <U1"):
        load_dataset(_params(tmp_path / "words.npy"))
    np.save(tmp_path / "flat.npy", np.zeros(500, dtype=np.float32))
    with pytest.raises(ConfigError, match=r"got shape \(500,\)"):
        load_dataset(_params(tmp_path / "flat.npy"))


def test_the_data_says_what_was_used_not_the_profile(tmp_path):
    vectors = np.random.default_rng(3).random((120, 64), dtype=np.float32)
    np.save(tmp_path / "wide.npy", vectors)
    p = _params(tmp_path / "wide.npy")
    assert p.dim == 32   # the profile's
    facts = load_dataset(p).facts()
    assert (facts["dim"], facts["n_vectors"], facts["n_queries"], facts["top_k"]) == (64, 100, 20, 10)
    assert facts["sha256"] == hashlib.sha256((tmp_path / "wide.npy").read_bytes()).hexdigest()
    assert facts["name"] == "wide" and str(tmp_path / "wide.npy") in facts["source"]
    assert "exact top-10 under L2" in facts["ground_truth"]
    synthetic = make_params("smoke", {"n_vectors": 200, "n_queries": 10, "warmup_queries": 1})
    a, b = load_dataset(synthetic).facts(), load_dataset(replace(synthetic, seed=7)).facts()
    assert len(a["sha256"]) == 64 and a["sha256"] != b["sha256"]   # the generated bytes are hashed
    assert a["sha256"] == load_dataset(synthetic).facts()["sha256"]


def test_hdf5_smaller_than_asked_is_refused(tmp_path):
    vectors = np.random.default_rng(4).random((120, 6), dtype=np.float32)
    path = _ann(tmp_path / "small.hdf5", vectors[:100], vectors[100:])
    with pytest.raises(ConfigError, match=r"'train' has 100 vectors, n_vectors=150 asked for; set n_vectors to at most"):
        load_dataset(_params(path, n_vectors=150))
    with pytest.raises(ConfigError, match=r"'test' has 20 vectors, n_queries=30 asked for"):
        load_dataset(_params(path, n_queries=30))
    nan = vectors.copy()
    nan[110, 0] = np.inf
    with pytest.raises(ConfigError, match="'test' has 1 vectors with NaN or infinite"):
        load_dataset(_params(_ann(tmp_path / "inf.hdf5", nan[:100], nan[100:])))
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f["train"] = vectors
    with pytest.raises(ConfigError, match=r"needs datasets 'train' and 'test'.*it has \['train'\]"):
        load_dataset(_params(tmp_path / "empty.hdf5"))


def test_a_files_neighbours_must_agree_with_metric_type(tmp_path):
    rng = np.random.default_rng(5)
    train, test = rng.standard_normal((100, 6), dtype=np.float32), rng.standard_normal((20, 6), dtype=np.float32)
    by_ip = exact_neighbors(train, test, 10, "IP")
    path = _ann(tmp_path / "ip.hdf5", train, test, by_ip, distance="dot")
    with pytest.raises(ConfigError, match=r"not the exact top-10 under metric_type=L2 \(the file says distance=dot\)"):
        load_dataset(_params(path))
    d = load_dataset(_params(path, metric_type="IP"))
    assert (d.neighbors == by_ip).all() and "the file's own 'neighbors'" in d.facts()["ground_truth"]
    outside = _ann(tmp_path / "out.hdf5", train, test, by_ip + 50)
    with pytest.raises(ConfigError, match=r"'neighbors' holds ids from \d+ to \d+, outside the 100 train vectors"):
        load_dataset(_params(outside, metric_type="IP"))
