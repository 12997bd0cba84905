"""Milvus's own S3 requests, replayed against a store alone.

trace.py (the portable trace of a trial's or a capture's requests), client.py (one SigV4
connection), engine.py (issuing a phase's requests in the recorded order, measuring them), sources.py (the
traces a run replays: files, folders, a study's trials; their export), pressure.py (the recorded
CPU held beside the store), runner.py (a replay run: stores alone in RMIT order, a run folder like
the study's) and
fidelity.py (recorded vs replayed, per phase). docs/trace-format.md and docs/replay.md say how
to use them; report/replay.py shows the results.
"""
