"""Inference backends behind one Protocol: onnxruntime (default; CUDA/TensorRT EPs where installed), torch
(debugging and the naive baseline). TensorRT engines are built by `newsrec export` where TensorRT exists."""
from __future__ import annotations

from pathlib import Path

from serving.backends.base import InferenceBackend

BACKENDS = ("onnxruntime", "torch")


def load_backend(name: str, version_dir: Path, intra_op_threads: int = 1) -> InferenceBackend:
    """The backend `name` over a verified registry version directory."""
    if name == "onnxruntime":
        from serving.backends.onnx import OnnxBackend

        return OnnxBackend(version_dir, intra_op_threads)
    if name == "torch":
        from serving.backends.torch_eager import TorchBackend

        return TorchBackend(version_dir, intra_op_threads)
    raise ValueError(f"unknown inference backend {name!r}; choose one of {', '.join(BACKENDS)}")
