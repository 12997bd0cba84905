"""The analysis notebook's tables and figures, built from one run (``results.load_run``).

The report is read as HTML without its code, so every table says in its own columns what each
number measures, its unit, n and its 95% interval, and carries a note (``table.attrs["note"]``)
that :func:`show` renders as its caption. The statistics are :mod:`msbench.analysis.stats`; only completed
trials (status "ok") are analysed, because a failed trial stopped at a broken stack; failed trials
are listed by :func:`trials_table` and :func:`deviations` instead.

| module | job |
|---|---|
| ``values.py`` | the completed trials' values of the catalogue's metrics (msbench.metrics), who is who |
| ``page.py`` | numbers as text, notes as captions, folded tables: how the HTML page shows them |
| ``tables.py`` | per-store figures, latency percentiles, the trials, the environment |
| ``comparisons.py`` | each store against the baseline, A/A pairs, the controls, spread, power |
| ``verdict.py`` | the answer first: per metric the best real store, its ratio to the baseline, claimed or not |
| ``published.py`` | the published claims beside our figures |
| ``run_deviations.py`` | what makes this run weaker than planned or unlike the published study |
| ``figures.py`` | the figures (PNG + SVG) |
| ``explain.py`` | why a phase differs: Milvus's S3 requests per store, and each store alone (warp) |
| ``replay.py`` | the replay's section: Milvus's requests against each store alone, beside the study |

What the notebooks use is re-exported here (``report.summary_table(run)``); ``explain`` and
``replay`` are imported as ``from msbench.report import explain, replay``.
"""
from __future__ import annotations

from msbench.report.comparisons import aa_table, comparison_table, controls_table, power_table, variance_table
from msbench.report.figures import fig_drift, fig_footprint, fig_forest, fig_latency_ecdf, fig_recall, fig_trials
from msbench.metrics import HEADLINE, Metric, compared, direction, headline
from msbench.report.values import default_baseline
from msbench.report.page import folded, show
from msbench.report.published import CLAIMS, PUBLISHED_SETUP, published_verdicts, published_vs_reproduced
from msbench.report.run_deviations import deviations
from msbench.report.tables import CI_NOTE, environment_table, latency_spread_table, summary_table, trials_table
from msbench.report.verdict import Verdict, verdict

__all__ = ["CI_NOTE", "CLAIMS", "HEADLINE", "PUBLISHED_SETUP", "Metric", "aa_table", "compared",
           "comparison_table", "controls_table", "default_baseline", "deviations", "direction", "environment_table",
           "fig_drift", "fig_footprint", "fig_forest", "fig_latency_ecdf", "fig_recall", "fig_trials", "folded",
           "headline", "latency_spread_table", "power_table", "published_verdicts", "published_vs_reproduced", "show",
           "summary_table", "trials_table", "variance_table", "Verdict", "verdict"]
