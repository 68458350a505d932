"""TFLite interpreter loading: which runtime, Edge TPU or CPU, one interpreter per thread.

A backend names its model files once: ``pick_model(models_dir, cpu_name, edgetpu_name)`` finds
them in the models folder and picks the device; ``runners(choice, num_threads)`` gives the
per-thread runners of that choice.

Two runtimes are accepted: ``ai_edge_litert`` (desktop, CI) and ``tflite_runtime`` (what a Coral
board has, next to Google's pycoral). An ``_edgetpu.tflite`` model only runs with the
``libedgetpu`` delegate, so the device is chosen once, at the loader boundary: if the delegate
loads, the Edge TPU model is used, otherwise the CPU twin, with the reason recorded and logged.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from vision import models
from vision.pose.base import BackendUnavailable

log = logging.getLogger(__name__)

EDGETPU = "edgetpu"
CPU = "cpu"
EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(
    platform.system(), "libedgetpu.so.1"
)
# What a delegate library raises when it is absent or finds no device.
DELEGATE_ERRORS = (OSError, ValueError, RuntimeError)

DelegateLoader = Callable[[], Any]


@lru_cache(maxsize=1)
def runtime() -> ModuleType:
    """The interpreter module: ai_edge_litert's, else tflite_runtime's."""
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendUnavailable("no TFLite runtime: install ai-edge-litert (or tflite-runtime on a Coral board)")


def load_edgetpu_delegate() -> Any:
    """Load the Edge TPU delegate; raises OSError/ValueError when there is no library or device."""
    try:
        from pycoral.utils import edgetpu as coral_edgetpu  # Coral boards ship this
    except ImportError:
        coral_edgetpu = None
    if coral_edgetpu is not None and hasattr(coral_edgetpu, "load_edgetpu_delegate"):
        return coral_edgetpu.load_edgetpu_delegate()
    return load_delegate_library(EDGETPU_LIB)


def load_delegate_library(library: str) -> Any:
    """Load a TFLite delegate plugin library; OSError if it is absent."""
    # Open the library ourselves first: a missing library then raises a plain OSError instead of
    # the runtime's half-built delegate object complaining on garbage collection.
    ctypes.CDLL(library)
    return runtime().load_delegate(library)


@dataclass(frozen=True)
class ModelChoice:
    """The model file and device picked for one model, and why."""

    device: str  # EDGETPU or CPU
    model_path: Path
    reason: str
    delegate_loader: DelegateLoader | None = field(default=None, compare=False)


def choose_model(
    cpu_model: Path,
    edgetpu_model: Path | None = None,
    *,
    device: str = "auto",
    delegate_loader: DelegateLoader | None = None,
) -> ModelChoice:
    """Pick the Edge TPU model when its delegate loads, else the CPU twin.

    device: "auto" (Edge TPU if possible), "edgetpu" (required: raise BackendUnavailable if it
    cannot be used) or "cpu". delegate_loader is injectable for tests; it defaults to
    load_edgetpu_delegate. The choice is logged once here.
    """
    if device not in ("auto", EDGETPU, CPU):
        raise ValueError(f"device must be 'auto', 'edgetpu' or 'cpu', got {device!r}")
    loader = delegate_loader or load_edgetpu_delegate
    if device == CPU:
        choice = ModelChoice(CPU, Path(cpu_model), "CPU requested")
    elif edgetpu_model is None or not Path(edgetpu_model).is_file():
        choice = ModelChoice(CPU, Path(cpu_model), f"no Edge TPU model file ({edgetpu_model})")
    else:
        try:
            loader()  # probe only: every interpreter loads its own delegate instance
        except DELEGATE_ERRORS as e:
            choice = ModelChoice(CPU, Path(cpu_model), f"Edge TPU delegate unavailable: {e}")
        else:
            choice = ModelChoice(EDGETPU, Path(edgetpu_model), "Edge TPU delegate loaded", loader)
    if device == EDGETPU and choice.device != EDGETPU:
        raise BackendUnavailable(f"Edge TPU requested but not usable: {choice.reason}")
    if choice.device == CPU and not choice.model_path.is_file():
        raise BackendUnavailable(f"model file not found: {choice.model_path}")
    log.info("%s: using %s on %s (%s)", choice.model_path.stem, choice.model_path.name, choice.device, choice.reason)
    return choice


def pick_model(
    models_dir: Path,
    cpu_name: str,
    edgetpu_name: str | None = None,
    *,
    device: str = "auto",
    delegate_loader: DelegateLoader | None = None,
) -> ModelChoice:
    """choose_model for model files of the registry (vision.models), named as they are there:
    their paths in models_dir, then the device, as choose_model picks it."""
    cpu_model = models.model_path(models_dir, cpu_name)
    edgetpu_model = models.model_path(models_dir, edgetpu_name) if edgetpu_name is not None else None
    return choose_model(cpu_model, edgetpu_model, device=device, delegate_loader=delegate_loader)


def runners(choice: ModelChoice, num_threads: int = 1, extra_delegates: tuple = ()) -> PerThread:
    """The chosen model's runners, one interpreter per calling thread, built on first use."""
    return PerThread(lambda: Runner(make_interpreter(choice, num_threads, extra_delegates)))


def make_interpreter(choice: ModelChoice, num_threads: int = 1, extra_delegates: tuple = ()) -> Any:
    """A new interpreter for the chosen model, tensors allocated."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    delegates = list(extra_delegates)
    if choice.device == EDGETPU:
        if choice.delegate_loader is None:
            raise BackendUnavailable(f"{choice.model_path.name}: chosen for the Edge TPU without a delegate")
        delegates.insert(0, choice.delegate_loader())
    interpreter = runtime().Interpreter(
        model_path=str(choice.model_path), num_threads=num_threads, experimental_delegates=delegates or None
    )
    interpreter.allocate_tensors()
    return interpreter


class PerThread:
    """One lazily built object per calling thread: TFLite interpreters are not thread-safe."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._local = threading.local()

    def get(self) -> Any:
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._local.obj = self._factory()
        return obj


class Runner:
    """Thin wrapper: set inputs, invoke, read outputs by position."""

    def __init__(self, interpreter: Any):
        self.interpreter = interpreter
        self.inputs = interpreter.get_input_details()
        self.outputs = interpreter.get_output_details()

    def __call__(self, *arrays) -> list:
        for detail, array in zip(self.inputs, arrays):
            self.interpreter.set_tensor(detail["index"], array)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self.outputs]
