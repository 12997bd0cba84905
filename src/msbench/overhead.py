"""Harness overhead: the same inserts and searches through our phase code (with its resource
monitor) and through a bare pymilvus loop, on one stack, interleaved in random order.

If our code added more than noise, every backend's figures would carry it; the target is
under 2%. Each repetition inserts into a fresh collection (so both sides do identical work)
and searches the same loaded collection with the same held-out queries.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from pymilvus import Collection, utility

from msbench import stats
from msbench.backends import BackendDef
from msbench.config import Params
from msbench.phases import VECTOR_FIELD, TrialState, flush, index_build, insert, load_first, search
from msbench.providers.native import NativeStack
from msbench.resources import PhaseMonitor
from msbench.workload import Dataset


def _ours(state: TrialState, phase) -> float:
    began = time.perf_counter()
    with PhaseMonitor(state.stack.processes):
        phase(state)
    return time.perf_counter() - began


def _bare_insert(state: TrialState, name: str) -> float:
    """What a user's own loop does: create, then insert the same numpy batches."""
    began = time.perf_counter()
    collection = Collection(name, state.collection.schema, using=state.alias)
    ids, vectors, size = state.data.ids, state.data.train, state.params.batch_size
    for start in range(0, len(vectors), size):
        collection.insert([ids[start:start + size], vectors[start:start + size].tolist()])
    return time.perf_counter() - began


def _bare_search(state: TrialState) -> float:
    params, limit = state.params.search_params(), state.params.top_k
    began = time.perf_counter()
    for query in state.data.queries:
        state.collection.search([query.tolist()], VECTOR_FIELD, params, limit=limit)
    return time.perf_counter() - began


def measure(backend: BackendDef, params: Params, data: Dataset, log_dir: Path, repetitions: int = 10,
            seed: int = 0) -> pd.DataFrame:
    """Seconds per repetition for (work, way) with way in {ours, bare}; order shuffled per repetition."""
    rng = np.random.default_rng(seed)
    rows = []
    with NativeStack(backend, params, log_dir) as stack:
        main = TrialState(stack, params, data)
        main.connect()
        try:
            for phase in (insert, flush, index_build, load_first):
                phase(main)
            for rep in range(repetitions):
                for way in rng.permutation(["ours", "bare"]):
                    name = f"overhead_{way}_{rep}"
                    if way == "ours":
                        mine = TrialState(stack, params, data, alias=main.alias, name=name)
                        seconds = _ours(mine, insert)
                    else:
                        seconds = _bare_insert(main, name)
                    rows.append({"repetition": rep, "work": "insert", "way": way, "seconds": seconds})
                    utility.drop_collection(name, using=main.alias)
                for way in rng.permutation(["ours", "bare"]):
                    seconds = _ours(main, search) if way == "ours" else _bare_search(main)
                    rows.append({"repetition": rep, "work": "search", "way": way, "seconds": seconds})
        finally:
            main.disconnect()
    return pd.DataFrame(rows)


def summary(raw: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Overhead = mean(ours) / mean(bare) - 1, with a bootstrap CI of the ratio."""
    out = []
    for work, group in raw.groupby("work"):
        tidy = group.rename(columns={"way": "backend", "seconds": "value"}).assign(metric=f"{work}_s", unit="s")
        cmp = stats.compare(tidy, baseline="bare", seed=seed).iloc[0]
        out.append({"work": work, "n": int(cmp.n_backend), "bare_mean_s": cmp.mean_baseline,
                    "ours_mean_s": cmp.mean_backend, "overhead_pct": 100 * (cmp.ratio_mean - 1),
                    "ci_low_pct": 100 * (cmp.ratio_mean_low - 1), "ci_high_pct": 100 * (cmp.ratio_mean_high - 1),
                    "p_welch": cmp.p_welch})
    return pd.DataFrame(out)
