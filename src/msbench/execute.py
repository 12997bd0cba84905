"""Executing notebooks: papermill, with quiet kernels and, from the command line, the cells' output streamed.

Every kernel ipykernel 7 starts logs "Kernel is running over TCP without encryption ..." to
its stderr, which a kernel inherits from whoever started it: with one kernel per trial that
was all a terminal showed of a run. The kernels started here load ``kernel_config.json``
(``--config``), a logging filter on the kernel application's logger that drops exactly that
message (``TcpNotice``); every other warning of the kernel still shows. (The kernels listen on
127.0.0.1 only.)

``python -m msbench.execute IN.ipynb OUT.ipynb [papermill options]`` is papermill's own command
line with that, plus what the cells print streamed to this terminal as it comes (their stdout
to stdout, stderr to stderr, so run_all.ipynb's progress bar is seen live) instead of papermill's
bar over cells; ``--progress-bar`` brings that bar back. scripts/run-all runs it.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

TCP_NOTICE = "Kernel is running over TCP without encryption"   # ipykernel.kernelapp, IPKernelApp.init_sockets
KERNEL_CONFIG = Path(__file__).with_name("kernel_config.json")   # installs TcpNotice on the kernel's logger
KERNEL_ARGS = [f"--config={KERNEL_CONFIG}"]
ENGINE = "msbench"


class TcpNotice(logging.Filter):
    """Drops the kernel's notice that it listens on TCP without encryption; lets everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TCP_NOTICE)


def streaming_engine():
    """papermill's engine, its kernels started with KERNEL_ARGS and the cells' output relayed to this
    process's stdout and stderr (papermill is imported here: the kernels import this module for
    TcpNotice, and need not load papermill)."""
    from papermill.engines import NBClientEngine

    class StreamingEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            kwargs["extra_arguments"] = [*kwargs.get("extra_arguments", []), *KERNEL_ARGS]
            kwargs["stdout_file"] = kwargs.get("stdout_file") or sys.stdout
            kwargs["stderr_file"] = kwargs.get("stderr_file") or sys.stderr
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return StreamingEngine


def notebook(source: Path, output: Path, parameters: dict[str, Any], kernel: str = "python3", cwd: Path | None = None):
    """One papermill execution with a quiet kernel (what the pipeline runs per trial and for the report)."""
    import papermill

    return papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=kernel,
                                      cwd=str(cwd) if cwd else None, progress_bar=False, extra_arguments=KERNEL_ARGS)


def papermill_args(argv: list[str]) -> list[str]:
    """The command line for papermill: our engine unless one is named, and no bar over cells unless asked."""
    args = list(argv)
    if not any(a == "--engine" or a.startswith("--engine=") for a in args):
        args += ["--engine", ENGINE]
    if "--progress-bar" not in args and "--no-progress-bar" not in args:
        args.append("--no-progress-bar")
    return args


def main(argv: list[str] | None = None) -> None:
    from papermill.cli import papermill
    from papermill.engines import papermill_engines

    papermill_engines.register(ENGINE, streaming_engine())
    papermill.main(args=papermill_args(sys.argv[1:] if argv is None else argv), prog_name="python -m msbench.execute")


if __name__ == "__main__":
    main()
