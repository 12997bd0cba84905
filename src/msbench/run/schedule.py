"""Trial order: randomized multiple interleaved trials (Abedi and Brecht, ICPE 2017).

Every round runs each backend once, in a fresh random order, so slow drift of the machine
(thermal, page cache, disk wear) spreads over all backends instead of favouring one. A run
that adds rounds as it goes (trials until precise, see stopping.py) appends them with
``next_round``: the order is then the same as if all its rounds had been planned at once.
"""
from __future__ import annotations

import numpy as np

from msbench.results import PlannedTrial


def plan(backends: list[str], trials: int, seed: int) -> list[PlannedTrial]:
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    rng = np.random.default_rng(seed)
    order = []
    for rnd in range(trials):
        for name in rng.permutation(backends):
            order.append(PlannedTrial(len(order), rnd + 1, str(name), rnd + 1))
    return order


def next_round(backends: list[str], order: list[PlannedTrial], seed: int) -> list[PlannedTrial]:
    """The round after ``order`` (a plan of whole rounds of ``backends`` from ``seed``): new seq and
    trial numbers, the backends in the order a plan of one more round would give them."""
    rounds = max((t.round for t in order), default=0)
    return plan(backends, rounds + 1, seed)[len(order):]

