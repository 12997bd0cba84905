"""The completed trials' values of the catalogue's metrics (msbench.metrics), scaled for display, and
who is who in a run (baseline, controls). Only completed trials (status "ok") are analysed: a failed
trial stopped at a broken stack."""
from __future__ import annotations

import pandas as pd

from msbench.metrics import Metric
from msbench.results import Run

BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("bytes", 1.0))
FOOTPRINT_PREFIXES = ("insert_log", "stats_log", "delta_log", "index_files", "other")
TIME_UNITS = ("s", "ms")


def fitting_byte_unit(largest: float) -> str:
    """The largest decimal unit not above the data, so a table shows 1.58 MB, not 1577226 bytes."""
    return next((unit for unit, factor in BYTE_UNITS if largest >= factor), "bytes")


def trial_values(run: Run, metrics: list[Metric], byte_unit: str | None = None) -> pd.DataFrame:
    """Completed trials' values of ``metrics``, keyed by Metric.name, bytes rescaled for display.

    ``byte_unit`` forces one unit on every byte metric (a stacked bar needs a common scale);
    otherwise each byte metric gets the unit that suits its own values. The frame carries the level
    its intervals are computed at (``confidence_of``), so every table of the run uses the same.
    """
    data = run.completed("results")
    factors = dict(BYTE_UNITS)
    frames = []
    for m in metrics:
        sel = data[(data["phase"] == m.phase) & (data["metric"] == m.metric)]
        if sel.empty:
            continue
        unit = m.unit
        if unit == "bytes":
            unit = byte_unit or fitting_byte_unit(sel["value"].abs().max())
        frames.append(sel.assign(metric=m.name, value=sel["value"] / factors.get(unit, 1.0), unit=unit))
    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*data.columns])
    tidy.attrs["confidence"] = run.confidence
    return tidy


def confidence_of(tidy: pd.DataFrame) -> float:
    """The level at which intervals of these values are computed so that they cover 95%: 95%, or
    higher in a run stopped by the until-precise rule (see stopping.calibrated_level)."""
    return tidy.attrs.get("confidence", 0.95)


def all_backends(run: Run) -> list[str]:
    """Every backend the run asked for or recorded, sorted: the same axis and colours in every figure."""
    recorded = set(run.trials["backend"]) if "backend" in run.trials else set()
    return sorted(set(run.manifest.backends) | recorded)


def default_baseline(run: Run) -> str | None:
    """The run's planned baseline (MinIO when it ran: the store the published study replaces) when it
    completed a trial, else MinIO, else the first alphabetically."""
    ran = sorted(set(run.completed("results")["backend"]))
    planned = run.manifest.baseline
    return planned if planned in ran else "minio" if "minio" in ran else (ran[0] if ran else None)


def without_controls(run: Run, tidy: pd.DataFrame) -> pd.DataFrame:
    """The stores proper: the controls are shown in their own section, not compared as stores."""
    return tidy[~tidy["backend"].isin(run.controls)]
