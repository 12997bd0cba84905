from dataclasses import replace
from pathlib import Path

import pytest

from msbench.config import BOUNDS, PROFILES, ConfigError, load_user_config, make_params, validate
from msbench.run.sweep import bucket_bytes_per_vector


def test_profiles_carry_the_published_setting():
    paper = make_params("paper")
    assert (paper.n_vectors, paper.dim, paper.batch_size) == (1_000_000, 768, 5_000)
    assert (paper.index_type, paper.hnsw_m, paper.hnsw_ef_construction) == ("HNSW", 16, 200)
    assert set(PROFILES) == {"smoke", "standard", "small", "paper"}
    standard = make_params("standard")   # the default study: realistic search, store-bound phases
    assert (standard.dataset, standard.dim, standard.milvus_pacing) == ("clustered", 768, "fine")
    assert 190e6 < standard.n_vectors * bucket_bytes_per_vector(standard) < 210e6   # about 200 MB in the bucket


def test_overrides_are_coerced_from_strings():
    p = make_params("smoke", {"n_vectors": "1234", "concurrency": "1,4", "drop_page_cache": "false"})
    assert p.n_vectors == 1234 and p.concurrency == (1, 4) and p.drop_page_cache is False


@pytest.mark.parametrize("profile, overrides, words", [
    ("huge", {}, ["unknown profile 'huge'", "smoke", "paper"]),
    ("smoke", {"nvectors": 5}, ["unknown parameter 'nvectors'", "n_vectors"]),
    ("smoke", {"n_vectors": "many"}, ["n_vectors must be an integer, got 'many'"]),
    ("smoke", {"n_vectors": 0}, ["n_vectors must be at least 1, got 0"]),
    ("smoke", {"n_vectors": 2.5}, ["n_vectors must be an integer, got 2.5"]),
    ("smoke", {"n_vectors": True}, ["n_vectors must be an integer, got True"]),
    ("smoke", {"throughput_seconds": "nan"}, ["throughput_seconds must be a finite number, got nan"]),
    ("smoke", {"throughput_seconds": "inf"}, ["throughput_seconds must be a finite number, got inf"]),
    ("smoke", {"warp_seconds": float("-inf")}, ["warp_seconds must be a finite number, got -inf"]),
    ("smoke", {"throughput_seconds": "0"}, ["throughput_seconds must be from 0.1 to 3600, got 0.0"]),
    ("smoke", {"warp_seconds": 601}, ["warp_seconds must be from 0 to 600"]),
    ("smoke", {"seed": -1}, ["seed must be from 0"]),
    ("smoke", {"hnsw_m": 1}, ["hnsw_m must be from 2 to 2048, got 1"]),
    ("smoke", {"ivf_nprobe": 70_000}, ["ivf_nprobe must be from 1 to 65536"]),
    ("smoke", {"top_k": 20_000}, ["top_k must be from 1 to 16384"]),
    ("smoke", {"dim": 40_000}, ["dim must be from 1 to 32768"]),
    ("smoke", {"n_vectors": 5, "top_k": 10}, ["top_k (10) must be at most n_vectors (5)"]),
    ("smoke", {"index_type": "IVF_FLAT", "ivf_nlist": 6000}, ["ivf_nlist (6000) must be at most n_vectors (5000)"]),
    ("smoke", {"drop_page_cache": "maybe"}, ["drop_page_cache must be true or false, got 'maybe'"]),
    ("smoke", {"drop_page_cache": 2}, ["drop_page_cache must be true or false, got 2"]),
    ("smoke", {"metric_type": 3}, ["metric_type must be a string, got 3"]),
    ("smoke", {"concurrency": "1,1,1"}, ["concurrency levels must differ, got 1,1,1"]),
    ("smoke", {"concurrency": "1,0"}, ["concurrency must be a list of distinct positive integers", "(1, 0)"]),
    ("smoke", {"concurrency": 4}, ["concurrency must be a list of distinct positive integers"]),
    ("smoke", {"index_type": "DISKANN"}, ["DISKANN", "HNSW", "IVF_FLAT"]),
    ("smoke", {"warmup_queries": 500}, ["warmup_queries (500) must be smaller than n_queries"]),
    ("smoke", {"dataset": "/nope/x.npy"}, ["dataset file not found"]),
    ("smoke", {"dataset": "x.csv"}, [".npy, .fvecs or .hdf5"]),
    ("smoke", {"concurrency": "1,zero"}, ["concurrency must be a list of distinct positive integers"]),
])
def test_bad_input_names_what_is_wrong_and_what_is_valid(profile, overrides, words):
    with pytest.raises(ConfigError) as err:
        make_params(profile, overrides)
    for word in words:
        assert word in str(err.value)


def test_every_number_has_bounds_and_notebook_values_are_taken_as_they_are():
    numbers = {name for name, value in make_params("smoke").as_dict().items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    assert numbers == set(BOUNDS)   # a new numeric parameter needs its range here
    p = make_params("smoke", {"n_vectors": 2000.0, "throughput_seconds": 2, "concurrency": [1, 4],
                              "dataset": Path("random")})
    assert (p.n_vectors, p.throughput_seconds, p.concurrency, p.dataset) == (2000, 2.0, (1, 4), "random")
    with pytest.raises(ConfigError, match="throughput_seconds must be a finite number, got nan"):
        validate(replace(p, throughput_seconds=float("nan")))   # a Params made directly is checked too


def test_index_and_search_params():
    hnsw = make_params("smoke", {"top_k": 100, "search_ef": 10})
    assert hnsw.index_params()["params"] == {"M": 16, "efConstruction": 200}
    assert hnsw.search_params()["params"] == {"ef": 100}  # ef never below k
    ivf = make_params("smoke", {"index_type": "IVF_FLAT", "ivf_nlist": 64})
    assert ivf.index_params()["params"] == {"nlist": 64} and "nprobe" in ivf.search_params()["params"]


def test_user_config_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "msbench.yaml"
    cfg.write_text("backend: {}\n")
    with pytest.raises(ConfigError, match="unknown keys.*backends, deployments, binaries, work_dir"):
        load_user_config(cfg)
    with pytest.raises(ConfigError, match="config file not found"):
        load_user_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, message", [
    ("binaries: {weed: 5}\n", "'binaries' must map names .* to paths, got {'weed': 5}"),
    ("work_dir: [a]\n", "'work_dir' must be a directory path, got \\['a'\\]"),
    ("backends: {x: 5}\n", "'backends' must map backend names to mappings of fields"),
])
def test_user_config_types_are_checked(tmp_path, text, message):
    cfg = tmp_path / "msbench.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_user_config(cfg)
