"""What every provider shares: the stack contract, the S3 client factory and the template filler."""
from types import SimpleNamespace
from typing import Protocol

import pytest

from msbench.backends import BackendDef, fill_template
from msbench.config import ConfigError
from msbench.providers import ServerProcess, Stack, StoreEndpoint
from msbench.providers.deployment import DeploymentStack, DeploymentStore
from msbench.providers.docker import ContainerProcess, DockerStack, DockerStore
from msbench.providers.native import NativeStack
from msbench.providers.process import ManagedProcess
from msbench.providers.s3 import s3_client
from msbench.providers.stores import ObjectStore, ProcessStore


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


def test_one_template_filler_for_strings_lists_and_mappings():
    values = {"port_s3": "9000", "data_dir": "/d"}
    assert fill_template("--address 127.0.0.1:${port_s3}", values, "x") == "--address 127.0.0.1:9000"
    assert fill_template({"cmd": ["serve", "${data_dir}", 3], "env": {"A": "$port_s3"}, "n": None}, values, "x") == \
        {"cmd": ["serve", "/d", 3], "env": {"A": "9000"}, "n": None}
    assert fill_template("$$HOME", values, "x") == "$HOME"
    with pytest.raises(ConfigError, match=r"^docker definition of store: bad template placeholder 'nope' in "
                                          r"'\$\{nope\}'; valid: \$\{data_dir\}, \$\{port_s3\}$"):
        fill_template(["${nope}"], values, "docker definition of store")


def test_a_native_store_fills_through_the_same_filler(tmp_path):
    backend = BackendDef(name="x", launcher="process", command=("serve", "${nope}"))
    store = ProcessStore(backend, tmp_path, tmp_path / "logs", binary="/bin/true")
    assert store._fill("${binary} ${port_s3}") == f"/bin/true {store.port}"
    with pytest.raises(ConfigError, match=r"^backend 'x': bad template placeholder 'nope'.*\$\{access_key\}"):
        store._fill("${nope}")


def _members(protocol: type) -> set[str]:
    """What a Protocol asks for: its annotated attributes, methods and properties."""
    names = set()
    for klass in protocol.__mro__:
        if klass is object or not getattr(klass, "_is_protocol", False) or klass is Protocol:
            continue
        names |= set(getattr(klass, "__annotations__", {}))
        names |= {n for n in vars(klass) if not n.startswith("_") or n in ("__enter__", "__exit__")}
    return names


def _lacks(cls: type, protocol: type) -> set[str]:
    fields = getattr(cls, "__dataclass_fields__", {})
    return {name for name in _members(protocol) if not hasattr(cls, name) and name not in fields}


@pytest.mark.parametrize("protocol, implementations", [
    (Stack, (NativeStack, DockerStack, DeploymentStack)),
    (StoreEndpoint, (ObjectStore, DockerStore, DeploymentStore)),
    (ServerProcess, (ManagedProcess, ContainerProcess)),
])
def test_every_provider_keeps_the_stack_contract(protocol, implementations):
    assert {"uri", "s3", "restart", "data_paths", "store", "bucket", "collection", "listing"} <= _members(Stack)
    for cls in implementations:
        assert not _lacks(cls, protocol), f"{cls.__name__} lacks {sorted(_lacks(cls, protocol))} of {protocol.__name__}"
