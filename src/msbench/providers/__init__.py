"""Providers: a backend definition in, a running stack (Milvus + one object store) out."""
from __future__ import annotations


class Stack:
    """What every provider's stack shares: entering provisions, leaving tears down, always.

    Subclasses implement ``start()`` and ``close()`` (which must cope with a half-started stack)."""

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

    def image_digests(self) -> dict[str, str]:
        """Container images and their digests, for the record; none for a native stack."""
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
