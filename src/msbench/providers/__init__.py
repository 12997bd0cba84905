"""Providers: a backend definition in, a running stack (Milvus + one object store) out.

``Stack`` is the contract a trial and its phases hold a provider's stack to (``catalog.PROVIDERS``
makes one, ``phases.TrialState`` carries it); ``StackBase`` is what the native and the Docker
stacks share in code. The contracts are ``typing.Protocol`` classes: a stack satisfies them by
its shape, and a test checks that both providers' stacks do.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from msbench.backends import BackendDef
from msbench.config import Params, UserConfig

COLLECTION = "msbench"   # the trial's collection on a stack of its own (a deployment names one per trial)
PROBE_TIMEOUT_S = 5.0    # a health check that takes longer counts as no answer


@dataclass(frozen=True)
class Watched:
    """A server the watchdog (measure.watchdog) keeps an eye on while a phase runs."""

    name: str                                   # e.g. "store minio (PID 1234)"
    exit_status: Callable[[], str | None]       # None while it runs (or after we stopped it), else how it ended
    answers: Callable[[], bool] | None = None   # its health check, if it has one
    pids: tuple[int, ...] = ()                  # for the diagnosis of a silence


class S3Endpoint(Protocol):
    """Where a store answers S3 and with which keys (a stack's store, a warp target)."""

    access_key: str
    secret_key: str

    @property
    def endpoint_url(self) -> str: ...


class StoreEndpoint(S3Endpoint, Protocol):
    """A stack's store as the phases see it: its address (for warp, the capture and the TCP
    counters) and whether a cold restart restarts it (an external endpoint is not)."""

    host: str
    port: int
    restartable: bool


class ServerProcess(Protocol):
    """A server's main process as seen from the host (a local process, or a container's)."""

    @property
    def pid(self) -> int | None: ...
    def running(self) -> bool: ...


class Stack(Protocol):
    """What a trial and its phases need of a provider's stack. Entering provisions it, leaving
    tears it down (also after a failure); ``store`` is set once it is provisioned."""

    provider: str
    bucket: str               # the bucket Milvus persists into
    store: StoreEndpoint | None
    collection: str           # the name of the trial's collection
    collection_description: str   # what it is created with (a deployment's marks it as the study's)

    def __enter__(self) -> Stack: ...
    def __exit__(self, *exc: object) -> None: ...

    @property
    def uri(self) -> str:
        """Milvus's gRPC address, for pymilvus."""
        ...

    def milvus_token(self) -> str:
        """Milvus's token for pymilvus ("" when it has no authentication)."""
        ...

    def secrets(self) -> list[str]:
        """Every credential the stack holds, for redaction from logs and errors."""
        ...

    def s3(self) -> Any:
        """A boto3 S3 client for the store (providers.s3.s3_client)."""
        ...

    def listing(self) -> dict[str, int]:
        """The trial's objects in the bucket, key -> size: what its footprint is made of."""
        ...

    def skipped_phases(self) -> dict[str, str]:
        """Phases that do not run on this stack, and why (recorded with the trial, never faked)."""
        ...

    def restart(self) -> dict[str, object]:
        """The cold restart: Milvus and the store restarted, the page cache dropped; says which
        steps really happened (milvus_restarted, store_restarted, page_cache_dropped, ...)."""
        ...

    def data_paths(self) -> list[Path]:
        """Where the store's bytes live on this host (the footprint on disk, a full disk's clue)."""
        ...

    def processes(self) -> dict[str, list[ServerProcess]]:
        """Running servers by role ("milvus", "store"), for the per-phase resource use."""
        ...

    def watched(self) -> list[Watched]:
        """The servers the watchdog keeps an eye on while a phase runs, the store's first."""
        ...

    def capture_target(self) -> tuple[str, int] | str:
        """Where Milvus's S3 traffic to the store can be captured, (interface, port), or why not."""
        ...

    def handicap_facts(self) -> dict[str, float]:
        """The handicap the store ran under (providers.handicap), for the record."""
        ...

    def ran(self) -> dict[str, object]:
        """What ran in this trial beyond the manifest's plan (containers: their images and digests)."""
        ...


@dataclass
class StackBase:
    """What every provider's stack is made of and shares: entering provisions, leaving tears down,
    always. Subclasses implement ``start()`` and ``close()`` (which must cope with a half-started stack)."""

    backend: BackendDef
    params: Params
    log_dir: Path                    # the trial's server logs
    user: UserConfig | None = None
    bucket: str = "milvus-bucket"    # where Milvus persists (an external store gets one of its own)
    collection: str = COLLECTION
    collection_description: str = ""

    def start(self) -> object:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ran(self) -> dict[str, object]:
        """What ran beyond the manifest's plan: nothing for processes (the manifest has their hashes)."""
        return {}

    def milvus_token(self) -> str:
        """The Milvus msbench starts has no authentication."""
        return ""

    def secrets(self) -> list[str]:
        store = getattr(self, "store", None)
        return [getattr(store, "access_key", ""), getattr(store, "secret_key", ""), self.milvus_token()]

    def listing(self) -> dict[str, int]:
        """Every object in the bucket: the stack's own, so all of it is the trial's."""
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}

    def skipped_phases(self) -> dict[str, str]:
        """A stack of its own runs every phase."""
        return {}

    def capture_target(self) -> tuple[str, int] | str:
        """Where Milvus's S3 traffic to the store can be captured, (interface, port), or why not."""
        store = getattr(self, "store", None)
        if store is None or store.host not in ("127.0.0.1", "localhost"):
            where = store.host if store is not None else "nowhere yet"
            return f"the store is at {where}, not on this host's loopback: its traffic is not visible here"
        return "lo", store.port

    def watched(self) -> list:
        """The servers the watchdog keeps an eye on while a phase runs (``watchdog.Watched``), the
        store's first: its death is usually the cause of Milvus's."""
        return []

    def handicap_facts(self) -> dict[str, float]:
        """The handicap the store ran under (see providers.handicap), for the record; none by default."""
        return {}
