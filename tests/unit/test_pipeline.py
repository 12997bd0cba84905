import json
import re
from pathlib import Path

import nbformat
import pytest

from msbench import pipeline
from msbench.config import ConfigError


def test_project_root_is_found_from_anywhere(monkeypatch, tmp_path):
    root = pipeline.project_root()
    assert (root / "notebooks" / "run_all.ipynb").exists()
    monkeypatch.chdir(root / "notebooks")
    assert pipeline.project_root() == root and pipeline.resolve("data/runs") == root / "data" / "runs"
    monkeypatch.chdir(tmp_path)   # outside the checkout: the installed package's checkout
    assert pipeline.project_root() == root


def test_provider_choice():
    assert pipeline.choose_provider("auto") == "native"
    with pytest.raises(ConfigError, match="provider 'kubernetes' is not supported; valid: native, docker, deployment"):
        pipeline.prepare(provider="kubernetes")


def test_html_report_has_no_code_and_fetches_nothing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\n```mermaid\ngraph TD; A-->B\n```"),
                nbformat.v4.new_code_cell("secret_code_line = 1", outputs=[
                    nbformat.v4.new_output("display_data", {"text/html": "<table><tr><td>42</td></tr></table>"})])]
    src = tmp_path / "a.ipynb"
    nbformat.write(nb, src)
    html = pipeline.to_html(src, tmp_path / "out" / "index.html").read_text()
    assert "secret_code_line" not in html and "<td>42</td>" in html
    assert not re.search(r"src=[\"']https?://|import\(\s*[\"']https?://", html)
    assert "data-figures" in html   # the self-check the rendering test reads


def test_the_notebook_path_checks_before_it_writes(tmp_path):
    """run_all.ipynb goes through the same checks as `msbench run`, in the same order."""
    with pytest.raises(ConfigError, match="concurrency levels must differ, got 1,1"):
        pipeline.prepare(backends="seaweedfs", profile="smoke", overrides={"concurrency": [1, 1]},
                         results_root=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("given", [{"n_vectors": 1000, "concurrency": [1, 4]}, '{"n_vectors": 1000, "concurrency": [1, 4]}',
                                   "n_vectors: 1000\nconcurrency: [1, 4]", "{n_vectors: 1000, concurrency: [1, 4]}"])
def test_overrides_come_as_a_mapping_or_as_yaml_or_json_text(given):
    assert pipeline.parse_overrides(given) == {"n_vectors": 1000, "concurrency": [1, 4]}


@pytest.mark.parametrize("given", [None, {}, "", "  \n", "{}", "# nothing"])
def test_no_overrides(given):
    assert pipeline.parse_overrides(given) == {}


@pytest.mark.parametrize("given, why", [("n_vectors=1000", "got 'n_vectors=1000'"), ("[1, 2]", r"got \[1, 2\]"),
                                        (5, "got 5"), ("{n_vectors: [1,", "neither YAML nor JSON")])
def test_overrides_that_are_no_mapping_are_refused_in_one_line(given, why):
    with pytest.raises(ConfigError, match=why) as err:
        pipeline.parse_overrides(given)
    assert "\n" not in str(err.value) and "n_vectors: 20000" in str(err.value)


def test_text_overrides_go_through_the_same_checks(tmp_path):
    """`papermill -p overrides TEXT` reaches the same validation as a mapping, before anything is written."""
    with pytest.raises(ConfigError, match="concurrency levels must differ, got 1,1"):
        pipeline.prepare(backends="seaweedfs", profile="smoke", overrides="concurrency: [1, 1]",
                         results_root=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="unknown parameter 'n_vector'"):
        pipeline.prepare(backends="seaweedfs", profile="smoke", overrides='{"n_vector": 5}',
                         results_root=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def _run_folder(root: Path, name: str, created: str, done: int, planned: int = 2) -> None:
    order = [{"seq": i, "round": i + 1, "backend": "minio", "trial": i + 1} for i in range(planned)]
    (root / name).mkdir(parents=True)
    (root / name / "manifest.json").write_text(json.dumps({"run": name, "created": created, "order": order}))
    for t in order[:done]:
        trial = root / name / "trials" / "minio" / f"trial-{t['trial']:02d}"
        trial.mkdir(parents=True)
        (trial / "trial.json").write_text(json.dumps({"status": "failed" if t["trial"] == 2 else "ok"}))


def test_analysis_without_a_run_id_takes_the_newest_complete_run(tmp_path, capsys):
    """analysis.ipynb opened as it is (run_id ""): the newest run whose planned trials all have a trial.json."""
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match="no complete run under"):
        pipeline.choose_run(root, "")
    _run_folder(root, "old", "2026-11-01T10:00:00+00:00", done=2)
    _run_folder(root, "newer", "2026-11-20T10:00:00+00:00", done=2)   # a failed trial is still a finished one
    _run_folder(root, "newest-unfinished", "2026-11-27T10:00:00+00:00", done=1)
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{")
    (root / "run_all-20261127.ipynb").write_text("{}")
    assert pipeline.choose_run(root, "") == "newer"
    said = capsys.readouterr().out
    assert said.startswith("run_id not given: analysing newer, the newest complete run under") and "2 of 3 runs" in said
    assert pipeline.choose_run(root, "old") == "old" and capsys.readouterr().out == ""
