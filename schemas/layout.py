"""The object store's layout: every key any component reads or writes is built here, only from
validated ids.

Every id passes schemas.ids.validate_id before it becomes part of a key, so no message can make
a component write outside its own session's prefix ("../", slashes, look-alike characters).

    sessions/<session>/shards/<camera>-<index:05d>.tar   WebDataset shard of up to N samples
    sessions/<session>/index/<camera>-<index:05d>.json   what that shard holds and what was rejected
    sessions/<session>/manifest.json                     the dataset's summary (status, counts)
    sessions/<session>/preview.jpg                       a few samples: frame with pose | pose map
    sessions/<session>/dataset_ready.json                the DatasetReady that went out (assembler)
    sessions/<session>/consent.json                      the visitor's consent as the start recorded it
    sessions/<session>/coverage.json                     the guided capture's last Coverage (numbers, no pictures)
    sessions/<session>/checkpoints/<name>                training state (ckpt-*.pt, generator.pt,
                                                         face_generator.pt, started.json: when the
                                                         budget started)
    sessions/<session>/results/<name>                    rendition.mp4 (the newest version: the
                                                         visitor's link), rendition-v<n:03d>.mp4 (each
                                                         published version), versions.json (their
                                                         kinds and figures), oneshot.mp4,
                                                         side-by-side.mp4, samples.png, loss.png,
                                                         coherence.png, metrics.json, dance.png and
                                                         dance-v<n:03d>.png (the dance asked | rendered)
    sessions/<session>/plates/<camera>.png               the background plate the trainer used
    sessions/<session>/plates/<camera>.json              how it was made (source, masks, coverage)
    backgrounds/<camera>.png                             the empty booth (`booth background capture`)
    backgrounds/<camera>.json                            its size, frames and capture time
    references/<name>/latest.json                        which version is current
    references/<name>/v<version:04d>/<file>              one version of a reference dance
    references/<name>/source.<ext>                       the reference's original video
    models/base/v<version:04d>/<name>                    one base model: training state (ckpt-*.pt,
                                                         generator.pt) and manifest.json (written last)
    models/base/promoted.json                            the promoted version per configuration
    purged/<session>.json                                this session was purged (when): what stops
                                                         a trainer mid-job and keeps replays out

Retention (infra.retention): every key under sessions/ and purged/ has a class, each kept a number
of days after it was written (settings retention_*_days):

    frames        shards/, index/, preview.jpg: the visitor's frames and what is made of them
    checkpoints   checkpoints/: training state
    videos        results/: the rendition and the pictures made with it
    records       manifest.json, dataset_ready.json, consent.json, coverage.json and purge markers: no pictures;
                  kept as long as the longest of the others

references/ and models/ hold no visitor's data and have no class (kept).
"""

from __future__ import annotations

from schemas.ids import validate_id

SHARD_DIGITS = 5
SAMPLE_DIGITS = 8


def _index(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def session_prefix(session: str) -> str:
    return f"sessions/{validate_id(session, 'session')}/"


def checkpoints_prefix(session: str) -> str:
    return f"{session_prefix(session)}checkpoints/"


def results_prefix(session: str) -> str:
    return f"{session_prefix(session)}results/"


RESULT_FILES = frozenset(
    {
        "rendition.mp4",
        "side-by-side.mp4",
        "samples.png",
        "loss.png",
        "metrics.json",
        "coherence.png",
        "oneshot.mp4",
        "versions.json",
        "dance.png",
    }
)
RENDITION_VERSION_PREFIX = "rendition-v"


def result_key(session: str, filename: str) -> str:
    if filename not in RESULT_FILES:
        raise ValueError(f"{filename!r} is not a result file ({', '.join(sorted(RESULT_FILES))})")
    return f"{results_prefix(session)}{filename}"


def rendition_version_key(session: str, version: int) -> str:
    """One published version of the session's video (1, 2, ...); rendition.mp4 holds a copy of the newest."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"a rendition version is an integer >= 1, got {version!r}")
    return f"{results_prefix(session)}{RENDITION_VERSION_PREFIX}{version:03d}.mp4"


def dance_picture_key(session: str, version: int) -> str:
    """The dance picture of one version (trainer.fidelity: asked pose | rendered frame); dance.png holds the newest."""
    return rendition_version_key(session, version)[: -len(".mp4")].replace(RENDITION_VERSION_PREFIX, "dance-v") + ".png"


def dataset_ready_key(session: str) -> str:
    return f"{session_prefix(session)}dataset_ready.json"


def consent_key(session: str) -> str:
    return f"{session_prefix(session)}consent.json"


def coverage_key(session: str) -> str:
    return f"{session_prefix(session)}coverage.json"


SESSIONS_PREFIX = "sessions/"
PURGED_PREFIX = "purged/"


def purge_marker_key(session: str) -> str:
    return f"{PURGED_PREFIX}{validate_id(session, 'session')}.json"


# --- retention -------------------------------------------------------------------------------------
RETENTION_CLASSES = ("frames", "checkpoints", "videos", "records")
_RECORD_FILES = frozenset({"manifest.json", "dataset_ready.json", "consent.json", "coverage.json"})
_CLASS_OF_FOLDER = {"shards": "frames", "index": "frames", "checkpoints": "checkpoints", "results": "videos"}


def retention_class(key: str) -> str | None:
    """The retention class of a key (module doc), or None for what is kept (references, models).
    An unknown key under a session counts as frames: the strictest class for the visitor's data."""
    if key.startswith(PURGED_PREFIX):
        return "records"
    if not key.startswith(SESSIONS_PREFIX):
        return None
    rest = key[len(SESSIONS_PREFIX) :].partition("/")[2]
    folder, sep, _name = rest.partition("/")
    if sep:
        return _CLASS_OF_FOLDER.get(folder, "frames")
    return "records" if rest in _RECORD_FILES else "frames"


def session_of_key(key: str) -> str | None:
    """The session a key under sessions/ or purged/ belongs to (None for any other key)."""
    if key.startswith(SESSIONS_PREFIX):
        return key[len(SESSIONS_PREFIX) :].partition("/")[0] or None
    if key.startswith(PURGED_PREFIX) and key.endswith(".json"):
        return key[len(PURGED_PREFIX) : -len(".json")] or None
    return None


def kept_without_consent(session: str) -> frozenset[str]:
    """What is kept of a session without consent once its video is made: the video the visitor's
    link points to and records without pictures (the manifest, metrics, consent)."""
    return frozenset(
        {
            result_key(session, "rendition.mp4"),
            result_key(session, "metrics.json"),
            result_key(session, "versions.json"),
            manifest_key(session),
            dataset_ready_key(session),
            consent_key(session),
            coverage_key(session),
        }
    )


REFERENCES_PREFIX = "references/"
BASE_PREFIX = "models/base/"
BASE_PROMOTED_KEY = f"{BASE_PREFIX}promoted.json"


def base_version_prefix(version: int) -> str:
    """Where one base model version lives (its checkpoints and manifest.json)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"a base model version is an integer >= 1, got {version!r}")
    return f"{BASE_PREFIX}v{version:04d}/"


def base_manifest_key(version: int) -> str:
    return base_version_prefix(version) + "manifest.json"


BACKGROUNDS_PREFIX = "backgrounds/"


def plate_key(session: str, camera: str, suffix: str = "png") -> str:
    """The session's background plate of a camera (suffix "png") or its description ("json")."""
    if suffix not in ("png", "json"):
        raise ValueError(f"a plate is stored as png or json, not {suffix!r}")
    return f"{session_prefix(session)}plates/{validate_id(camera, 'camera')}.{suffix}"


def background_key(camera: str, suffix: str = "png") -> str:
    """The booth's empty background of a camera (suffix "png") or its description ("json")."""
    if suffix not in ("png", "json"):
        raise ValueError(f"a background is stored as png or json, not {suffix!r}")
    return f"{BACKGROUNDS_PREFIX}{validate_id(camera, 'camera')}.{suffix}"


def shard_name(camera: str, index: int) -> str:
    return f"{validate_id(camera, 'camera')}-{_index(index, 'shard index'):0{SHARD_DIGITS}d}"


def shard_key(session: str, camera: str, index: int) -> str:
    return f"{session_prefix(session)}shards/{shard_name(camera, index)}.tar"


def shard_index_key(session: str, camera: str, index: int) -> str:
    return f"{session_prefix(session)}index/{shard_name(camera, index)}.json"


def shards_prefix(session: str) -> str:
    return f"{session_prefix(session)}shards/"


def index_prefix(session: str) -> str:
    return f"{session_prefix(session)}index/"


def manifest_key(session: str) -> str:
    return f"{session_prefix(session)}manifest.json"


def preview_key(session: str) -> str:
    return f"{session_prefix(session)}preview.jpg"


def sample_key(camera: str, seq: int) -> str:
    """The WebDataset key of one sample: no dots, since WebDataset splits names at the first one."""
    return f"{validate_id(camera, 'camera')}-{_index(seq, 'seq'):0{SAMPLE_DIGITS}d}"


def parse_shard_name(name: str) -> tuple[str, int]:
    """'<camera>-<index>' (as in shard and index keys, without folder or suffix) -> (camera, index)."""
    camera, sep, index = name.rpartition("-")
    if not sep or not index.isdigit() or not index.isascii():
        raise ValueError(f"{name!r} is not a shard name of the form <camera>-<index>")
    return validate_id(camera, "camera"), int(index)


def reference_prefix(name: str) -> str:
    return f"{REFERENCES_PREFIX}{validate_id(name, 'reference name')}/"


def reference_latest_key(name: str) -> str:
    return f"{reference_prefix(name)}latest.json"


def reference_version_prefix(name: str, version: int) -> str:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"reference version must be an integer >= 1, got {version!r}")
    return f"{reference_prefix(name)}v{version:04d}/"


def reference_file_key(name: str, version: int, filename: str) -> str:
    # Only the fixed file names this package writes: never a name taken from input.
    if filename not in REFERENCE_FILES:
        raise ValueError(f"{filename!r} is not a reference file; expected one of {sorted(REFERENCE_FILES)}")
    return reference_version_prefix(name, version) + filename


def reference_source_key(name: str, suffix: str) -> str:
    """Where the original video of a reference is kept; suffix like '.mp4' (letters/digits only)."""
    ext = suffix.lstrip(".").lower()
    if not ext or len(ext) > 8 or not (ext.isascii() and ext.isalnum()):
        raise ValueError(f"video suffix {suffix!r} is not a plain file extension")
    return f"{reference_prefix(name)}source.{ext}"


REFERENCE_FILES = frozenset(
    {
        "poses.npz",
        "raw.npz",
        "glitches.csv",
        "preview.mp4",
        "meta.json",
        "corrections.csv",
        "parts.npz",
        "dancers.npz",
        # the dancer's generator (trainer.references.generator)
        "generator.pt",
        "generator.json",
        "generator.png",
    }
)
