"""A study run: validated inputs -> manifest -> planned trial order -> trials -> result files.

The CLI and the notebooks both go through ``prepare``: every input is checked, and every
backend's availability too, before anything is provisioned, and both run the trials through
``execute`` (a progress bar, a line per finished trial, and the until-precise rule of
stopping.py when the run has one). Rerunning with the same run_id runs only the trials that
have not completed, then applies the rule again; it refuses when what the trials would run on
(host, binaries, packages, msbench's commit) differs from what the earlier rounds ran on.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

from msbench import backends as backend_registry
from msbench.backends import DEPLOYMENT
from msbench.config import DEFAULT_PROFILE, ConfigError, Params, UserConfig, load_user_config, make_params
from msbench.measure import conformance, provenance
from msbench.providers import COLLECTION, deployment, milvus_native, registry
from msbench.providers.catalog import (available_backends, check_provider, provider_unavailable_reason,
                                       unavailable_reason)
from msbench.results import (Manifest, PlannedTrial, RunDir, StopRule, TrialRecord, check_results_root,
                             check_run_id)
from msbench.run import phases, progress, schedule, stopping
from msbench.run.trial import run_trial
from msbench.run.workload import Dataset, check_dataset, load_dataset

# What Milvus runs with that msbench sets only on a Milvus it starts (providers.milvus_native.settings).
MILVUS_SETTINGS = ("milvus_pacing", "milvus_mmap")

DEFAULT_RESULTS = Path("data") / "runs"
EXISTING_MILVUS = {"mode": "existing deployments, each described under components"}   # no Milvus of ours
BASELINE_STORE = "minio"   # the store the published study replaces: every comparison reads "X vs MinIO"


@dataclass
class Study:
    run: RunDir
    params: Params
    backends: list[backend_registry.BackendDef]
    provider: str
    user: UserConfig
    manifest: Manifest

    @property
    def order(self) -> list[PlannedTrial]:
        return self.manifest.order

    def backend(self, name: str) -> backend_registry.BackendDef:
        return next(b for b in self.backends if b.name == name)

    def pending(self) -> list[PlannedTrial]:
        return [t for t in self.order if self.run.trial_status(t.backend, t.trial) != "ok"]

    @cached_property
    def data(self) -> Dataset:
        """Made once per study: every trial inserts the same vectors and asks the same queries."""
        return load_dataset(self.params)

    def run_one(self, planned: PlannedTrial) -> TrialRecord:
        def on_phase(name: str) -> None:
            progress.write_phase(self.run.path, planned.backend, planned.trial, name)

        return run_trial(self.run, self.backend(planned.backend), planned.trial, planned.seq, self.params,
                         self.data, self.provider, self.user, on_phase=on_phase)

    def next_round(self) -> tuple[list[PlannedTrial], str]:
        """Once every planned trial has run: under an until-precise rule, the rule's decision on the
        trials' records (kept in the manifest's ``stopping``) and, unless it says stop, one more round
        appended to the planned order (``schedule.next_round``); no rule, no round. Returns the new
        trials and a line saying why."""
        rule = self.manifest.until_precise
        if rule is None:
            return [], ""
        decision = stopping.record(self.manifest, stopping.check(self.run.rows(), self.run.records(), self.manifest))
        new = [] if decision.reason else schedule.next_round(self.manifest.backends, self.order,
                                                             self.manifest.order_seed)
        self.manifest.order = [*self.order, *new]
        self.run.write_manifest(self.manifest)
        return new, stopping.progress_line(decision, rule)


def baseline_of(names: list[str]) -> str:
    """MinIO when it runs, else the first backend named: what every other backend is compared with."""
    return BASELINE_STORE if BASELINE_STORE in names else names[0]


CONTROL_KINDS = ("aa", "slow")   # the A/A twin and the handicapped twin


def control_definitions(baseline: str, cpu: float, kinds: Iterable[str] = CONTROL_KINDS) -> dict[str, dict[str, Any]]:
    """The controls of a baseline (Kalibera and Jones: show the method can and cannot see a
    difference): an A/A twin ("aa"), the same store under another name, where any claimed difference
    is a false positive; and a handicapped twin ("slow"), the same store held to ``cpu`` of one CPU
    (Params.control_cpu), which the study must see as slower in the phases that touch the store."""
    every = {"aa": (f"{baseline}-aa", {"alias_of": baseline}),
             "slow": (f"{baseline}-slow", {"alias_of": baseline, "handicap": {"cpu": cpu}})}
    return dict(every[kind] for kind in kinds)


def control_kinds(controls: bool | str | Iterable[str] | None, provider: str) -> tuple[str, ...]:
    """Which controls to run: True both, False none, None both wherever msbench runs the stores (not on
    existing deployments), or some by name ("slow", "aa,slow")."""
    if controls is None:
        controls = provider != DEPLOYMENT
    if isinstance(controls, bool):
        return CONTROL_KINDS if controls else ()
    kinds = tuple(_parse_list(controls))
    wrong = [k for k in kinds if k not in CONTROL_KINDS]
    if wrong or len(set(kinds)) != len(kinds):
        raise ConfigError(f"controls {','.join(kinds) or 'empty'} not valid; valid: true, false or some of "
                          f"{', '.join(CONTROL_KINDS)} (each once)")
    return kinds


def _with_controls(user: UserConfig, controls: dict[str, dict[str, Any]]) -> UserConfig:
    return replace(user, backends={**user.backends, **controls})


def _parse_list(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v and v.strip()]


def _count(value: Any, name: str, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer of at least {low}, got {value!r}")


def prepare(backends: str | Iterable[str] | None = None, trials: int = 3, profile: str = DEFAULT_PROFILE,
            overrides: dict[str, Any] | None = None, provider: str = "native", run_id: str | None = None,
            results_root: str | Path = DEFAULT_RESULTS, seed: int | None = None,
            config: str | Path | None = None, controls: bool | str | Iterable[str] | None = None,
            until_precise: float | None = None,
            max_trials: int | None = None, max_minutes: float | None = None, dry_run: bool = False) -> Study | str:
    """Check everything (parameters, msbench.yaml, the backends under ``provider``, the dataset's
    contents), then write the manifest and plan the order: bad input leaves no run folder, and
    nothing is installed. ``backends=None`` = all available here; ``controls`` adds the
    baseline's A/A and handicapped twins, or those named (see control_kinds); None: wherever
    msbench runs the stores (not on existing deployments). ``until_precise`` (a target
    interval half-width as a fraction of the mean), ``max_trials`` and ``max_minutes``: after the
    ``trials`` planned rounds, add rounds until precise (stopping.py). Resuming with a rule given
    replaces the recorded one (a run can be extended); without one, the recorded rule holds.
    ``dry_run``: stop after the checks and return the plan as text (``plan_text``): nothing is
    written or contacted, no ground truth computed."""
    user = load_user_config(config)
    registry = backend_registry.load_backends(user)
    check_provider(provider)
    controls = control_kinds(controls, provider)
    _count(trials, "trials", 1)
    if seed is not None:
        _count(seed, "seed (of the trial order)", 0)
    rule = stopping.make_rule(until_precise, max_trials, max_minutes, trials)
    params = make_params(profile, overrides)
    run_id = check_run_id(run_id or dt.datetime.now().strftime(f"%Y%m%d-%H%M%S-{profile}"))
    check_results_root(results_root)
    lacking = [need for need, ok in (("provider native", provider == "native"), ("root", os.geteuid() == 0)) if not ok]
    if params.store_disk_mib and lacking:
        raise ConfigError(f"store_disk_mib={params.store_disk_mib} (the store's data on a tmpfs of our own, mounted "
                          f"per trial) needs {' and '.join(lacking)}; valid here: 0")
    engine = provider_unavailable_reason(provider)
    if engine:
        raise ConfigError(f"provider {provider} cannot run here: {engine}")
    names = _parse_list(backends) or available_backends(user, provider)
    if not names:
        raise ConfigError(f"no backend is available on this machine with provider {provider}: `msbench backends` "
                          f"says why and how to enable one")
    if controls and provider == DEPLOYMENT:
        raise ConfigError("controls need stores msbench runs (the handicapped twin is a CPU quota on its store); "
                          "with provider deployment, run without controls")
    if provider == DEPLOYMENT:   # an existing deployment keeps its own Milvus settings, whatever the profile says
        asked = {k: getattr(params, k) for k in MILVUS_SETTINGS
                 if k in (overrides or {}) and getattr(params, k) != getattr(Params(), k)}
        if asked:
            raise ConfigError(f"{', '.join(f'{k}={v}' for k, v in asked.items())} needs a Milvus msbench starts "
                              f"(provider native or docker): an existing deployment keeps its own settings; valid "
                              f"here: milvus_pacing=default, milvus_mmap=false")
        params = replace(params, **{k: getattr(Params(), k) for k in MILVUS_SETTINGS})
    baseline = baseline_of(names)
    control_defs = control_definitions(baseline, params.control_cpu, controls)
    clash = sorted(set(control_defs) & (set(registry) | set(names)))
    if clash:
        raise ConfigError(f"control backend name(s) {', '.join(clash)} already defined; rename them, or run "
                          f"without controls")
    if control_defs:
        user = _with_controls(user, control_defs)
        registry = backend_registry.load_backends(user)
        names = [*names, *control_defs]
    chosen = backend_registry.select(names, registry)
    problems = {b.name: unavailable_reason(b, user, provider=provider) for b in chosen}
    problems = {name: why for name, why in problems.items() if why}
    if problems:
        raise ConfigError(f"unavailable backend(s) with provider {provider}: "
                          + "; ".join(f"{n}: {why}" for n, why in problems.items()))
    order_seed = params.seed if seed is None else seed
    if dry_run:
        check_dataset(params)   # a file's contents, as a real run would (no ground truth)
        return plan_text(run_id, provider, params, trials, schedule.plan(names, trials, order_seed), chosen, user)
    data = load_dataset(params)   # its contents checked, its hash taken
    params = replace(params, dim=int(data.train.shape[1]))   # a file's vectors have their own dim
    run = RunDir(results_root, run_id)
    manifest = Manifest(
        run=run_id, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), profile=profile,
        params=params, dataset=data.facts(), backends=[b.name for b in chosen],
        stores={b.name: b.kind for b in chosen}, baseline=baseline,
        handicaps={b.name: b.handicap for b in chosen if b.handicap}, controls=control_defs, trials=trials,
        provider=provider, until_precise=rule, order_seed=order_seed,
        order=schedule.plan([b.name for b in chosen], trials, order_seed),
        skipped={name: unavailable_reason(b, user, provider=provider) or "available, but not requested"
                 for name, b in sorted(registry.items()) if name not in names},
        host=provenance.host_facts(results_root), packages=provenance.package_versions(),
        milvus=(EXISTING_MILVUS if provider == DEPLOYMENT
                else {**provenance.milvus_facts(provider), **milvus_native.settings_facts(params)}),
        timing=phases.timing_facts(params), tools=provenance.tool_facts(),
        components={b.name: provenance.component_facts(b, user, provider) for b in chosen},
        msbench=provenance.msbench_facts(), config_file=str(user.path) if user.path else None)
    previous = run.read_manifest()
    if previous:
        return _resume(run, previous, manifest, rule, chosen, user, data)
    run.write_manifest(manifest)
    prepared = Study(run, params, chosen, provider, user, manifest)
    prepared.data = data
    return prepared


def _resume(run: RunDir, previous: Manifest, now: Manifest, rule: StopRule | None,
            chosen: list[backend_registry.BackendDef], user: UserConfig, data: Dataset) -> Study:
    """The recorded run, to complete: the same inputs, and the same machine and software under them,
    or a one-line refusal naming what differs (rounds run on different software would be mixed). A run
    with nothing left to run reopens anywhere (its analysis), unless a stopping rule may add rounds."""
    same_inputs = (previous.params == now.params and previous.backends == now.backends
                   and previous.trials == now.trials and previous.provider == now.provider
                   and previous.dataset.get("sha256", data.sha256) == data.sha256)
    if not same_inputs:
        raise ConfigError(f"run {now.run} exists with other parameters, dataset, backends, trials or provider; "
                          f"use a new run_id, or the same inputs to resume it")
    resumed = Study(run, now.params, chosen, now.provider, user, previous)
    resumed.data = data
    changed = provenance.differences(previous, now)
    if changed and (resumed.pending() or rule is not None):
        raise ConfigError(f"run {now.run} cannot be resumed here: its trials ran on other software or another "
                          f"machine ({'; '.join(changed)}); start a new run_id so that rounds are not mixed")
    if rule is not None and previous.until_precise != rule:
        previous.until_precise = rule
        if previous.stopping:   # a new rule has not decided yet
            previous.stopping.reason = None
        run.write_manifest(previous)
    return resumed


def plan_text(run_id: str, provider: str, params: Params, trials: int, order: list[PlannedTrial],
              backends: list[backend_registry.BackendDef], user: UserConfig) -> str:
    """What a run would do: each deployment (where, hooks, what is skipped), the phases, and the trials
    in order with their collections. Made from the checked inputs alone."""
    lines = ["dry run: nothing was contacted, no file was written",
             f"run {run_id} (pass --run-id {run_id} to run this plan), provider {provider}, profile {params.profile}, "
             f"{trials} trial(s) per backend, {len(order)} trials"]
    for b in backends:
        if provider == DEPLOYMENT:
            lines += [f"deployment {b.name}:", *(f"  {k}: {v}" for k, v in deployment.describe(user.deployments[b.name]).items())]
        else:
            lines.append(f"backend {b.name}: {b.description}")
    lines.append("phases of each trial: " + ", ".join(p.name for p in phases.PHASES))
    lines.append("trials, in this order:")
    for t in order:
        collection = (f"collection {deployment.collection_name(run_id, t.backend, t.trial)}, created and dropped"
                      if provider == DEPLOYMENT else f"collection {COLLECTION} on a fresh stack")
        lines.append(f"  #{t.seq + 1} (round {t.round}) {t.backend} trial {t.trial}: {collection}")
    return "\n".join(lines)


def open_run(results_root: str | Path, run_id: str, config: str | Path | None = None) -> Study:
    """A prepared run, rebuilt from its manifest (how each benchmark notebook finds its trial)."""
    run = RunDir(results_root, run_id)
    manifest = run.read_manifest()
    if manifest is None:
        raise ConfigError(f"no run {run_id!r} under {results_root}: prepare it first (run_all.ipynb or msbench run)")
    user = _with_controls(load_user_config(config), manifest.controls)
    chosen = backend_registry.select(manifest.backends, backend_registry.load_backends(user))
    return Study(run, manifest.params, chosen, manifest.provider, user, manifest)


def check_stores(study: Study, say: Callable[[str], None] = print) -> None:
    """Before its first timed trial, each store (each kind once: the controls are their store) is started
    alone and checked for what Milvus needs of S3 (measure.conformance), in a folder of its own and
    never on a trial's stack (its objects would stay in the trial's footprint); kept in the manifest.
    Only natively: under docker or on a deployment it says why not (``msbench stores check`` does it)."""
    definitions = backend_registry.load_backends(study.user)
    for kind in dict.fromkeys(study.manifest.stores.values()):
        if kind in study.manifest.conformance:
            continue
        if study.provider != "native" or definitions[kind].launcher == "external":
            study.manifest.conformance[kind] = {"store": kind, "skipped": f"not checked under provider "
                                                f"{study.provider}: run `msbench stores check {kind}` natively"}
        else:
            with registry.scratch_dir(f"msbench-check-{kind}-", os.environ.get("MSBENCH_WORK_DIR")) as work:
                found = conformance.check_backend(definitions[kind], work, study.user)
            study.manifest.conformance[kind] = found.to_dict()
            say(f"{kind}: S3 conformance checked in {found.seconds:.0f} s, "
                f"{sum(c.outcome != 'pass' for c in found.checks)} of {len(found.checks)} checks not passed"
                + (f" ({found.error})" if found.error else ""))
        study.run.write_manifest(study.manifest)


def execute(study: Study, run_one: Callable[[PlannedTrial], TrialRecord], show: bool = True) -> list[TrialRecord]:
    """Every pending trial in the planned order, then, under an until-precise rule, one more round
    at a time until the rule says stop (Study.next_round); a failed trial never stops the others.
    ``run_one`` runs a trial and returns its record (here, or in a notebook kernel of its own).
    Shows a bar over the trials and a line per finished trial and per decision of the rule. Each
    store's S3 conformance is checked first (check_stores)."""
    check_stores(study)
    todo = study.pending()
    outcomes = []
    with progress.TrialBar(study.run.path, study.run.run_id, len(todo), enabled=show) as bar:
        while True:
            for planned in todo:
                bar.start(planned)
                outcomes.append(run_one(planned))
                bar.finish(planned, outcomes[-1])
            todo, why = study.next_round()
            if why:
                bar.say(why)
            if not todo:
                return outcomes
            bar.add(len(todo))


def run_all(study: Study, progress: bool = True) -> list[TrialRecord]:
    """Run the study's trials in this process (``msbench run``)."""
    return execute(study, study.run_one, progress)
