"""Cutting PosenetDecoderOp off Coral's graphs so the plain TFLite runtime runs them."""

from pathlib import Path

import numpy as np
import pytest
import tflite

from vision.parts import surgery
from vision.pose.tflite import runtime

CORAL = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "coral"
BODYPIX = CORAL / "bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite"
BODYPIX_TPU = CORAL / "bodypix_mobilenet_v1_075_512_512_16_quant_decoder_edgetpu.tflite"
POSENET = CORAL / "posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite"
MOVENET = CORAL / "movenet_single_pose_lightning_ptq.tflite"

needs_shared = pytest.mark.skipif(not CORAL.is_dir(), reason=f"shared models absent: {CORAL}")


def _ops(buf: bytes) -> list[str]:
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    names = []
    for j in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(j).OpcodeIndex())
        names.append((code.CustomCode() or b"").decode() or f"builtin{code.BuiltinCode()}")
    return names


@needs_shared
def test_bodypix_loses_its_decoder_and_exposes_its_inputs():
    original = BODYPIX.read_bytes()
    stripped, info = surgery.strip_decoder(original)
    assert info.options["stride"] == 16 and info.options["max_detections"] == 20
    assert len(info.inputs) == 4 and len(info.outputs) == 5
    before, after = _ops(original), _ops(stripped)
    assert before[-1] == surgery.DECODER_OP and surgery.DECODER_OP not in after
    assert after == before[:-1]
    assert surgery.find_decoder(stripped) is None
    # Everything but the operators vector and the outputs field is byte-identical; the new
    # outputs vector is appended.
    changed = np.flatnonzero(np.frombuffer(original, np.uint8) != np.frombuffer(stripped[: len(original)], np.uint8))
    assert 0 < len(changed) <= 4 * len(before) + 8
    interpreter = runtime().Interpreter(model_content=stripped)
    interpreter.allocate_tensors()
    outputs = interpreter.get_output_details()
    assert [d["index"] for d in outputs[:4]] == list(info.inputs)
    assert [d["name"] for d in outputs] == [
        "float_heatmaps",
        "float_short_offsets",
        "float_mid_offsets",
        "float_long_offsets",
        "float_segments",
        "float_part_heatmaps",
    ]
    assert [tuple(d["shape"]) for d in outputs] == [(1, 33, 33, c) for c in (17, 34, 64, 34, 1, 24)]


@needs_shared
def test_edgetpu_build_keeps_its_edgetpu_op():
    stripped, info = surgery.strip_decoder(BODYPIX_TPU.read_bytes())
    assert _ops(stripped) == ["edgetpu-custom-op"]
    assert len(info.inputs) == 4


@needs_shared
def test_posenet_without_decoder_runs_on_the_plain_runtime():
    stripped, info = surgery.strip_decoder(POSENET.read_bytes())
    interpreter = runtime().Interpreter(model_content=stripped)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    shapes = [tuple(d["shape"][-1:]) for d in interpreter.get_output_details()]
    assert shapes == [(17,), (34,), (64,)] and len(info.inputs) == 3


@needs_shared
def test_models_without_the_op_and_non_models_are_refused():
    assert surgery.find_decoder(MOVENET.read_bytes()) is None
    with pytest.raises(surgery.ModelSurgeryError, match="no PosenetDecoderOp"):
        surgery.strip_decoder(MOVENET.read_bytes())
    with pytest.raises(surgery.ModelSurgeryError, match="not a TFLite model"):
        surgery.strip_decoder(b"GIF89a" + bytes(100))


@needs_shared
def test_stripped_model_is_cached_once_by_content(tmp_path):
    path, info = surgery.stripped_model(BODYPIX, tmp_path)
    assert path.parent == tmp_path and path.is_file()
    stamp = path.stat().st_mtime_ns
    again, _ = surgery.stripped_model(BODYPIX, tmp_path)
    assert again == path and path.stat().st_mtime_ns == stamp
    assert surgery.find_decoder(path.read_bytes()) is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
