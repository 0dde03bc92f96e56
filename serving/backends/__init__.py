"""Inference backends behind one Protocol: onnxruntime (default; CUDA/TensorRT EPs where installed), torch
(debugging and the naive baseline). TensorRT engines are built by `newsrec export` where TensorRT exists."""
from __future__ import annotations

from pathlib import Path

from serving.backends.base import InferenceBackend

BACKENDS = ("onnxruntime", "torch")


def load_backend(name: str, version_dir: Path, intra_op_threads: int = 1, ranker_path: Path | None = None
                 ) -> InferenceBackend:
    """The backend `name` over a verified registry version directory. ranker_path: another verified ranker.onnx
    for the same features (an int8 child's, serving.int8_ranker); onnxruntime only, torch runs its own weights."""
    if name == "onnxruntime":
        from serving.backends.onnx import OnnxBackend

        return OnnxBackend(version_dir, intra_op_threads, ranker_path)
    if name == "torch":
        from serving.backends.torch_eager import TorchBackend

        return TorchBackend(version_dir, intra_op_threads)
    raise ValueError(f"unknown inference backend {name!r}; choose one of {', '.join(BACKENDS)}")
