import re

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
    with pytest.raises(ConfigError, match="valid: auto, native"):
        pipeline.choose_provider("kubernetes")


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
        pipeline.prepare(backends="seaweedfs", overrides={"concurrency": [1, 1]}, results_root=str(tmp_path / "runs"))
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
        pipeline.prepare(backends="seaweedfs", overrides="concurrency: [1, 1]", results_root=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="unknown parameter 'n_vector'"):
        pipeline.prepare(backends="seaweedfs", overrides='{"n_vector": 5}', results_root=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()
