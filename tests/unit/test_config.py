import pytest

from msbench.config import PROFILES, ConfigError, load_user_config, make_params


def test_profiles_carry_the_published_setting():
    paper = make_params("paper")
    assert (paper.n_vectors, paper.dim, paper.batch_size) == (1_000_000, 768, 5_000)
    assert (paper.index_type, paper.hnsw_m, paper.hnsw_ef_construction) == ("HNSW", 16, 200)
    assert set(PROFILES) == {"smoke", "standard", "small", "paper"}
    standard = make_params("standard")   # the default study: realistic search, store-bound phases
    assert (standard.dataset, standard.n_vectors, standard.dim) == ("clustered", 50_000, 128)


def test_overrides_are_coerced_from_strings():
    p = make_params("smoke", {"n_vectors": "1234", "concurrency": "1,4", "drop_page_cache": "false"})
    assert p.n_vectors == 1234 and p.concurrency == (1, 4) and p.drop_page_cache is False


@pytest.mark.parametrize("profile, overrides, words", [
    ("huge", {}, ["unknown profile 'huge'", "smoke", "paper"]),
    ("smoke", {"nvectors": 5}, ["unknown parameter 'nvectors'", "n_vectors"]),
    ("smoke", {"n_vectors": "many"}, ["n_vectors must be int"]),
    ("smoke", {"n_vectors": 0}, ["n_vectors must be a positive integer"]),
    ("smoke", {"index_type": "DISKANN"}, ["DISKANN", "HNSW", "IVF_FLAT"]),
    ("smoke", {"warmup_queries": 500}, ["warmup_queries (500) must be smaller than n_queries"]),
    ("smoke", {"dataset": "/nope/x.npy"}, ["dataset file not found"]),
    ("smoke", {"dataset": "x.csv"}, [".npy, .fvecs or .hdf5"]),
    ("smoke", {"concurrency": "1,zero"}, ["concurrency must be a list of positive integers"]),
])
def test_bad_input_names_what_is_wrong_and_what_is_valid(profile, overrides, words):
    with pytest.raises(ConfigError) as err:
        make_params(profile, overrides)
    for word in words:
        assert word in str(err.value)


def test_index_and_search_params():
    hnsw = make_params("smoke", {"top_k": 100, "search_ef": 10})
    assert hnsw.index_params()["params"] == {"M": 16, "efConstruction": 200}
    assert hnsw.search_params()["params"] == {"ef": 100}  # ef never below k
    ivf = make_params("smoke", {"index_type": "IVF_FLAT", "ivf_nlist": 64})
    assert ivf.index_params()["params"] == {"nlist": 64} and "nprobe" in ivf.search_params()["params"]


def test_user_config_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "msbench.yaml"
    cfg.write_text("backend: {}\n")
    with pytest.raises(ConfigError, match="unknown keys.*backends, binaries, work_dir"):
        load_user_config(cfg)
    with pytest.raises(ConfigError, match="config file not found"):
        load_user_config(tmp_path / "missing.yaml")
