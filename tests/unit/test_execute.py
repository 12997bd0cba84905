"""Notebooks run with quiet kernels and, from the command line, their output streamed (real kernels, no server)."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from msbench import execute


def test_tcp_notice_filter_drops_that_notice_only():
    def record(msg):
        return logging.LogRecord("IPKernelApp", logging.WARNING, __file__, 1, msg, None, None)

    assert not execute.TcpNotice().filter(record(execute.TCP_NOTICE + ". All communication ..."))
    assert execute.TcpNotice().filter(record("Alternative text is missing on 8 image(s)."))
    assert execute.KERNEL_CONFIG.is_file()


def test_papermill_command_line():
    assert execute.papermill_args(["a.ipynb", "b.ipynb", "-p", "x", "1"]) == [
        "a.ipynb", "b.ipynb", "-p", "x", "1", "--engine", "msbench", "--no-progress-bar"]
    assert execute.papermill_args(["a", "b", "--progress-bar", "--engine", "other"]) == [
        "a", "b", "--progress-bar", "--engine", "other"]


def _notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_notebooks_stream_their_output_and_their_kernels_keep_quiet(tmp_path):
    """As scripts/run-all runs run_all.ipynb: an outer notebook (streamed) that runs an inner one (as the
    pipeline runs each trial's); neither kernel's TCP notice shows, a real warning does."""
    inner = _notebook(tmp_path / "inner.ipynb", "get_ipython().kernel.log.warning('a real warning')")
    outer = _notebook(tmp_path / "outer.ipynb", "\n".join([
        "import sys", "from pathlib import Path", "from msbench import execute",
        "print('outer says hello', flush=True)", "sys.stderr.write('bar 1/2\\r'); sys.stderr.flush()",
        f"execute.notebook(Path({str(inner)!r}), Path({str(tmp_path / 'inner-out.ipynb')!r}), {{}})"]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(execute.__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "msbench.execute", str(outer), str(tmp_path / "outer-out.ipynb")],
                          capture_output=True, timeout=300, env=env, cwd=tmp_path)
    out, err = done.stdout.decode(), done.stderr.decode()   # as written: a bar's carriage returns kept
    assert done.returncode == 0, err
    assert "outer says hello" in out and "bar 1/2\r" in err
    assert "a real warning" in err
    assert execute.TCP_NOTICE not in err + out
    assert "Executing:" not in err   # no bar over cells beside the cells' own


def test_without_the_config_the_notice_shows(tmp_path, capfd):
    """The check above can fail: a kernel started without KERNEL_ARGS prints the notice."""
    import papermill

    nb = _notebook(tmp_path / "plain.ipynb", "1")
    papermill.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                               extra_arguments=[])
    assert execute.TCP_NOTICE in capfd.readouterr().err
