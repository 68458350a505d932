"""The Edge TPU / CPU choice at the loader boundary, with an injected delegate loader and for real."""

import ctypes.util
import logging
from pathlib import Path

import pytest

from vision.pose import BackendUnavailable, load_estimator, tflite

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def model_pair(tmp_path):
    cpu, tpu = tmp_path / "m.tflite", tmp_path / "m_edgetpu.tflite"
    cpu.write_bytes(b"cpu")
    tpu.write_bytes(b"tpu")
    return cpu, tpu


def test_edgetpu_model_is_chosen_when_the_delegate_loads(model_pair, caplog):
    cpu, tpu = model_pair
    calls = []
    caplog.set_level(logging.INFO, logger="vision.pose.tflite")
    choice = tflite.choose_model(cpu, tpu, delegate_loader=lambda: calls.append(1) or object())
    assert choice.device == "edgetpu"
    assert choice.model_path == tpu
    assert calls == [1]
    # the same loader is kept so every per-thread interpreter gets its own delegate
    assert choice.delegate_loader is not None
    records = [r for r in caplog.records if r.name == "vision.pose.tflite"]
    assert len(records) == 1 and "edgetpu" in records[0].getMessage()


@pytest.mark.parametrize(
    "error",
    [
        OSError("libedgetpu.so.1: cannot open shared object file"),
        ValueError("Failed to load delegate from libedgetpu.so.1"),
    ],
)
def test_cpu_twin_is_chosen_when_the_delegate_fails(model_pair, error):
    cpu, tpu = model_pair

    def failing():
        raise error

    choice = tflite.choose_model(cpu, tpu, delegate_loader=failing)
    assert choice.device == "cpu"
    assert choice.model_path == cpu
    assert str(error) in choice.reason


def test_cpu_request_never_touches_the_delegate(model_pair):
    cpu, tpu = model_pair

    def must_not_run():
        raise AssertionError("delegate loader called")

    choice = tflite.choose_model(cpu, tpu, device="cpu", delegate_loader=must_not_run)
    assert (choice.device, choice.model_path) == ("cpu", cpu)


def test_missing_edgetpu_file_falls_back_with_reason(model_pair):
    cpu, tpu = model_pair
    tpu.unlink()
    choice = tflite.choose_model(cpu, tpu, delegate_loader=object)
    assert choice.device == "cpu" and "no Edge TPU model file" in choice.reason


def test_edgetpu_required_but_unavailable_is_a_clear_error(model_pair):
    cpu, tpu = model_pair

    def failing():
        raise OSError("no device")

    with pytest.raises(BackendUnavailable, match="Edge TPU requested but not usable.*no device"):
        tflite.choose_model(cpu, tpu, device="edgetpu", delegate_loader=failing)


def test_bad_device_and_missing_cpu_model_are_rejected(model_pair, tmp_path):
    cpu, tpu = model_pair
    with pytest.raises(ValueError, match="device must be"):
        tflite.choose_model(cpu, tpu, device="gpu")
    with pytest.raises(BackendUnavailable, match="model file not found"):
        tflite.choose_model(tmp_path / "absent.tflite", None)


@pytest.mark.skipif(ctypes.util.find_library("edgetpu") is not None, reason="an Edge TPU runtime is installed here")
def test_real_loader_falls_back_to_cpu_on_this_machine():
    if not SHARED.is_dir():
        pytest.skip(f"shared models folder absent: {SHARED}")
    with pytest.raises(OSError):
        tflite.load_edgetpu_delegate()
    estimator = load_estimator("auto", SHARED / "models")
    assert estimator.name == "movenet"
    assert estimator.device == "cpu"
    assert estimator.choice.model_path.name == "movenet_single_pose_lightning_ptq.tflite"
    assert "Edge TPU delegate unavailable" in estimator.choice.reason


def test_runtime_module_is_found():
    module = tflite.runtime()
    assert module.__name__ in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
    assert hasattr(module, "Interpreter") and hasattr(module, "load_delegate")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown pose backend 'openpose'"):
        load_estimator("openpose", Path("."))


@pytest.fixture
def blazepose_only(tmp_path, monkeypatch):
    """A models folder with BlazePose's files only (links to the shared copies), and no fallback."""
    from vision import models

    if not SHARED.is_dir():
        pytest.skip(f"shared models folder absent: {SHARED}")
    monkeypatch.setattr(models, "SHARED_MODELS", tmp_path / "nowhere")
    folder = tmp_path / "models"
    for name in models.NEEDS["blazepose"] + models.NEEDS["blazepose-lite"]:
        target = models.model_path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(models.model_path(SHARED / "models", name))
    return folder


def test_auto_runs_on_blazepose_where_movenet_is_missing_and_says_so_once(blazepose_only, caplog):
    with caplog.at_level(logging.WARNING, logger="vision.pose"):
        first = load_estimator("auto", blazepose_only, track=False)
        second = load_estimator("auto", blazepose_only)
    assert first.name == second.name == "blazepose"
    said = [r.getMessage() for r in caplog.records if "pose comes from BlazePose" in r.getMessage()]
    assert len(said) <= 1  # once per process (an earlier test may have said it already)
    from vision.pose import resolve_backend

    backend, folder, note = resolve_backend("auto", blazepose_only)
    assert (backend, folder) == ("blazepose", blazepose_only)
    assert "movenet_single_pose_lightning_ptq.tflite" in note


def test_a_named_backend_with_a_missing_model_says_which_file_and_how_to_install(blazepose_only):
    with pytest.raises(BackendUnavailable, match="movenet_single_pose_lightning_ptq.tflite") as info:
        load_estimator("movenet", blazepose_only)
    assert str(blazepose_only) in str(info.value) and "booth models --install" in str(info.value)


def test_auto_with_no_pose_model_at_all_names_both(tmp_path, monkeypatch):
    from vision import models

    monkeypatch.setattr(models, "SHARED_MODELS", tmp_path / "nowhere")
    with pytest.raises(BackendUnavailable, match="movenet_single_pose.*pose_detection.tflite"):
        load_estimator("auto", tmp_path / "empty")


def test_pick_model_finds_registry_names_in_a_models_folder(tmp_path):
    from vision import models

    cpu_name, tpu_name = "movenet_single_pose_lightning_ptq.tflite", "movenet_single_pose_lightning_ptq_edgetpu.tflite"
    for name in (cpu_name, tpu_name):
        models.model_path(tmp_path, name).parent.mkdir(parents=True, exist_ok=True)
        models.model_path(tmp_path, name).write_bytes(b"model")

    def failing():
        raise OSError("no device")

    on_tpu = tflite.pick_model(tmp_path, cpu_name, tpu_name, delegate_loader=object)
    assert (on_tpu.device, on_tpu.model_path) == ("edgetpu", tmp_path / "coral" / tpu_name)
    on_cpu = tflite.pick_model(tmp_path, cpu_name, tpu_name, delegate_loader=failing)
    assert (on_cpu.device, on_cpu.model_path) == ("cpu", tmp_path / "coral" / cpu_name)
    assert "no device" in on_cpu.reason
    with pytest.raises(models.ModelError, match="unknown model file 'nope.tflite'"):
        tflite.pick_model(tmp_path, "nope.tflite")


def test_blazepose_lite_needs_its_own_landmark_file(blazepose_only):
    from vision import models
    from vision.pose import resolve_backend

    models.model_path(blazepose_only, "pose_landmark_lite.tflite").unlink()
    assert resolve_backend("blazepose", blazepose_only) == ("blazepose", blazepose_only, "")
    with pytest.raises(BackendUnavailable, match="pose_landmark_lite.tflite"):
        resolve_backend("blazepose", blazepose_only, "lite")
    with pytest.raises(BackendUnavailable, match="pose_landmark_lite.tflite"):
        load_estimator("blazepose", blazepose_only, model="lite")
