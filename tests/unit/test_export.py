"""recsys.export on two toy modules with named inputs: ONNX export, parity, input checks, int8, TensorRT build."""
from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch

from recsys.export import (
    ParityError,
    TensorRTUnavailable,
    benchmark_onnx,
    build_tensorrt_engine,
    check_parity,
    default_providers,
    export_onnx,
    load_onnx,
    optimization_profile_shapes,
    quantize_int8,
    tensorrt_unavailable_reason,
)

VOCAB, DIM = 100, 16


class ScoreMLP(torch.nn.Module):
    """features [B, 12] -> scores [B]."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(12, 256), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                       torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


class TokenEncoder(torch.nn.Module):
    """tokens int64 [B, L], mask float [B, L] -> unit vectors [B, 16] (masked mean of embeddings, linear)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.proj = torch.nn.Linear(32, DIM)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1)
        pooled = (self.embed(tokens) * m).sum(1) / m.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(self.proj(pooled), dim=-1)


def _features(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"features": torch.randn(batch, 12, generator=torch.Generator().manual_seed(seed))}


def _tokens(batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(batch, length, generator=g) < 0.7).float()
    mask[:, 0] = 1.0
    return {"tokens": torch.randint(0, VOCAB, (batch, length), generator=g), "mask": mask}


def _numpy(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in inputs.items()}


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    torch.manual_seed(0)
    module = ScoreMLP()  # left in training mode: export and parity must use eval (dropout off)
    path = export_onnx(module, _features(8), "score", tmp_path_factory.mktemp("mlp") / "mlp.onnx")
    return module, path


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(1)
    module = TokenEncoder()
    path = export_onnx(module, _tokens(4, 5), "vector", tmp_path_factory.mktemp("enc") / "enc.onnx",
                       dynamic_axes={"tokens": {1: "history"}, "mask": {1: "history"}})
    return module, path


@pytest.fixture(scope="module")
def mlp_int8(mlp, tmp_path_factory):
    return quantize_int8(mlp[1], tmp_path_factory.mktemp("mlp8") / "mlp.int8.onnx")


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_export_writes_one_checked_file_with_named_dynamic_axes(mlp, encoder):
    for _, path in (mlp, encoder):
        onnx.checker.check_model(str(path), full_check=True)
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no external data, no temp file left
    graph = onnx.load(str(encoder[1])).graph
    assert [i.name for i in graph.input] == ["tokens", "mask"]
    assert [_dims(i) for i in graph.input] == [["batch", "history"], ["batch", "history"]]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [(o.name, _dims(o)) for o in graph.output] == [("vector", ["batch", DIM])]
    graph = onnx.load(str(mlp[1])).graph
    assert [(i.name, _dims(i)) for i in graph.input] == [("features", ["batch", 12])]
    assert [(o.name, _dims(o)) for o in graph.output] == [("score", ["batch"])]


def test_export_restores_training_mode(mlp):
    assert mlp[0].training


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_mlp_parity(mlp, batch):
    assert check_parity(mlp[0], mlp[1], _features(batch, seed=batch)) <= 1e-4
    assert mlp[0].training


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("length", [3, 20])
def test_encoder_parity(encoder, batch, length):
    inputs = _tokens(batch, length, seed=batch * 100 + length)
    assert check_parity(encoder[0], encoder[1], inputs) <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(load_onnx(encoder[1]).run(_numpy(inputs)), axis=1), 1.0, atol=1e-5)


def test_parity_error_carries_the_numbers(tmp_path):
    torch.manual_seed(2)
    module = ScoreMLP()
    path = export_onnx(module, _features(4), "score", tmp_path / "m.onnx")
    with torch.no_grad():
        module.net[-1].bias += 0.5
    with pytest.raises(ParityError, match=r"max abs error 0\.5 > atol 0\.0001") as info:
        check_parity(module, path, _features(7))
    assert info.value.max_abs_error == pytest.approx(0.5, abs=1e-4) and info.value.atol == 1e-4


class FirstTwo(torch.nn.Module):
    def forward(self, features):
        return features[:, :2]


def test_parity_error_on_shape_mismatch(mlp):
    with pytest.raises(ParityError, match=r"output shape: torch \(5, 2\), onnx \(5,\)"):
        check_parity(FirstTwo(), mlp[1], _features(5))


@pytest.mark.parametrize("inputs, message", [
    ({"tokens": np.zeros((2, 3), np.int64)}, r"missing \['mask'\], unknown \[\]"),
    ({"tokens": np.zeros((2, 3), np.int64), "mask": np.ones((2, 3), np.float32), "extra": np.zeros(2)},
     r"missing \[\], unknown \['extra'\]"),
    ({"token": np.zeros((2, 3), np.int64), "mask": np.ones((2, 3), np.float32)},
     r"model inputs are \['tokens', 'mask'\]; missing \['tokens'\], unknown \['token'\]"),
    ({"tokens": np.zeros((2, 3), np.int32), "mask": np.ones((2, 3), np.float32)},
     r"input 'tokens' has dtype int32; the model expects int64"),
    ({"tokens": np.zeros((2, 3), np.int64), "mask": np.ones((2, 3), np.float64)},
     r"input 'mask' has dtype float64; the model expects float32"),
    ({"tokens": np.zeros(3, np.int64), "mask": np.ones((2, 3), np.float32)}, r"input 'tokens' has shape \(3,\)"),
    ({"tokens": np.zeros((2, 3), np.int64), "mask": np.ones((2, 4), np.float32)},
     r"axis 'history' is 4 in input 'mask' but 3 in 'tokens'"),
], ids=["missing", "unknown", "wrong-name", "int32-tokens", "float64-mask", "rank", "length-mismatch"])
def test_run_rejects_bad_inputs_clearly(encoder, inputs, message):
    with pytest.raises(ValueError, match=message):
        load_onnx(encoder[1]).run(inputs)


def test_run_rejects_wrong_static_width(mlp):
    with pytest.raises(ValueError, match=r"input 'features' axis 1 is 11; the model expects 12"):
        load_onnx(mlp[1]).run({"features": np.zeros((2, 11), np.float32)})


class TwoOutputs(torch.nn.Module):
    def forward(self, features):
        return features, features


@pytest.mark.parametrize("module, inputs, output, axes, message", [
    (ScoreMLP(), {}, "score", None, "example_inputs must be a non-empty dict of tensors"),
    (ScoreMLP(), {"features": torch.tensor(1.0)}, "score", None, "each with a batch axis"),
    (ScoreMLP(), _features(1), "score", None, r"one batch size >= 2 on axis 0, got \[1\]"),
    (ScoreMLP(), _features(4), "features", None, "must be non-empty and differ from the input names"),
    (ScoreMLP(), _features(4), "score", {"history": {1: "h"}}, "names 'history', which is neither"),
    (ScoreMLP(), _features(4), "score", {"features": {0: "rows"}}, "must be named 'batch', not 'rows'"),
    (ScoreMLP(), _features(4), "score", {"features": {2: "x"}}, "axis 2 of 'features' is out of range"),
    (TwoOutputs(), _features(4), "score", None, "must return one tensor whose axis 0 is the batch, got tuple"),
    (TokenEncoder(), {"tokens": _tokens(4, 3)["tokens"], "mask": torch.ones(3, 3)}, "v", None,
     r"one batch size >= 2 on axis 0, got \[3, 4\]"),
], ids=["empty", "scalar", "batch-1", "name-clash", "unknown-axis-name", "renamed-batch", "axis-range", "tuple", "ragged"])
def test_export_rejects_bad_arguments(tmp_path, module, inputs, output, axes, message):
    with pytest.raises(ValueError, match=message):
        export_onnx(module, inputs, output, tmp_path / "m.onnx", dynamic_axes=axes)
    assert not list(tmp_path.iterdir())


def test_load_onnx_settings_and_provider_errors(mlp):
    assert default_providers()[-1] == "CPUExecutionProvider"
    model = load_onnx(mlp[1], intra_op_threads=2)
    assert model.input_names == ["features"] and model.output_name == "score"
    assert model.providers[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="providers \\['NoSuchExecutionProvider'\\] not available"):
        load_onnx(mlp[1], providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match=r"providers \[\] not available"):
        load_onnx(mlp[1], providers=[])
    with pytest.raises(ValueError, match="intra_op_threads must be >= 1"):
        load_onnx(mlp[1], intra_op_threads=0)


def test_load_onnx_refuses_two_outputs(tmp_path):
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch"])
    outs = [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["batch"]) for n in ("a", "b")]
    graph = h.make_graph([h.make_node("Identity", ["x"], [n]) for n in ("a", "b")], "two", [x], outs)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8), str(tmp_path / "two.onnx"))
    with pytest.raises(ValueError, match=r"one output, got \['a', 'b'\]"):
        load_onnx(tmp_path / "two.onnx")


def test_int8_mlp_keeps_the_ranking(mlp, mlp_int8):
    rows = _numpy(_features(500, seed=42))
    fp32, int8 = load_onnx(mlp[1]).run(rows), load_onnx(mlp_int8).run(rows)
    spread = fp32.max() - fp32.min()
    assert np.max(np.abs(int8 - fp32)) < 0.05 * spread
    top10 = set(np.argsort(-fp32)[:10])
    assert len(top10 & set(np.argsort(-int8)[:10])) >= 8
    assert np.corrcoef(fp32, int8)[0, 1] > 0.99
    assert mlp_int8.stat().st_size < mlp[1].stat().st_size / 2


def test_int8_encoder_stays_close(encoder, tmp_path):
    path = quantize_int8(encoder[1], tmp_path / "enc.int8.onnx")
    inputs = _numpy(_tokens(64, 20, seed=5))
    fp32, int8 = load_onnx(encoder[1]).run(inputs), load_onnx(path).run(inputs)
    assert np.min(np.sum(fp32 * int8, axis=1)) > 0.98  # cosine of unit vectors


def test_quantize_refuses_to_overwrite(mlp):
    with pytest.raises(ValueError, match="out_path must differ from onnx_path"):
        quantize_int8(mlp[1], mlp[1])


def test_benchmark_reports_latency(mlp, mlp_int8):
    rows = _numpy(_features(500, seed=3))
    for path in (mlp[1], mlp_int8):
        stats = benchmark_onnx(path, rows, repeats=20, warmup=3)
        assert 0 < stats["min_us"] <= stats["median_us"] <= stats["p90_us"]
        assert stats["repeats"] == 20 and stats["intra_op_threads"] == 1
    with pytest.raises(ValueError, match="need repeats >= 1 and warmup >= 0"):
        benchmark_onnx(mlp[1], rows, repeats=0)


def test_optimization_profile_shapes(mlp, encoder):
    assert optimization_profile_shapes(mlp[1], 1, 32, 512) == {"features": ((1, 12), (32, 12), (512, 12))}
    with pytest.raises(ValueError, match="'tokens' has dynamic axes besides the batch"):
        optimization_profile_shapes(encoder[1])
    given = {"tokens": ((1, 1), (64, 50), (512, 100)), "mask": ((1, 1), (64, 50), (512, 100))}
    assert optimization_profile_shapes(encoder[1], shape_profiles=given) == given
    with pytest.raises(ValueError, match="shape profile for 'features' must be min <= opt <= max"):
        optimization_profile_shapes(mlp[1], shape_profiles={"features": ((1, 12), (8, 12), (4, 12))})
    with pytest.raises(ValueError, match="static axes fixed"):
        optimization_profile_shapes(mlp[1], shape_profiles={"features": ((1, 11), (8, 12), (16, 12))})
    with pytest.raises(ValueError, match=r"names \['score'\], not inputs"):
        optimization_profile_shapes(mlp[1], shape_profiles={"score": ((1,), (2,), (3,))})
    with pytest.raises(ValueError, match="need 1 <= min_batch <= opt_batch <= max_batch"):
        optimization_profile_shapes(mlp[1], 8, 4, 16)


def test_tensorrt_fp16_engine(mlp, tmp_path):
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    engine = build_tensorrt_engine(mlp[1], tmp_path / "mlp.plan", fp16=True, min_batch=1, opt_batch=64,
                                   max_batch=512)
    assert engine.stat().st_size > 0


def test_tensorrt_unavailable_raises_with_the_reason(mlp, tmp_path, caplog):
    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is usable here; test_tensorrt_fp16_engine covers the build")
    with caplog.at_level(logging.WARNING, logger="recsys.export"):
        with pytest.raises(TensorRTUnavailable) as info:
            build_tensorrt_engine(mlp[1], tmp_path / "mlp.plan")
    assert str(info.value) == reason
    assert reason in caplog.text
    assert not (tmp_path / "mlp.plan").exists()
