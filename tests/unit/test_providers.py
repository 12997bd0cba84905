"""What every provider shares: the S3 client factory."""
from types import SimpleNamespace

from msbench.providers.s3 import s3_client


def test_one_s3_client_for_every_store():
    store = SimpleNamespace(endpoint_url="http://127.0.0.1:9000", access_key="AK", secret_key="SK")
    client = s3_client(store)
    assert client.meta.endpoint_url == "http://127.0.0.1:9000" and client.meta.region_name == "us-east-1"
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.retries == {"total_max_attempts": 6, "mode": "standard"}   # 5 retries
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (10, 120)
    creds = client._request_signer._credentials
    assert (creds.access_key, creds.secret_key) == ("AK", "SK")
    assert s3_client(store, region="garage").meta.region_name == "garage"
