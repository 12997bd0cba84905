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

    def handicap_facts(self) -> dict[str, float]:
        """The handicap the store ran under (see providers.handicap), for the record; none by default."""
        return {}
