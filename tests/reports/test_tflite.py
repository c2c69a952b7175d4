"""The int8 TFLite export measured in TensorFlow Lite Micro (issue 27), and model.pt2."""

import importlib.util
import json

import pandas as pd
import pytest
import torch

from blocks import Genome
from reports.final import FinalResult
from reports.tflite import Int8Error, TflmMeasurement, require_mcu
from tests.synthetic import TINY_GENOME, tiny_splits
from tests.test_search_cli import _digits_files, cli
from training import TrainConfig, train

mcu = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("litert_torch", "tflite_micro")),
                         reason="the [mcu] extra is not installed")


def test_standalone_norms_become_depthwise_convs_with_the_same_outputs():
    from blocks import build_model
    from reports.tflite import _standalone_norms_as_convs

    genome = Genome.from_string("i1x12x12n4-conv_c8_k3_ocab-conv_c8_k3_obac-conv_c8_k3-res_c8_ocab-gap-conv_c4_k1_oc")
    torch.manual_seed(0)
    model = build_model(genome).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
    converted = _standalone_norms_as_convs(model)
    x = torch.randn(3, 1, 12, 12)
    assert torch.allclose(converted(x), model(x), atol=1e-5)
    norms = lambda m: sum(isinstance(c, torch.nn.BatchNorm2d) for c in m.modules())  # noqa: E731
    assert norms(model) == 5 and norms(converted) == 2  # the plain unit's and the res block's second ('cb')


@mcu
def test_a_shared_block_converts_like_its_unshared_copies_in_int8():
    from blocks import build_model
    from reports.tflite import arena_bytes, export_int8, operators

    results = {}
    for name, text in {"shared": "i1x12x12n4-conv_c8_k3-dws_c8_psame_x3-gap-conv_c4_k1_b0_oc",
                       "copies": "i1x12x12n4-conv_c8_k3-dws_c8_psame-dws_c8_psame-dws_c8_psame-gap-conv_c4_k1_b0_oc"}.items():
        genome = Genome.from_string(text)
        torch.manual_seed(0)
        model = build_model(genome)
        with torch.no_grad():
            model.train()(torch.randn(32, 1, 12, 12))
        int8 = export_int8(model.eval(), genome, torch.randn(16, 1, 12, 12))
        results[name] = (operators(int8.flatbuffer), arena_bytes(int8.flatbuffer))
    # tied weights left the later applications in float (DEQUANTIZE, 2x the arena); untied they are int8
    assert "DEQUANTIZE" not in results["shared"][0]
    assert results["shared"] == results["copies"]


@mcu
def test_the_int8_file_holds_no_tensor_names_and_stays_under_its_estimate():
    from blocks import build_model
    from budgets import Limits, totals
    from reports.tflite import export_int8

    # four 16-channel dws blocks: 20,968 bytes with litert-torch's tensor names, 17% over the estimate
    genome = Genome.from_string("i1x28x28n10-conv_c8_k3-max_k2-dws_c16_psame-dws_c16_psame-dws_c16_psame-dws_c16_psame"
                                "-gap-conv_c10_k1_b0_oc")
    torch.manual_seed(0)
    int8 = export_int8(build_model(genome).eval(), genome, torch.randn(8, 1, 28, 28))
    assert b"litert_torch" not in int8.flatbuffer and b"Sequential" not in int8.flatbuffer
    assert int8.tflite_bytes <= Limits(precision="int8").flash_bytes(totals(genome))


def test_require_mcu_names_what_to_install(monkeypatch):
    import reports.tflite as tflite

    monkeypatch.setattr(tflite, "_importable", lambda module: module != "tflite_micro")
    with pytest.raises(Int8Error, match=r"need tflite-micro: pip install -e '\.\[mcu\]'"):
        require_mcu()


def test_the_cli_refuses_an_int8_search_without_the_extra_before_anything_runs(monkeypatch, tmp_path, capsys):
    import reports.tflite as tflite
    import run_search

    monkeypatch.setattr(tflite, "_importable", lambda module: False)
    code = run_search.main(["--budget", "2000", "--precision", "int8", "--out", str(tmp_path / "runs"),
                            "--data-dir", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "[mcu]" in err
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def trained():
    splits = tiny_splits()
    result = train(TINY_GENOME, splits, TrainConfig(epochs=4, device="cpu", evaluate_test=True, seed=0))
    assert result.status == "complete"
    return splits, result


@mcu
def test_int8_export_runs_in_tflm_close_to_fp32_in_the_smallest_arena_measured(trained):
    from reports.tflite import _runs_in, arena_breakdown, export_int8, measure_tflm, normalised, operators

    splits, result = trained
    model = export_int8(result.model, TINY_GENOME, normalised(splits.train_x[:64], splits.mean, splits.std))
    assert model.flatbuffer[4:8] == b"TFL3" and -128 <= model.input_zero_point <= 127 and model.input_scale > 0
    measured = measure_tflm(model, normalised(splits.test_x, splits.mean, splits.std), splits.test_y)
    fp32 = result.epochs[-1].test_acc
    assert fp32 > 60 and abs(measured.accuracy - fp32) <= 5, (measured.accuracy, fp32)
    assert measured.tflite_bytes == len(model.flatbuffer)
    arena = arena_breakdown(model.flatbuffer)
    assert arena["total"] == arena["head"] + arena["tail"] and measured.arena_bytes >= arena["total"]
    assert _runs_in(model.flatbuffer, measured.arena_bytes) and not _runs_in(model.flatbuffer, measured.arena_bytes - 1)
    ops = operators(model.flatbuffer)  # a conv with one input channel is a DEPTHWISE_CONV_2D in TFLite
    assert ops.count("CONV_2D") + ops.count("DEPTHWISE_CONV_2D") == 2 and "FULLY_CONNECTED" in ops


def _final(int8_accs, fp32_accs):
    seeds = list(range(len(fp32_accs)))
    final = FinalResult("g", 100, seeds, [[{"test_acc": a}] for a in fp32_accs], ["complete"] * len(seeds))
    final.int8 = {s: TflmMeasurement(a, 9000 + s, 12000) for s, a in zip(seeds, int8_accs)}
    return final


def test_the_verdict_is_judged_on_int8_with_precision_int8_and_measured_limits_are_checked():
    final = _final([99.0, 99.1, 99.05], [99.5, 99.52, 99.48])
    fp32 = final.summary(99.4)
    assert fp32["meets_target"] == "certain" and fp32["judged_on"] == "fp32"
    int8 = final.summary(99.4, on_int8=True, max_ram=9001, max_flash=12000)
    assert int8["meets_target"] == "no" and int8["judged_on"] == "int8" and int8["seeds_at_target"] == 0.0
    assert int8["int8_test_acc_mean"] == pytest.approx(99.05) and int8["int8_test_acc_min"] == 99.0
    assert int8["arena_bytes"] == 9002 and int8["tflite_bytes"] == 12000
    assert int8["measured_violations"] == ["arena 9,002 B > --max-ram 9,001 B"]


@mcu
@pytest.mark.slow
def test_an_int8_search_and_reproduce_on_real_digits(tmp_path):
    _, npz, _ = _digits_files(tmp_path)
    result = cli("--dataset", str(npz), "--budget", "2000", "--target", "50", "--trials", "2", "--epochs", "2",
                 "--final-top", "1", "--seeds", "2", "--final-epochs", "3", "--workers", "1", "--device", "cpu",
                 "--precision", "int8", "--max-ram", "9000", "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "int8 in TFLM: test accuracy" in result.stdout
    run_dir = tmp_path / "runs" / "digits-b2000"
    finals = json.loads((run_dir / "finals.json").read_text())
    (trial, final), = finals.items()
    assert final["judged_on"] == "int8" and len(final["int8_test_acc"]) == 2 and final["arena_bytes"] > 0
    assert final["measured_violations"] == ([f"arena {final['arena_bytes']:,} B > --max-ram 9,000 B"]
                                            if final["arena_bytes"] > 9000 else [])
    board = pd.read_csv(run_dir / "leaderboard.csv")
    row = board[board["trial"] == int(trial)].iloc[0]
    assert row["arena_bytes"] == final["arena_bytes"] and row["int8_test_acc_mean"] == final["int8_test_acc_mean"]
    folder = run_dir / "final" / f"trial{trial}"
    described = json.loads((folder / "model.int8.json").read_text())
    assert described["seed"] == 0 and described["input"]["layout"] == "NHWC" and described["arena_bytes"] > 0
    assert (folder / "model.int8.tflite").stat().st_size == described["tflite_bytes"] <= final["tflite_bytes"]  # seed 0's
    assert "On the device (int8 in TensorFlow Lite Micro)" in (run_dir / "report.html").read_text()
    program = torch.export.load(str(folder / "model.pt2")).module()
    assert program(torch.zeros(3, 1, 8, 8)).shape == (3, 10)

    again = cli("--reproduce", str(run_dir / "leaderboard.csv"), "--checkpoint", str(folder / "checkpoint_seed0.pt"),
                "--export", "tflite", "--out", str(tmp_path / "out"), "--device", "cpu")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"int8 in TFLM: test accuracy {final['int8_test_acc'][0]:.2f}%" in again.stdout
    assert Genome.from_string(json.loads((tmp_path / "out" / "digits-b2000-rank1" / "model.int8.json")
                                         .read_text())["genome"]).hash == Genome.from_string(row["genome"]).hash

    trained = cli("--reproduce", row["genome"], "--dataset", str(npz), "--epochs", "2", "--seeds", "2", "--export",
                  "tflite", "--target", "50", "--out", str(tmp_path / "again"), "--device", "cpu", "--workers", "1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "int8 in TensorFlow Lite Micro:" in trained.stdout and "target 50.0% (fp32 test accuracy)" in trained.stdout
    summary = json.loads(next((tmp_path / "again").glob("*/summary.json")).read_text())
    assert len(summary["int8_test_acc"]) == 2 and summary["judged_on"] == "fp32" and summary["arena_bytes"] > 0
    refused = cli("--reproduce", row["genome"].replace("n10-", "n10-conv_c4_k1_agelu-", 1), "--dataset", str(npz),
                  "--export", "tflite", "--out", str(tmp_path / "no"))
    assert refused.returncode == 2 and "field 'act': gelu" in refused.stderr and not (tmp_path / "no").exists()



# --- The hand-off (issue 40 item 3): a model you can flash ---

_TFLM_STUBS = {  # just enough of TFLM's API for the generated example to compile without TFLM
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": """#pragma once
namespace tflite { template <unsigned N> struct MicroMutableOpResolver {
#define OP(name) int Add##name() { return 0; }
OP(Conv2D) OP(DepthwiseConv2D) OP(MaxPool2D) OP(AveragePool2D) OP(Quantize) OP(Dequantize) OP(Add) OP(Mean)
OP(Reshape) OP(FullyConnected) OP(Softmax) OP(LogSoftmax) OP(Relu) OP(Relu6) OP(Mul) OP(Pad) OP(PadV2)
OP(HardSwish) OP(LeakyRelu) OP(Logistic) OP(Tanh) OP(Sum) OP(Squeeze) OP(Transpose) OP(Sub) OP(Concatenation)
}; }
""",
    "tensorflow/lite/micro/micro_interpreter.h": """#pragma once
#include <cstddef>
#include <cstdint>
enum TfLiteStatus { kTfLiteOk, kTfLiteError };
enum TfLiteType { kTfLiteFloat32, kTfLiteInt8 };
union TfLitePtrUnion { int8_t* int8; float* f; };
struct TfLiteTensor { TfLiteType type; TfLitePtrUnion data; };
namespace tflite { struct Model {}; inline const Model* GetModel(const void*) { return nullptr; }
struct MicroInterpreter { template <class R> MicroInterpreter(const Model*, R&, uint8_t*, size_t) {}
  TfLiteStatus AllocateTensors() { return kTfLiteOk; } TfLiteStatus Invoke() { return kTfLiteOk; }
  TfLiteTensor* input(int) { return nullptr; } TfLiteTensor* output(int) { return nullptr; } }; }
""",
    "tensorflow/lite/schema/schema_generated.h": "#pragma once\n",
}


@mcu
def test_the_firmware_sources_hold_the_exact_bytes_and_compile(tmp_path):
    import re
    import shutil
    import subprocess

    from blocks import build_model
    from reports.firmware import write_firmware
    from reports.tflite import arena_bytes, export_int8, operators

    genome = Genome.from_string("i1x12x12n4-conv_c8_k3-max_k2-dws_c8_psame-gap-conv_c4_k1_b0_oc")
    torch.manual_seed(0)
    model = build_model(genome)
    with torch.no_grad():
        model.train()(torch.randn(32, 1, 12, 12))
    int8 = export_int8(model.eval(), genome, torch.randn(16, 1, 12, 12))
    ops = operators(int8.flatbuffer)
    arena = arena_bytes(int8.flatbuffer)
    write_firmware(tmp_path, int8.flatbuffer, ops, arena, int8.input_scale, int8.input_zero_point, int8.input_dtype,
                   [1, 12, 12, 1], [0.13], [0.31], ["zero", 'one "1"', "two", "three"])
    source = (tmp_path / "model_data.cc").read_text()
    body = source[source.index("g_model_data[] = {"):source.index("};")]
    assert bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body)) == int8.flatbuffer
    assert "alignas(16) const unsigned char g_model_data[]" in source
    assert f"g_model_data_len = {len(int8.flatbuffer)};" in source
    header = (tmp_path / "model_data.h").read_text()
    size = int(re.search(r"kTensorArenaSize = (\d+);", header).group(1))
    assert size >= arena and size % 16 == 0 and f"kInputZeroPoint = {int8.input_zero_point};" in header
    resolver = (tmp_path / "model_ops.h").read_text()
    assert f"kNumOperators = {len(set(ops))};" in resolver
    assert all(f"op_resolver.Add{m}();" in resolver for m, op in (("Conv2D", "CONV_2D"), ("DepthwiseConv2D",
               "DEPTHWISE_CONV_2D"), ("MaxPool2D", "MAX_POOL_2D"), ("Mean", "MEAN")) if op in ops)
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to check the sources' syntax")
    for name, text in _TFLM_STUBS.items():
        (tmp_path / "stubs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "stubs" / name).write_text(text)
    (tmp_path / "main.cc").write_text('#include "model_data.h"\n#include <cstring>\nint main() {\n'
                                      '  return (g_model_data_len > 0 && std::strlen(kClassNames[1]) == 7) ? 0 : 1;\n}\n')
    built = subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path / "stubs"), "-I",
                            str(tmp_path), str(tmp_path / "main.cc"), str(tmp_path / "model_data.cc"),
                            str(tmp_path / "model_example.cc"), "-o", str(tmp_path / "check")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    assert subprocess.run([str(tmp_path / "check")]).returncode == 0  # the array links; a quoted class name reads back
