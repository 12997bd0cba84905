"""How the report shows what it found on a code-free HTML page: numbers as text (three significant
digits, "–" where nothing could be computed), intervals beside their estimates, each table's note
(``table.attrs["note"]``) as its caption, long tables folded away."""
from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd


def finite(x: Any) -> bool:
    """A number that can be shown (not None, NaN or infinite)."""
    return x is not None and not pd.isna(x) and np.isfinite(float(x))


def num(x: Any, digits: int = 3) -> str:
    """Three significant digits, thousands grouped; "–" for a number that could not be computed."""
    if not finite(x):
        return "–"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 10 ** digits else f"{x:.{digits}g}"


def pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if finite(x) else "–"


def p_value(p: Any) -> str:
    return "–" if not finite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def interval(lo: Any, hi: Any, why: str) -> str:
    return f"[{num(lo)}, {num(hi)}]" if finite(lo) and finite(hi) else f"[no CI: {why}]"


def with_ci(x: Any, lo: Any, hi: Any, why: str) -> str:
    return f"{num(x)} {interval(lo, hi, why)}"


def noted(frame: pd.DataFrame, note: str) -> pd.DataFrame:
    """The table with its note, which :func:`show` renders as its caption."""
    frame.attrs["note"] = note
    return frame


def beneath(table: pd.DataFrame, under: dict[str, str]) -> pd.DataFrame:
    """A copy for display in which each column ``under`` names (an explanation) is shown as a smaller second
    line of the cell of the column it maps to, and dropped: a metric's meaning under its name."""
    shown = table.drop(columns=[c for c in under if c in table.columns])
    shown.attrs = dict(table.attrs)
    for extra, host in under.items():
        if extra in table.columns and host in table.columns:
            shown[host] = [f"{html.escape(str(a))}<br><span style=\"font-size: 85%; color: #555\">"
                           f"{html.escape(str(b))}</span>" for a, b in zip(table[host], table[extra])]
    return shown


def show(table: pd.DataFrame):
    """The table with its note as caption and no index: what the code-free HTML report shows.

    ``table.attrs`` may also ask for: "beneath", columns shown under another's values (:func:`beneath`);
    "bold", {column: prefix}, cells set in bold where their text starts with the prefix (a claimed difference)."""
    under = table.attrs.get("beneath")
    table = beneath(table, under) if under else table
    styler = table.style.hide(axis="index").set_properties(**{"text-align": "left"})
    for column, prefix in table.attrs.get("bold", {}).items():
        if column in table.columns:
            styler = styler.map(lambda v, p=prefix: "font-weight: bold" if str(v).startswith(p) else "",
                                subset=[column])
    styler = styler.set_table_styles([{"selector": "caption",
                                       "props": "caption-side: top; text-align: left; font-weight: normal;"},
                                      {"selector": "th", "props": "text-align: left;"}])
    return styler.set_caption(table.attrs.get("note", ""))


def folded(table: pd.DataFrame, summary: str):
    """A long table behind a <details> line: there for whoever wants it, not in the way."""
    from IPython.display import HTML

    return HTML(f"<details><summary>{summary} ({len(table)} rows)</summary>{show(table).to_html()}</details>")


def first_line(text: Any, limit: int = 200) -> str:
    """The first line of a recorded cause, shortened to ``limit`` characters, for a table cell."""
    if not isinstance(text, str) or not text.strip():
        return ""
    line = text.strip().splitlines()[0].rstrip(":")
    return line if len(line) <= limit else line[:limit - 1] + "…"
