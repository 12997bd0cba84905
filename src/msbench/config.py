"""Study parameters: named profiles, overrides, and validation before anything is provisioned."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import yaml


class ConfigError(ValueError):
    """Bad input: says what was wrong and what is valid."""


INDEX_TYPES = ("HNSW", "IVF_FLAT")
SYNTHETIC = ("random", "clustered")   # datasets made from the seed (see workload)
METRIC_TYPES = ("L2", "IP", "COSINE")
PACINGS = ("default", "fine")   # Milvus's coordinator intervals: its own, or ~100 ms (providers.milvus_native)
# Trials until precise (precision.py): the trials per backend at most, by default and at all (trial
# folders are numbered with two digits, see results.RunDir).
DEFAULT_MAX_TRIALS = 10
MAX_TRIALS = 99


@dataclass(frozen=True)
class Params:
    """Everything one trial needs to know about the workload. Recorded in the manifest."""

    profile: str = "smoke"
    n_vectors: int = 5_000
    dim: int = 32                    # of synthetic vectors; a file's own replaces it (study.prepare)
    n_queries: int = 200
    batch_size: int = 1_000
    dataset: str = "random"          # "random", "clustered" or a path to .npy / .fvecs / .hdf5
    seed: int = 42
    index_type: str = "HNSW"
    metric_type: str = "L2"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ivf_nlist: int = 128
    search_ef: int = 64
    ivf_nprobe: int = 16
    top_k: int = 10
    warmup_queries: int = 20
    concurrency: tuple[int, ...] = ()   # throughput levels; empty = serial latency only
    throughput_seconds: float = 5.0
    drop_page_cache: bool = True
    milvus_session_ttl_s: int = 10
    capture_s3: bool = True             # record every S3 request Milvus makes (traffic.py)
    warp_seconds: float = 5.0           # the store on its own: warp PUT and GET for this long each; 0 = off
    unresponsive_s: float = 60.0        # a server not answering its health check this long fails the phase
    store_disk_mib: int = 0             # >0: the store's data on a filesystem of this size of our own (tmpfs)
    control_cpu: float = 0.05           # the handicapped control's store may use this share of one CPU
    milvus_pacing: str = "default"      # "fine": Milvus's flush, index and load checks every ~100 ms
    milvus_mmap: bool = False           # Milvus maps loaded segments from local files (queryNode.mmapDirPath)
    footprint_after_gc: bool = True     # the footprint again after a forced compaction (re-indexes everything)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["concurrency"] = list(self.concurrency)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Params:
        """As recorded (a manifest): taken as they were, not checked again (a dataset file may be gone)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if k == "concurrency" else v for k, v in raw.items() if k in known})

    def index_params(self) -> dict[str, Any]:
        if self.index_type == "HNSW":
            extra = {"M": self.hnsw_m, "efConstruction": self.hnsw_ef_construction}
        else:
            extra = {"nlist": self.ivf_nlist}
        return {"index_type": self.index_type, "metric_type": self.metric_type, "params": extra}

    def search_params(self) -> dict[str, Any]:
        extra = {"ef": max(self.search_ef, self.top_k)} if self.index_type == "HNSW" else {"nprobe": self.ivf_nprobe}
        return {"metric_type": self.metric_type, "params": extra}


PROFILES: dict[str, dict[str, Any]] = {
    # Minutes on 2 cores: what the tests and CI use. Fine pacing as in the default study (and 13 s a
    # trial shorter than Milvus's own); tests that need Milvus's own pacing set milvus_pacing=default.
    "smoke": dict(n_vectors=5_000, dim=32, n_queries=200, batch_size=1_000, warmup_queries=20, warp_seconds=3.0,
                  milvus_pacing="fine"),
    # The default study (scripts/run-all): about 200 MB in the bucket at the published dimension (768),
    # 2.5-3 minutes a trial on 2 cores (the HNSW build a minute of it), Milvus's coordinators checking
    # every 100 ms (fine pacing), no second footprint after a forced GC, the control held to a quarter
    # of a CPU. The largest size whose 18 trials take about 50 minutes here; why, and what it shows:
    # docs/method.md, "Why the default study runs at 200 MB". Clustered vectors so that search runs at a
    # realistic operating point.
    "standard": dict(n_vectors=33_000, dim=768, dataset="clustered", n_queries=1_000, batch_size=5_000,
                     warmup_queries=50, concurrency=(4,), throughput_seconds=5.0, milvus_pacing="fine",
                     footprint_after_gc=False, control_cpu=0.25),
    # Fits this 2-core / 24 GiB machine in a few minutes per trial.
    "small": dict(n_vectors=100_000, dim=128, n_queries=1_000, batch_size=5_000, warmup_queries=50,
                  concurrency=(1, 4), throughput_seconds=10.0),
    # The published setting (1,000,000 x 768, batches of 5,000, HNSW M=16 efC=200): a 16-core host.
    "paper": dict(n_vectors=1_000_000, dim=768, n_queries=1_000, batch_size=5_000, warmup_queries=100,
                  concurrency=(1, 8, 16), throughput_seconds=30.0),
}

DEFAULT_PROFILE = "standard"   # the default study: `msbench run` and run_all.ipynb alike

_FIELDS = {f.name: f for f in dataclasses.fields(Params)}
_KINDS = {name: type(getattr(Params(), name)) for name in _FIELDS}   # int, float, bool, str or tuple (of int)
_WORDS = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
          tuple: "a list of distinct positive integers such as 1,4,16"}
# Inclusive bounds of every number; Milvus's own limits where it has them (top_k, dim, HNSW M,
# IVF nlist and nprobe), otherwise what a trial can sensibly run with.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "n_vectors": (1, None), "dim": (1, 32_768), "n_queries": (1, None), "batch_size": (1, None),
    "seed": (0, 2**63 - 1), "hnsw_m": (2, 2048), "hnsw_ef_construction": (1, None), "ivf_nlist": (1, 65_536),
    "search_ef": (1, None), "ivf_nprobe": (1, 65_536), "top_k": (1, 16_384), "warmup_queries": (0, None),
    "milvus_session_ttl_s": (1, 3600), "throughput_seconds": (0.1, 3600), "warp_seconds": (0, 600),
    "unresponsive_s": (5, 3600), "store_disk_mib": (0, None), "control_cpu": (0.01, 1.0),
}


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _is(value: Any, kind: type) -> bool:
    """Strictly of ``kind``: a bool is no number, and a float must be finite."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _scalar(name: str, value: Any, kind: type) -> Any:
    """A value as ``kind``, from its text (--set) or its own type (notebooks), never rounded or
    truth-cast: 2.5 is no integer and "maybe" no boolean. nan and inf pass here: validate names them."""
    if kind is str and isinstance(value, os.PathLike):
        value = os.fspath(value)
    elif kind is bool and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        value = value.lower() in _TRUE
    elif kind in (int, float) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = kind(value)
    elif kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif kind is float and _is(value, int):
        value = float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ConfigError(f"{name} must be {_WORDS[kind]}, got {value!r}")


def _coerce(name: str, value: Any) -> Any:
    if _KINDS[name] is not tuple:
        return _scalar(name, value, _KINDS[name])
    items = [v for v in value.replace(" ", "").split(",") if v] if isinstance(value, str) else value
    try:
        return tuple(_scalar(name, v, int) for v in items)
    except (ConfigError, TypeError):
        raise ConfigError(f"{name} must be {_WORDS[tuple]}, got {value!r}") from None


def make_params(profile: str = "smoke", overrides: Mapping[str, Any] | None = None) -> Params:
    """Profile values, then overrides; every value checked, with the valid choices in the error."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    values: dict[str, Any] = {"profile": profile, **PROFILES[profile]}
    for name, value in (overrides or {}).items():
        if name not in _FIELDS or name == "profile":
            valid = ", ".join(n for n in _FIELDS if n != "profile")
            raise ConfigError(f"unknown parameter {name!r}; valid parameters: {valid}")
        values[name] = _coerce(name, value)
    params = Params(**values)
    validate(params)
    return params


def validate(p: Params) -> None:
    """Every field's type and range, and how fields must relate, before anything is provisioned."""
    for name, kind in _KINDS.items():
        value = getattr(p, name)
        if kind is tuple:
            if not isinstance(value, tuple) or not all(_is(v, int) and v > 0 for v in value):
                raise ConfigError(f"{name} must be {_WORDS[tuple]}, got {value!r}")
        elif not _is(value, kind):
            raise ConfigError(f"{name} must be {_WORDS[kind]}, got {value!r}")
    for name, (low, high) in BOUNDS.items():
        value = getattr(p, name)
        if value < low or (high is not None and value > high):
            valid = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be {valid}, got {value}")
    if p.warmup_queries >= p.n_queries:
        raise ConfigError(f"warmup_queries ({p.warmup_queries}) must be smaller than n_queries ({p.n_queries})")
    if p.top_k > p.n_vectors:
        raise ConfigError(f"top_k ({p.top_k}) must be at most n_vectors ({p.n_vectors}): a query cannot have more "
                          f"neighbours than there are vectors")
    if p.index_type == "IVF_FLAT" and p.ivf_nlist > p.n_vectors:
        raise ConfigError(f"ivf_nlist ({p.ivf_nlist}) must be at most n_vectors ({p.n_vectors}): IVF needs a "
                          f"vector per list to train")
    if p.milvus_pacing not in PACINGS:
        raise ConfigError(f"milvus_pacing {p.milvus_pacing!r} is not valid; valid: {', '.join(PACINGS)}")
    if p.index_type not in INDEX_TYPES:
        raise ConfigError(f"index_type {p.index_type!r} is not supported; valid: {', '.join(INDEX_TYPES)}")
    if p.metric_type not in METRIC_TYPES:
        raise ConfigError(f"metric_type {p.metric_type!r} is not supported; valid: {', '.join(METRIC_TYPES)}")
    if len(set(p.concurrency)) != len(p.concurrency):
        raise ConfigError(f"concurrency levels must differ, got {','.join(map(str, p.concurrency))}: each level "
                          f"is measured once per trial, so list it once")
    if p.dataset not in SYNTHETIC:
        path = Path(p.dataset)
        if path.suffix.lower() not in (".npy", ".fvecs", ".hdf5", ".h5"):
            raise ConfigError(f"dataset must be 'random', 'clustered' or a .npy, .fvecs or .hdf5 file, "
                              f"got {p.dataset!r}")
        if not path.is_file():
            raise ConfigError(f"dataset file not found: {p.dataset}")


# A cold restart of a deployment runs the user's hooks in this order: the store, the page caches,
# then Milvus (which comes up last, on cold caches, as the native stack's restart does).
HOOKS = ("restart_store", "drop_page_cache", "restart_milvus")
DEFAULT_HOOK_TIMEOUT_S = 600.0
_SECTIONS = {"milvus": ("uri", "token_env"),
             "s3": ("endpoint", "bucket", "root_path", "region", "access_key_env", "secret_key_env"),
             "hooks": (*HOOKS, "timeout_s")}
_REQUIRED = {"milvus": ("uri",), "s3": ("endpoint", "bucket", "access_key_env", "secret_key_env")}
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")   # it becomes part of collection names
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Deployment:
    """An existing Milvus and the bucket it persists into (msbench.yaml ``deployments:``): nothing is
    provisioned. Credentials are named by environment variable, never held: they are read when used."""

    name: str
    milvus_uri: str
    s3_endpoint: str
    bucket: str
    access_key_env: str
    secret_key_env: str
    milvus_token_env: str = ""       # empty: a Milvus without authentication
    root_path: str = "files"         # Milvus's minio.rootPath: every key it writes starts with it
    region: str = "us-east-1"
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    hooks: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)   # HOOKS -> commands
    hook_timeout_s: float = DEFAULT_HOOK_TIMEOUT_S   # for each command

    @property
    def credential_envs(self) -> dict[str, str]:
        """Which environment variable holds which credential (the names only)."""
        named = {"Milvus token": self.milvus_token_env, "S3 access key": self.access_key_env,
                 "S3 secret key": self.secret_key_env}
        return {what: env for what, env in named.items() if env}


def _is_url(value: Any) -> bool:
    """http(s)://HOST[:PORT] and nothing else: no user or password in it, no path."""
    try:
        url = urlparse(value) if isinstance(value, str) else None
        return (url is not None and url.scheme in ("http", "https") and bool(url.hostname) and url.port != 0
                and url.username is None and url.password is None and url.path in ("", "/")
                and not url.query and not url.fragment)
    except ValueError:   # a port that is not a number
        return False


def _is_command(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(w, str) and w for w in value))


# Each field's check and what is valid, by section ("" = the deployment's own fields).
_DEPLOYMENT_CHECKS: dict[tuple[str, str], tuple[Any, str]] = {
    ("", "description"): (lambda v: isinstance(v, str), "a string"),
    ("", "labels"): (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str)
                                                            for k, x in v.items()),
                     "a mapping of names to strings such as {store: MinIO, layout: 4-node EC} (quote numbers)"),
    ("milvus", "uri"): (_is_url, "an http:// or https:// URL such as http://milvus.example:19530 (no user or "
                                 "password in it: name the variable holding a token in token_env)"),
    ("s3", "endpoint"): (_is_url, "an http:// or https:// URL such as http://minio.example:9000 (no user, "
                                  "password or path in it)"),
    ("s3", "bucket"): (lambda v: isinstance(v, str) and bool(_BUCKET.match(v)),
                       "an S3 bucket name (3-63 lowercase letters, digits, '.' or '-')"),
    ("s3", "root_path"): (lambda v: isinstance(v, str) and ".." not in v.split("/"),
                          "Milvus's minio.rootPath, a key prefix such as files ('' for none)"),
    ("s3", "region"): (lambda v: isinstance(v, str) and bool(v), "a region name such as us-east-1"),
    **{(section, key): (lambda v: isinstance(v, str) and bool(_ENV_NAME.match(v)),
                        "the name of an environment variable such as MILVUS_TOKEN (its value is read when used)")
       for section, key in (("milvus", "token_env"), ("s3", "access_key_env"), ("s3", "secret_key_env"))},
    **{("hooks", hook): (lambda v: isinstance(v, list) and all(_is_command(c) for c in v),
                         "a list of commands, each a list of words, such as "
                         "[[kubectl, rollout, restart, deployment/milvus-querynode]]") for hook in HOOKS},
    ("hooks", "timeout_s"): (lambda v: _is(v, float) and 0 < v <= 3600,
                             "a number of seconds above 0, at most 3600 (for each command)"),
}


def _mapping(value: Any, where: str, valid: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(valid)}, got {value!r}")
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid: {', '.join(valid)}")
    return value


def parse_deployment(name: Any, raw: Any, source: str) -> Deployment:
    """One ``deployments:`` entry checked field by field; a ConfigError names the field and what is valid."""
    at = f"{source}: deployments.{name}"
    if not isinstance(name, str) or not _DEPLOYMENT_NAME.match(name):
        raise ConfigError(f"{source}: deployment name {name!r} must start with a letter and hold at most 64 "
                          f"letters, digits, '_' or '-' (it becomes part of each trial's collection name)")
    sections = {"": _mapping(raw, at, ("description", "labels", *_SECTIONS))}
    for section, keys in _SECTIONS.items():
        sections[section] = _mapping(raw.get(section) or {}, f"{at}.{section}", keys)
        missing = [k for k in _REQUIRED.get(section, ()) if k not in sections[section]]
        if missing:
            raise ConfigError(f"{at}.{section} needs {', '.join(missing)}")
    for (section, key), (ok, valid) in _DEPLOYMENT_CHECKS.items():
        if key in sections[section] and not ok(sections[section][key]):
            dotted = f"{section}.{key}" if section else key
            raise ConfigError(f"{at}.{dotted} must be {valid}, got {sections[section][key]!r}")
    milvus, s3, hooks = sections["milvus"], sections["s3"], sections["hooks"]
    return Deployment(
        name=name, milvus_uri=milvus["uri"].rstrip("/"), milvus_token_env=milvus.get("token_env", ""),
        s3_endpoint=s3["endpoint"].rstrip("/"), bucket=s3["bucket"], root_path=s3.get("root_path", "files").strip("/"),
        region=s3.get("region", "us-east-1"), access_key_env=s3["access_key_env"], secret_key_env=s3["secret_key_env"],
        description=raw.get("description", ""), labels=dict(raw.get("labels") or {}),
        hooks={hook: tuple(tuple(c) for c in hooks[hook]) for hook in HOOKS if hooks.get(hook)},
        hook_timeout_s=float(hooks.get("timeout_s", DEFAULT_HOOK_TIMEOUT_S)))


@dataclass
class UserConfig:
    """The optional msbench.yaml: backend overrides/additions, existing deployments, binary paths,
    work directory."""

    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    work_dir: str | None = None
    path: Path | None = None
    deployments: dict[str, Deployment] = field(default_factory=dict)


_USER_KEYS = ("backends", "deployments", "binaries", "work_dir")


def load_user_config(path: str | os.PathLike | None = None) -> UserConfig:
    """Read ``path``, else $MSBENCH_CONFIG, else ./msbench.yaml when present; nothing found = defaults."""
    candidate = path or os.environ.get("MSBENCH_CONFIG") or ("msbench.yaml" if Path("msbench.yaml").is_file() else None)
    if not candidate:
        return UserConfig()
    cfg_path = Path(candidate)
    if not cfg_path.is_file():
        raise ConfigError(f"config file not found: {cfg_path}")
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{cfg_path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path} must hold a mapping with keys {', '.join(_USER_KEYS)}")
    unknown = set(raw) - set(_USER_KEYS)
    if unknown:
        raise ConfigError(f"{cfg_path}: unknown keys {sorted(unknown)}; valid: {', '.join(_USER_KEYS)}")
    backends = raw.get("backends") or {}
    if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
        raise ConfigError(f"{cfg_path}: 'backends' must map backend names to mappings of fields")
    deployments = raw.get("deployments") or {}
    if not isinstance(deployments, dict):
        raise ConfigError(f"{cfg_path}: 'deployments' must map deployment names to mappings (milvus, s3, hooks, "
                          f"description, labels)")
    clash = sorted(set(deployments) & set(backends))
    if clash:
        raise ConfigError(f"{cfg_path}: {', '.join(clash)} named both a backend and a deployment; rename one")
    binaries = raw.get("binaries") or {}
    if not isinstance(binaries, dict) or not all(isinstance(v, str) and v for v in binaries.values()):
        raise ConfigError(f"{cfg_path}: 'binaries' must map names (weed, minio, rustfs, milvus) to paths, "
                          f"got {binaries!r}")
    work_dir = raw.get("work_dir")
    if work_dir is not None and not (isinstance(work_dir, str) and work_dir):
        raise ConfigError(f"{cfg_path}: 'work_dir' must be a directory path, got {work_dir!r}")
    return UserConfig(backends=backends, binaries=binaries, work_dir=work_dir, path=cfg_path,
                      deployments={name: parse_deployment(name, spec, str(cfg_path)) for name, spec in deployments.items()})
