"""Model export, offline path: any nn.Module with named tensor inputs -> one self-contained ONNX file, checked for
torch parity, optionally int8-quantized, benchmarked, built into a TensorRT engine where possible. Model-agnostic;
serving loads the result with `load_onnx`."""
from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

log = logging.getLogger(__name__)

BATCH_AXIS = "batch"
ShapeProfile = tuple[Sequence[int], Sequence[int], Sequence[int]]  # (min, opt, max) shape of one input
_ORT_DTYPES = {f"tensor({t})": onnx.helper.tensor_dtype_to_np_dtype(getattr(onnx.TensorProto, t.upper()))
               for t in ("float", "double", "float16", "int64", "int32", "int8", "uint8", "bool")}


class ParityError(ValueError):
    """Torch and ONNX Runtime disagree by more than the tolerance (or on the output shape)."""

    def __init__(self, message: str, max_abs_error: float, atol: float):
        super().__init__(message)
        self.max_abs_error = max_abs_error
        self.atol = atol


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot build here (not installed, no CUDA GPU, or no FP16 flag); the reason is the message."""


class _PositionalInputs(torch.nn.Module):
    """Adapter: the exporter passes inputs by position; the wrapped module takes them by name, in this order."""

    def __init__(self, module: torch.nn.Module, names: Sequence[str]):
        super().__init__()
        self.module = module
        self.names = tuple(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.module(**dict(zip(self.names, tensors)))


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the caller's train/eval mode afterwards (an online trainer keeps going)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _axes(example_inputs: Mapping[str, torch.Tensor], output: torch.Tensor, output_name: str,
          extra: Mapping[str, Mapping[int, str]] | None) -> dict[str, dict[int, str]]:
    """Axis 0 of every input and of the output is "batch"; `extra` adds axes (e.g. a history length)."""
    ranks = {name: t.dim() for name, t in example_inputs.items()} | {output_name: output.dim()}
    axes = {name: {0: BATCH_AXIS} for name in ranks}
    for name, named in (extra or {}).items():
        if name not in ranks:
            raise ValueError(f"dynamic_axes names {name!r}, which is neither an input nor the output {list(ranks)}")
        for axis, label in named.items():
            if not 0 <= axis < ranks[name]:
                raise ValueError(f"dynamic axis {axis} of {name!r} is out of range for rank {ranks[name]}")
            if axis == 0 and label != BATCH_AXIS:
                raise ValueError(f"axis 0 of {name!r} is the batch axis and must be named 'batch', not {label!r}")
            axes[name][axis] = label
    return axes


def export_onnx(module: torch.nn.Module, example_inputs: dict[str, torch.Tensor], output_name: str, path: Path,
                dynamic_axes: dict[str, dict[int, str]] | None = None, opset: int = 17) -> Path:
    """Write `module` as one ONNX file (weights inside, no external data); inputs named and ordered as the dict.

    Example inputs share one batch size >= 2 (a tracer may bake size-1 dims in). Output axes other than "batch" and
    those in `dynamic_axes` are recorded as static. Written atomically; the module's train/eval mode is restored."""
    if not example_inputs or not all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in example_inputs.values()):
        raise ValueError("example_inputs must be a non-empty dict of tensors, each with a batch axis")
    if not output_name or output_name in example_inputs:
        raise ValueError(f"output_name {output_name!r} must be non-empty and differ from the input names")
    batch_sizes = sorted({t.shape[0] for t in example_inputs.values()})
    if len(batch_sizes) != 1 or batch_sizes[0] < 2:
        raise ValueError(f"example inputs need one batch size >= 2 on axis 0, got {batch_sizes}")
    wrapper = _PositionalInputs(module, list(example_inputs))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _eval_mode(module), warnings.catch_warnings():
            output = wrapper(*example_inputs.values())
            if not isinstance(output, torch.Tensor) or output.dim() == 0 or output.shape[0] != batch_sizes[0]:
                raise ValueError("the module must return one tensor whose axis 0 is the batch, got "
                                 f"{type(output).__name__} {tuple(getattr(output, 'shape', ()))}")
            axes = _axes(example_inputs, output, output_name, dynamic_axes)
            path.parent.mkdir(parents=True, exist_ok=True)
            # TorchScript exporter on purpose (dynamo=False): the torch.export one needs onnxscript, which is not
            # a dependency, and this one takes dynamic_axes directly. Its deprecation warnings are known.
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX", DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
            torch.onnx.export(wrapper, tuple(example_inputs.values()), str(tmp), input_names=list(example_inputs),
                              output_names=[output_name], dynamic_axes=axes, opset_version=opset, dynamo=False,
                              export_params=True, do_constant_folding=True)
        model = onnx.load(str(tmp))  # the TorchScript exporter keeps weights inline (it refuses models over 2 GB)
        # The tracer names static output axes it cannot infer ("Divemb_dim_1"); record their sizes instead.
        for axis, dim in enumerate(model.graph.output[0].type.tensor_type.shape.dim):
            if axis not in axes[output_name] and not dim.HasField("dim_value"):
                dim.dim_value = int(output.shape[axis])
        onnx.checker.check_model(model, full_check=True)
        onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class OnnxModel:
    """One ONNX Runtime session with one output; `run` checks names, dtypes, ranks and shared axis sizes."""

    def __init__(self, session: ort.InferenceSession):
        if len(outputs := session.get_outputs()) != 1:
            raise ValueError(f"OnnxModel expects a model with one output, got {[o.name for o in outputs]}")
        self.session, self.output_name, self.providers = session, outputs[0].name, session.get_providers()
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.input_names = list(self.inputs)

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        missing, unknown = set(self.inputs) - set(inputs), set(inputs) - set(self.inputs)
        if missing or unknown:
            raise ValueError(f"model inputs are {self.input_names}; missing {sorted(missing)}, "
                             f"unknown {sorted(unknown)}")
        feeds = {name: np.asarray(inputs[name]) for name in self.inputs}
        sizes: dict[str, tuple[str, int]] = {}  # symbolic axis -> (first input seen with it, its size)
        for name, meta in self.inputs.items():
            array, expected = feeds[name], _ORT_DTYPES.get(meta.type)
            if expected is not None and array.dtype != expected:
                raise ValueError(f"input {name!r} has dtype {array.dtype}; the model expects {np.dtype(expected)}")
            if array.ndim != len(meta.shape):
                raise ValueError(f"input {name!r} has shape {array.shape}; the model expects {meta.shape}")
            for axis, (dim, size) in enumerate(zip(meta.shape, array.shape)):
                if isinstance(dim, int) and dim != size:
                    raise ValueError(f"input {name!r} axis {axis} is {size}; the model expects {dim}")
                if isinstance(dim, str):
                    seen = sizes.setdefault(dim, (name, size))
                    if seen[1] != size:
                        raise ValueError(f"axis {dim!r} is {size} in input {name!r} but {seen[1]} in {seen[0]!r}")
        return self.session.run([self.output_name], feeds)[0]


def default_providers() -> list[str]:
    """GPU execution providers onnxruntime offers here (TensorRT first, then CUDA), always ending with CPU."""
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]
    return gpu + ["CPUExecutionProvider"]


def load_onnx(path: Path, intra_op_threads: int = 1, providers: Sequence[str] | None = None) -> OnnxModel:
    """A session tuned for serving: fixed thread count (one per request worker by default), sequential."""
    if intra_op_threads < 1:
        raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
    providers = list(providers) if providers is not None else default_providers()
    unknown = [p for p in providers if p not in ort.get_available_providers()]
    if not providers or unknown:
        raise ValueError(f"providers {unknown or providers} not available; have {ort.get_available_providers()}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return OnnxModel(ort.InferenceSession(str(path), sess_options=options, providers=providers))


def check_parity(module: torch.nn.Module, onnx_path: Path, inputs: dict[str, torch.Tensor], atol: float = 1e-4,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> float:
    """Max abs difference between torch (eval, no_grad) and ONNX Runtime on the same inputs; raises above atol.
    ONNX Runtime on CPU by default: a check of the export, not of a GPU's reduced-precision kernels."""
    with _eval_mode(module):
        expected = module(**inputs).detach().cpu().numpy()
    got = load_onnx(onnx_path, providers=providers).run({k: v.detach().cpu().numpy() for k, v in inputs.items()})
    if got.shape != expected.shape:
        raise ParityError(f"output shape: torch {expected.shape}, onnx {got.shape}", float("inf"), atol)
    error = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0))
    if not error <= atol:  # also catches NaN
        raise ParityError(f"torch vs ONNX max abs error {error:.3g} > atol {atol:.3g} at input shapes "
                          f"{ {k: tuple(v.shape) for k, v in inputs.items()} }", error, atol)
    return error


def quantize_int8(onnx_path: Path, out_path: Path, per_channel: bool = True) -> Path:
    """Dynamic int8 quantization: int8 weights (per output channel by default), uint8 activations at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy import, offline path only
    if Path(out_path).resolve() == Path(onnx_path).resolve():
        raise ValueError(f"out_path must differ from onnx_path ({onnx_path}); quantization never overwrites")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(Path(onnx_path), Path(out_path), weight_type=QuantType.QInt8, per_channel=per_channel)
    return Path(out_path)


def benchmark_onnx(path: Path, inputs: Mapping[str, np.ndarray], repeats: int = 200, warmup: int = 20,
                   intra_op_threads: int = 1) -> dict:
    """Latency of one `run` call on CPU in microseconds: median, p90, mean, min over `repeats` timed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    model = load_onnx(path, intra_op_threads=intra_op_threads, providers=["CPUExecutionProvider"])
    us = np.empty(warmup + repeats)
    for i in range(warmup + repeats):
        start = time.perf_counter_ns()
        model.run(inputs)
        us[i] = (time.perf_counter_ns() - start) / 1e3
    us = us[warmup:]
    return {"median_us": float(np.median(us)), "p90_us": float(np.percentile(us, 90)), "mean_us": float(us.mean()),
            "min_us": float(us.min()), "repeats": repeats, "intra_op_threads": intra_op_threads}


def tensorrt_unavailable_reason(fp16: bool = True) -> str | None:
    """None when TensorRT can build (fp16) engines here; otherwise why not, in words a person can act on."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        return f"tensorrt is not installed: pip install tensorrt on a machine with an NVIDIA GPU ({exc})"
    if fp16 and not hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 11 removed it: precision must live in the graph
        return (f"tensorrt {trt.__version__} has no BuilderFlag.FP16 (strong typing only); build with fp16=False "
                "or convert the ONNX to fp16 first (ModelOpt AutoCast)")
    try:  # ask TensorRT, not torch: a CPU-only torch build says nothing about the GPU TensorRT would use
        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:  # noqa: BLE001 - whatever the builder raises, it means no usable CUDA GPU
        return f"tensorrt {trt.__version__} is installed but found no CUDA GPU ({exc})"
    return None


def optimization_profile_shapes(onnx_path: Path, min_batch: int = 1, opt_batch: int = 64, max_batch: int = 1024,
                                shape_profiles: Mapping[str, ShapeProfile] | None = None) -> dict[str, ShapeProfile]:
    """(min, opt, max) shape per input: `shape_profiles` where given (required for inputs with a dynamic axis
    besides the batch, e.g. history length), else the batch range on axis 0 and the static sizes."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    inputs = {i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
              for i in graph.input if i.name not in weights}
    given = dict(shape_profiles or {})
    if unknown := sorted(set(given) - set(inputs)):
        raise ValueError(f"shape_profiles names {unknown}, not inputs of the model ({list(inputs)})")
    profiles = {}
    for name, dims in inputs.items():
        if name not in given and any(d is None for d in dims[1:]):
            raise ValueError(f"input {name!r} has dynamic axes besides the batch ({dims}); "
                             "give its (min, opt, max) shapes in shape_profiles")
        lo, opt, hi = (tuple(int(x) for x in s) for s in given.get(name) or (
            (b, *dims[1:]) for b in (min_batch, opt_batch, max_batch)))
        if not (len(lo) == len(opt) == len(hi) == len(dims) and all(
                1 <= a <= b <= c and (d is None or a == c == d) for a, b, c, d in zip(lo, opt, hi, dims))):
            raise ValueError(f"shape profile for {name!r} must be min <= opt <= max per axis, rank {len(dims)}, "
                             f"static axes fixed at {dims}; got {lo}, {opt}, {hi}")
        profiles[name] = (lo, opt, hi)
    return profiles


def build_tensorrt_engine(onnx_path: Path, engine_path: Path, fp16: bool = True, min_batch: int = 1,
                          opt_batch: int = 64, max_batch: int = 1024, workspace_bytes: int = 1 << 30,
                          shape_profiles: Mapping[str, ShapeProfile] | None = None) -> Path:
    """Serialize a TensorRT plan (8.6 / 10; 11 with fp16=False) with one optimization profile, written atomically.
    The profile (`optimization_profile_shapes`) is checked first, so bad shapes fail even where TensorRT is absent."""
    profiles = optimization_profile_shapes(onnx_path, min_batch, opt_batch, max_batch, shape_profiles)
    if (reason := tensorrt_unavailable_reason(fp16)) is not None:
        log.warning("TensorRT engine not built for %s: %s", onnx_path, reason)
        raise TensorRTUnavailable(reason)
    import tensorrt as trt  # only here: the module imports without TensorRT
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 made every network explicit-batch (the flag is deprecated there); 8.x still needs it.
    explicit = int(trt.__version__.split(".")[0]) < 10
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    Path(engine_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(engine_path).with_name(f".{Path(engine_path).name}.{os.getpid()}.tmp")
    tmp.write_bytes(bytes(plan))
    return tmp.replace(engine_path)
