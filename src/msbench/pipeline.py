"""What the notebooks call: run_all plans, runs one benchmark notebook per trial (a progress bar
over the trials, see run.progress; rounds added until precise, see run.stopping), then the
analysis notebook, and publishes it as a self-contained HTML report. The analysis notebook
without a run_id analyses the newest complete run (``choose_run``).

Paths given to the notebooks are taken relative to the project root, so
``papermill notebooks/run_all.ipynb OUT.ipynb`` and ``cd notebooks; papermill run_all.ipynb OUT.ipynb``
write to the same places.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import traceback
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

import msbench
from msbench import execute
from msbench.config import DEFAULT_PROFILE, ConfigError
from msbench.replay import record as replay_record
from msbench.results import STUDY, Manifest, RunDir, TrialRecord
from msbench.run import study as study_mod


def project_root() -> Path:
    """The checkout holding pyproject.toml for msbench: from the working directory up, else the package's."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        marker = folder / "pyproject.toml"
        if marker.is_file() and 'name = "msbench"' in marker.read_text():
            return folder
    return Path(msbench.__file__).resolve().parents[2]


def resolve(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else project_root() / path


def choose_provider(provider: str) -> str:
    """'auto' runs the native stack (no Docker needed); any other name goes to study.prepare's check."""
    return "native" if provider == "auto" else provider


def parse_overrides(overrides: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The notebook's ``overrides`` as a mapping: given as one (``papermill -y``, or in code), or as
    YAML or JSON text (``-p overrides '{"n_vectors": 1000}'``, ``-p overrides "n_vectors: 1000"``:
    ``-p`` passes text). Empty text means none; anything but a mapping is a ConfigError."""
    if isinstance(overrides, str):
        try:
            overrides = yaml.safe_load(overrides) if overrides.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"overrides is neither YAML nor JSON ({' '.join(str(err).split())}); write it as "
                              f"'{{\"n_vectors\": 20000}}' or 'n_vectors: 20000'") from None
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must map parameter names to values, e.g. '{{\"n_vectors\": 20000}}' or "
                          f"'n_vectors: 20000'; got {overrides!r}")
    return dict(overrides)


def prepare(backends=None, profile: str = DEFAULT_PROFILE, overrides: Mapping[str, Any] | str | None = None,
            trials: int = 3, provider: str = "auto", seed: int | None = None, run_id: str | None = None,
            results_root: str = "data/runs", config: str | None = None, controls: bool | None = None,
            until_precise: float | None = None, max_trials: int | None = None,
            max_minutes: float | None = None) -> study_mod.Study:
    """The body of run_all.ipynb's first cell: every input checked (``overrides`` may be YAML or
    JSON text, see parse_overrides), then the run folder written and the trial order planned."""
    return study_mod.prepare(backends=backends, trials=trials, profile=profile, overrides=parse_overrides(overrides),
                             provider=choose_provider(provider), run_id=run_id, results_root=resolve(results_root),
                             seed=seed, config=resolve(config) if config else None, controls=controls,
                             until_precise=until_precise, max_trials=max_trials, max_minutes=max_minutes)


def _complete(run: Path, manifest: Manifest) -> bool:
    """Every trial the run planned has its trial.json (whatever its status)."""
    return bool(manifest.order) and all((run / "trials" / t.backend / f"trial-{t.trial:02d}" / "trial.json").exists()
                                        for t in manifest.order)


def choose_run(results_root: str | Path, run_id: str | None = None) -> str:
    """The run the analysis notebook analyses: ``run_id`` when given; else the newest run folder
    under ``results_root`` (by its manifest's creation time) whose planned trials are all complete,
    named in one printed line."""
    if run_id:
        return run_id
    root = resolve(results_root)
    found, complete = 0, []
    for path in root.glob("*/manifest.json"):
        try:
            manifest = Manifest.from_json(path.read_text())
        except (OSError, ValueError, TypeError):
            continue
        if manifest.kind != STUDY:
            continue   # a replay run is read by its own section, not analysed as a study
        found += 1
        if _complete(path.parent, manifest):
            complete.append((manifest.created, path.stat().st_mtime, path.parent.name))
    if not complete:
        raise ConfigError(f"no complete run under {root} ({found} run folder(s), none with every planned trial "
                          f"done): run run_all.ipynb or `msbench run` first, or give run_id")
    created, _, chosen = max(complete)
    print(f"run_id not given: analysing {chosen}, the newest complete run under {root} (created {created}; "
          f"{len(complete)} of {found} runs there are complete)")
    return chosen


def plan_table(study: study_mod.Study) -> pd.DataFrame:
    rows = [{**vars(t), "status": study.run.trial_status(t.backend, t.trial) or "pending"} for t in study.order]
    return pd.DataFrame(rows).set_index("seq")


def run_benchmarks(study: study_mod.Study, kernel: str = "python3", progress: bool = True) -> pd.DataFrame:
    """One papermill execution of benchmark.ipynb per pending trial, kept in the run folder, with a
    progress bar and a line per trial (study.execute: the trial's phase is read from the run folder's
    progress.json). A notebook that dies is recorded as a failed trial with its cause; the next one runs."""
    notebook = project_root() / "notebooks" / "benchmark.ipynb"
    out_dir = study.run.path / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)

    def run_one(planned) -> TrialRecord:
        output = out_dir / f"benchmark-{planned.backend}-trial-{planned.trial:02d}.ipynb"
        meta_path = study.run.trial_path(planned.backend, planned.trial) / "trial.json"
        before = meta_path.stat().st_mtime_ns if meta_path.exists() else None
        try:
            execute.notebook(notebook, output, kernel=kernel, cwd=notebook.parent, parameters={
                "results_root": str(study.run.path.parent), "run_id": study.run.run_id, "backend": planned.backend,
                "trial": planned.trial, "config": str(study.user.path) if study.user.path else None})
        except Exception as err:  # the kernel died or the notebook failed outside run_trial
            if not meta_path.exists() or meta_path.stat().st_mtime_ns == before:
                record = TrialRecord(study.run.run_id, planned.backend, study.backend(planned.backend).kind,
                                     study.provider, planned.trial, planned.seq, failed_phase="notebook",
                                     error=f"{type(err).__name__}: {str(err)[-2000:]}", traceback=traceback.format_exc())
                study.run.write_trial(record, pd.DataFrame(), None, None, [])
        return study.run.record(planned.backend, planned.trial)

    study_mod.execute(study, run_one, progress)
    return plan_table(study)


def run_benchmark_trial(results_root: str, run_id: str, backend: str, trial: int,
                        config: str | None = None) -> TrialRecord:
    """The body of benchmark.ipynb: one trial of a prepared run."""
    study = study_mod.open_run(resolve(results_root), run_id, config)
    planned = next((t for t in study.order if t.backend == backend and t.trial == int(trial)), None)
    if planned is None:
        raise ConfigError(f"run {run_id} plans no trial {trial} of backend {backend!r}")
    return study.run_one(planned)


def trial_summary(results_root: str, record: TrialRecord) -> pd.DataFrame:
    """What one benchmark notebook shows: its status and its figures (resource rows left out)."""
    path = RunDir(resolve(results_root), record.run).trial_path(record.backend, record.trial)
    header = {k: getattr(record, k) for k in ("run", "backend", "provider", "trial", "seq", "status", "failed_phase",
                                              "error", "duration_s")}
    print("\n".join(f"{k}: {v}" for k, v in header.items() if v not in (None, "")))
    if (path / "results.csv").exists():
        frame = pd.read_csv(path / "results.csv")
        return frame[~frame.metric.str.contains("rss|cpu_s|wchar")][["phase", "metric", "value", "unit"]]
    return pd.DataFrame()


# Anything that would reach the network when the report is opened: scripts and stylesheets
# loaded from a URL, and inline scripts that import from one (nbconvert's Mermaid loader).
_EXTERNAL = re.compile(r"<script[^>]+src=[\"']https?://[^>]*>\s*</script>|<link[^>]+href=[\"']https?://[^>]*>"
                       r"|<script[^>]*>(?:(?!</script>).)*?import\(\s*[\"']https?://.*?</script>", re.I | re.S)
# Wide tables scroll inside the page instead of being cut off at its edge.
_STYLE = """<style>
.jp-RenderedHTMLCommon table { display: block; overflow-x: auto; max-width: 100%; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { max-width: 26em; white-space: normal; }
.jp-RenderedHTMLCommon caption { white-space: normal; }
</style>"""
_SELF_CHECK = """<script>
/* The report checks itself: the title says how many figures rendered (read by the tests). */
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + imgs.length);
  document.title = document.title + ' [figures ' + ok + '/' + imgs.length + ']';
});
</script>"""


def to_html(executed: Path, target: Path) -> Path:
    """No code, figures embedded, nothing fetched from the network: opens offline."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    body = _EXTERNAL.sub("", body).replace("</head>", _STYLE + "\n</head>").replace("</body>", _SELF_CHECK + "\n</body>")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body)
    return target


FIRST_SCREEN = (1280, 900)   # the window a reader first sees: the screenshot kept beside the report


def chromium(*args: str, profile: Path, timeout: float = 120) -> subprocess.CompletedProcess | None:
    """Headless Chromium offline (no network, sync or updates, its own profile folder) with ``args``;
    None when Chromium is not installed (scripts/setup installs Debian's as root)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        return None
    flags = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    return subprocess.run([*flags, *args], capture_output=True, text=True, timeout=timeout)


def screenshot(report: Path, target: Path, size: tuple[int, int] = FIRST_SCREEN) -> Path | None:
    """The report's first screen as a PNG (what a reader sees before scrolling), or None without Chromium."""
    with tempfile.TemporaryDirectory(prefix="msbench-chromium-") as profile:
        done = chromium(f"--screenshot={target}", f"--window-size={size[0]},{size[1]}", report.as_uri(),
                        profile=Path(profile))
    if done is None:
        print("report screenshot skipped: Chromium is not installed (scripts/setup installs it as root)")
        return None
    if not target.exists():
        print(f"report screenshot failed: {' '.join(done.stderr.split()[-30:])}")
        return None
    return target


def replay_folder(replay_run: str, results_root: str = "data/runs") -> Path | None:
    """The replay run whose section the report adds (its folder, or its id under ``results_root``),
    checked before any trial runs; None when none is asked for."""
    if not replay_run:
        return None
    path = resolve(results_root) / replay_run
    if not replay_record.is_replay(path):
        raise ConfigError(f"replay_run {replay_run!r}: {path} is not a run of `msbench replay` (valid: the folder "
                          f"of one, or its id under {results_root}; make one with `msbench replay RUN --backends ...`)")
    return path


def publish_report(study: study_mod.Study, baseline: str | None = None, report_dir: str = "report",
                   figures_dir: str = "figures", kernel: str = "python3", replay: Path | None = None) -> Path:
    """Execute analysis.ipynb on the run (with the section of the ``replay`` run, if given), convert it
    to report/index.html, keep a copy in the run."""
    notebook = project_root() / "notebooks" / "analysis.ipynb"
    executed = study.run.path / "analysis.ipynb"
    print(f"analysis: executing {notebook.name} on run {study.run.run_id}", flush=True)
    execute.notebook(notebook, executed, kernel=kernel, cwd=notebook.parent, parameters={
        "results_root": str(study.run.path.parent), "run_id": study.run.run_id, "baseline": baseline,
        "figures_dir": str(resolve(figures_dir)), "replay_run": str(replay or "")})
    report = to_html(executed, resolve(report_dir) / "index.html")
    shutil.copy(report, study.run.path / "report.html")
    if screenshot(report, study.run.path / "first-screen.png"):
        print(f"the report's first screen: {study.run.path / 'first-screen.png'}")
    return report
