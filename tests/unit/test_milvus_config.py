from msbench.providers.milvus_native import MilvusNative, S3Target, render_config


def test_render_config_fills_slots_and_applies_overrides():
    config = render_config({"proxy_port": 12345, "etcd_data_dir": "/x/etcd"},
                           {"common.storageType": "minio", "queryNode.ip": "127.0.0.1", "a.b.c": 1})
    assert config["proxy"]["port"] == 12345 and config["etcd"]["data"]["dir"] == "/x/etcd"
    assert config["common"]["storageType"] == "minio" and config["queryNode"]["ip"] == "127.0.0.1"
    assert config["rootCoord"]["port"] == 53100  # the template default where nothing is given
    assert config["a"]["b"]["c"] == 1


def test_written_config_points_at_the_bucket_and_keeps_no_secret(tmp_path):
    s3 = S3Target("127.0.0.1", 9000, "AKIDSECRET", "SKSECRET", "bucket-x")
    milvus = MilvusNative(tmp_path / "m", tmp_path / "logs", s3, session_ttl_s=10)
    conf_dir = milvus._write_config()
    text = (conf_dir / "milvus.yaml").read_text()
    assert "AKIDSECRET" not in text and "SKSECRET" not in text  # keys reach Milvus through its environment
    import yaml

    config = yaml.safe_load(text)
    assert config["minio"]["bucketName"] == "bucket-x" and config["minio"]["port"] == 9000
    assert config["common"]["session"]["ttl"] == 10 and config["common"]["storageType"] == "minio"
    for role in ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode"):
        assert config[role]["ip"] == "127.0.0.1"
    etcd = yaml.safe_load((conf_dir / "embedEtcd.yaml").read_text())
    assert etcd["listen-client-urls"].startswith("http://127.0.0.1:")
    assert (conf_dir / "glog.conf").exists()


def _get(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config[key]
    return config


def test_native_config_sets_the_short_gc_and_extra_config_still_wins(tmp_path):
    import yaml

    from msbench.providers.milvus_native import GC_CONFIG

    s3 = S3Target("127.0.0.1", 9000, "AK", "SK", "bucket-x")
    milvus = MilvusNative(tmp_path / "m", tmp_path / "logs", s3, extra_config={"dataCoord.gc.interval": 7})
    config = yaml.safe_load((milvus._write_config() / "milvus.yaml").read_text())
    assert _get(config, "dataCoord.gc.interval") == 7
    for key, value in GC_CONFIG.items():
        if key != "dataCoord.gc.interval":
            assert _get(config, key) == value
    assert _get(config, "dataCoord.gc.missingTolerance") >= 60   # in-flight uploads look like orphans


def test_docker_milvus_config_applies_the_same_gc_settings():
    import itertools

    import yaml

    from msbench.backends import load_backends
    from msbench.config import make_params
    from msbench.providers import docker as dk
    from msbench.providers.milvus_native import GC_CONFIG

    ports = itertools.count(42000)
    backend = load_backends()["seaweedfs"]
    for use_local, path in ((None, "/milvus/configs/user.yaml"),
                            ({"milvus": True, "etcd": True, "store": True}, "/milvus/configs/milvus.yaml")):
        ident = dk.StackIdentity("abcd1234", run="run-x", trial=1, backend=backend.name)
        plan = dk.plan_stack(backend, make_params("smoke", {"milvus_pacing": "default"}), ident, host_network=True,
                             use_local=use_local, port_source=lambda: next(ports), credentials=("msbaccess", "s" * 40))
        config = yaml.safe_load(plan.files["milvus"][path])
        assert {key: _get(config, key) for key in GC_CONFIG} == GC_CONFIG


def test_fine_pacing_and_mmap_reach_the_config_file_and_are_read_back_as_milvus_resolves_them(tmp_path, monkeypatch):
    """What a trial records (NativeStack.ran) is what Milvus runs with: the file's values, an environment
    variable of the same normalised name above them, the 2.3.5 default where neither sets a key."""
    import yaml

    from msbench.config import make_params
    from msbench.providers.milvus_native import (DEFAULTS_2_3_5, FINE_PACING, MMAP_KEY, milvus_settings)

    monkeypatch.delenv("QUERYCOORD_DISTPULLINTERVAL", raising=False)
    s3 = S3Target("127.0.0.1", 9000, "AK", "SK", "bucket-x")
    default = MilvusNative(tmp_path / "d", tmp_path / "logs", s3,
                           extra_config=milvus_settings(make_params("smoke", {"milvus_pacing": "default"}),
                                                       "/unused"))
    default._write_config()
    assert default.settings() == DEFAULTS_2_3_5
    fine = make_params("smoke", {"milvus_pacing": "fine", "milvus_mmap": True})
    milvus = MilvusNative(tmp_path / "f", tmp_path / "logs", s3, extra_config=milvus_settings(fine, "/m/mmap"))
    config = yaml.safe_load((milvus._write_config() / "milvus.yaml").read_text())
    assert {key: _get(config, key) for key in FINE_PACING} == FINE_PACING
    assert _get(config, MMAP_KEY) == "/m/mmap"
    assert milvus.settings() == {**FINE_PACING, MMAP_KEY: "/m/mmap"}
    monkeypatch.setenv("QUERYCOORD_DISTPULLINTERVAL", "250")   # inherited by Milvus, above its file
    assert milvus.settings()["queryCoord.distPullInterval"] == 250


def test_docker_milvus_gets_the_same_pacing_and_records_it():
    import itertools

    import yaml

    from msbench.backends import load_backends
    from msbench.config import make_params
    from msbench.providers import docker as dk
    from msbench.providers.docker.specs import milvus_settings_ran
    from msbench.providers.milvus_native import FINE_PACING, MMAP_KEY

    ports = itertools.count(43000)
    backend = load_backends()["seaweedfs"]
    params = make_params("smoke", {"milvus_pacing": "fine", "milvus_mmap": True})
    for use_local, path, version in ((None, "/milvus/configs/user.yaml", "2.6.7"),
                                     ({"milvus": True, "etcd": True, "store": True}, "/milvus/configs/milvus.yaml",
                                      "2.3.5")):
        ident = dk.StackIdentity("abcd1234", run="run-x", trial=1, backend=backend.name)
        plan = dk.plan_stack(backend, params, ident, host_network=True, use_local=use_local,
                             port_source=lambda: next(ports), credentials=("msbaccess", "s" * 40))
        config = yaml.safe_load(plan.files["milvus"][path])
        assert {key: _get(config, key) for key in FINE_PACING} == FINE_PACING, version
        assert milvus_settings_ran(plan) == {**FINE_PACING, MMAP_KEY: "/var/lib/milvus/mmap"}, version
    plan = dk.plan_stack(backend, make_params("smoke", {"milvus_pacing": "default"}), ident, host_network=True,
                         use_local=None, port_source=lambda: next(ports), credentials=("msbaccess", "s" * 40))
    assert set(milvus_settings_ran(plan).values()) == {"Milvus 2.6.7's default"}   # nothing set, version unknown here
