"""Progress you can watch: the bar's text, the line per trial and the phase file a trial writes."""
import io
import time

from msbench.run import progress
from msbench.results import PlannedTrial, TrialRecord

PLANNED = PlannedTrial(seq=4, round=2, backend="minio", trial=2)


def _record(**fields) -> TrialRecord:
    return TrialRecord("r1", "minio", "minio", "native", 2, 4, **fields)


def test_status_names_the_trial_and_its_phase_when_the_file_is_about_it():
    assert progress.status(PLANNED, {}) == "minio #2 (round 2)"
    phase = {"backend": "minio", "trial": 2, "phase": "load_cold", "since": 100.0}
    assert progress.status(PLANNED, phase, now=112.4) == "minio #2 (round 2): load_cold 12 s"
    assert progress.status(PLANNED, phase, now=225.0) == "minio #2 (round 2): load_cold 2:05"
    assert progress.status(PLANNED, {**phase, "trial": 1}) == "minio #2 (round 2)"   # the previous trial's file
    # a killed run's file about the same trial, older than the resumed trial's start
    assert progress.status(PLANNED, phase, now=300.0, started=200.0) == "minio #2 (round 2)"
    assert progress.status(PLANNED, phase, now=112.4, started=99.0) == "minio #2 (round 2): load_cold 12 s"


def test_one_line_per_trial():
    assert progress.trial_line(PLANNED, _record(status="ok", duration_s=63.4)) == "minio trial 2 (round 2, #5): ok in 1:03"
    failed = progress.trial_line(PLANNED, _record(status="failed", failed_phase="flush", duration_s=12,
                                                  error="ComponentFailed: store minio was killed\n by SIGKILL " + "x" * 300))
    assert failed.startswith("minio trial 2 (round 2, #5): failed in phase flush in 12 s: ComponentFailed: store "
                             "minio was killed by SIGKILL x") and failed.endswith("...") and len(failed) < 260


def test_phase_file_round_trip_and_never_fails(tmp_path):
    progress.write_phase(tmp_path, "minio", 2, "insert")
    assert {k: v for k, v in progress.read_phase(tmp_path).items() if k != "since"} == {
        "backend": "minio", "trial": 2, "phase": "insert"}
    assert progress.read_phase(tmp_path / "nowhere") == {}
    (tmp_path / "file.txt").write_text("")
    progress.write_phase(tmp_path / "file.txt", "minio", 2, "insert")   # cannot be written: no error


def test_bar_refreshes_with_the_phase_and_says_each_trial(tmp_path, capsys):
    out = io.StringIO()
    with progress.TrialBar(tmp_path, "r1", total=3, file=out, interval=0.05) as bar:
        bar.start(PLANNED)
        progress.write_phase(tmp_path, "minio", 2, "index")
        time.sleep(0.3)
        assert "minio #2 (round 2): index" in out.getvalue()
        bar.finish(PLANNED, _record(status="ok", duration_s=5))
        bar.add(2)
    text = out.getvalue()
    assert "run r1 1/5 trials" in text and "elapsed" in text and "left" in text
    assert "minio trial 2 (round 2, #5): ok in 5 s" in capsys.readouterr().out
    with progress.TrialBar(tmp_path, "r1", total=1, enabled=False) as bar:   # --no-progress: the lines stay
        bar.finish(PLANNED, _record(status="ok", duration_s=5))
    assert capsys.readouterr().out == "minio trial 2 (round 2, #5): ok in 5 s\n"
