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
