"""Cut Coral's ``PosenetDecoderOp`` off a TFLite graph so that a plain runtime can run the rest.

Coral's PoseNet and BodyPix models end in that custom op; without Coral's plugin the interpreter
refuses to prepare the graph. Removing the op and making its input tensors (heatmaps, short,
mid and long offsets) graph outputs leaves a graph of builtin ops; the decoding then happens in
numpy (vision.parts.decode).

The edit is a minimal patch of the flatbuffer, located with the ``tflite`` schema package. The
subgraph's operators vector is shortened in place (the decoder's entry dropped). Its outputs get a
new vector appended to the end of the buffer, with the field re-pointed to it: the old outputs
vector is left untouched because a writer may share identical vectors between tables, and the
new one may be longer. Every other byte of the model (weights, quantization, the Edge TPU op) is
unchanged; the decoder's now unused output tensors and operator code stay, unreferenced.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tflite
from flatbuffers import flexbuffers

DECODER_OP = "PosenetDecoderOp"
# Field slots in the SubGraph table's vtable (schema order: tensors, inputs, outputs, operators):
# the byte offset of field n is 4 + 2 * n.
_SUBGRAPH_OUTPUTS = 8
_SUBGRAPH_OPERATORS = 10
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class ModelSurgeryError(ValueError):
    """The model does not have the shape this surgery expects (the message says what)."""


@dataclass(frozen=True)
class DecoderInfo:
    """Where the decoder op sits in subgraph 0 and what it reads and writes."""

    op_index: int
    inputs: tuple[int, ...]  # tensor indices: heatmaps, short offsets, mid offsets[, long offsets]
    outputs: tuple[int, ...]  # tensor indices of the op's results
    graph_outputs: tuple[int, ...]  # the subgraph's outputs before the edit
    options: dict  # the op's custom options (max_detections, score_threshold, stride, nms_radius)


def _ints(table, field: str) -> tuple[int, ...]:
    """An int vector of a generated table (e.g. field "Inputs"); empty when the field is absent."""
    return tuple(int(getattr(table, field)(i)) for i in range(getattr(table, f"{field}Length")()))


def _model(buf: bytes) -> tflite.Model:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelSurgeryError("not a TFLite model (the file identifier 'TFL3' is missing)")
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ModelSurgeryError("the model has no subgraph")
    return model


def find_decoder(buf: bytes) -> DecoderInfo | None:
    """The PosenetDecoderOp of subgraph 0, or None if the graph has none."""
    model = _model(buf)
    codes = {
        i
        for i in range(model.OperatorCodesLength())
        if (model.OperatorCodes(i).CustomCode() or b"").decode() == DECODER_OP
    }
    graph = model.Subgraphs(0)
    found = [j for j in range(graph.OperatorsLength()) if graph.Operators(j).OpcodeIndex() in codes]
    if not found:
        return None
    if len(found) > 1:
        raise ModelSurgeryError(f"the graph has {len(found)} {DECODER_OP} ops; expected one")
    op = graph.Operators(found[0])
    options = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes()) if op.CustomOptionsLength() else {}
    return DecoderInfo(found[0], _ints(op, "Inputs"), _ints(op, "Outputs"), _ints(graph, "Outputs"), dict(options))


def _append_vector(out: bytearray, items: list[int], packer: struct.Struct) -> int:
    """Append a flatbuffer vector (4-byte aligned length prefix + items); returns its position."""
    out.extend(b"\0" * (-len(out) % 4))
    start = len(out)
    out.extend(_U32.pack(len(items)))
    for item in items:
        out.extend(packer.pack(item))
    return start


def strip_decoder(buf: bytes) -> tuple[bytes, DecoderInfo]:
    """A copy of the model without its decoder op, whose inputs become the graph's first outputs.

    The graph's other outputs (those the decoder did not produce, e.g. BodyPix's segmentation
    and part heatmaps) follow in their original order. Raises ModelSurgeryError if there is no
    decoder op to remove.
    """
    info = find_decoder(buf)
    if info is None:
        raise ModelSurgeryError(f"the model has no {DECODER_OP} op to remove")
    graph = _model(buf).Subgraphs(0)
    tab = graph._tab  # the generated reader's table: its position and vtable lookups
    out_field, ops_field = tab.Offset(_SUBGRAPH_OUTPUTS), tab.Offset(_SUBGRAPH_OPERATORS)
    if not out_field or not ops_field:
        raise ModelSurgeryError("subgraph 0 lacks an outputs or operators vector")
    removed = set(info.outputs)
    for j in range(graph.OperatorsLength()):
        if j != info.op_index and removed & set(_ints(graph.Operators(j), "Inputs")):
            raise ModelSurgeryError(f"operator {j} reads the decoder's results: the op cannot be cut off")
    new_outputs = list(info.inputs) + [t for t in info.graph_outputs if t not in removed]

    # Absolute positions of the kept operator tables (each vector item is an offset relative to
    # the item's own position).
    ops_vector = tab.Vector(ops_field)
    targets = [tab.Indirect(ops_vector + 4 * j) for j in range(graph.OperatorsLength()) if j != info.op_index]

    out = bytearray(buf)
    # Operators: a vector of forward offsets to the operator tables, so it cannot move behind
    # them; it is shortened in place instead (each kept item moves down and is re-based).
    for j, target in enumerate(targets):
        item = ops_vector + 4 * j
        out[item : item + 4] = _U32.pack(target - item)
    out[ops_vector - 4 : ops_vector] = _U32.pack(len(targets))
    # Outputs: a new vector at the end (it may be longer than the old one), the field re-pointed.
    outputs_pos = _append_vector(out, new_outputs, _I32)
    field = tab.Pos + out_field
    out[field : field + 4] = _U32.pack(outputs_pos - field)  # forward: the vector is at the end
    return bytes(out), info


def default_cache_dir() -> Path:
    """Where decoder-less models are cached: <state_dir>/models."""
    from infra.settings import Settings

    return Path(Settings().state_dir) / "models"


def stripped_model(source: Path, cache_dir: Path) -> tuple[Path, DecoderInfo]:
    """The decoder-less twin of a model file, written once into cache_dir.

    The cached file's name carries a hash of the source bytes, so a changed source gets a new
    twin. Written through a temporary file and renamed, so concurrent workers never read half a
    file.
    """
    source = Path(source)
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = Path(cache_dir) / f"{source.stem}_nodecoder_{digest}.tflite"
    stripped, info = strip_decoder(data)
    if not target.is_file() or target.stat().st_size != len(stripped):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(stripped)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target, info
