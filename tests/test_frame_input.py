"""The fast frame path and the in-graph preprocessing (pipeline.frame_plan / frame_graph / frame_variant).

One plan per frame size, three executors (Pillow, numpy, an ONNX graph): they must agree with each
other and with the exact (timm/PIL) path; the graph must run in ONNX Runtime, stay out of INT8 after
calibration, build with TensorRT-RTX (real build), and be picked up by the runtime on its own.
The full-size measurements (5,000 val images x 3 frame sizes + the photos) are `make
frame-accuracy`; here a few hundred frames keep the suite fast.
"""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from inception_deploy.pipeline import frame_io, frame_plan
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.cli import main
from inception_deploy.pipeline.errors import CheckFailed, UserError
from inception_deploy.pipeline.frame_variant import camera_frame, variant_path, write_frame_variant
from inception_deploy.pipeline.preprocess import Preprocessing

BICUBIC_299 = Preprocessing((299, 299), 0.875, "center", "bicubic", (0.5,) * 3, (0.5,) * 3)
BILINEAR_56 = Preprocessing((56, 56))
SIZES = ((480, 640), (720, 1280), (1080, 1920))


def _photo_frames(photos_dir, count):
    names = sorted(os.listdir(photos_dir))[:: 200 // count][:count]
    for name in names:
        with Image.open(os.path.join(photos_dir, name)) as img:
            yield name, img.convert("RGB")


def test_plan_geometry_reads_the_crop_and_its_filter_reach_only():
    plan = frame_plan.plan_frame(BILINEAR_56, 1080, 1920)
    assert plan.output_size == (56, 56) and plan.factor == (1, 1)       # no box step at camera sizes
    y0, x0, y1, x1 = plan.region
    by0, bx0, by1, bx1 = plan.box
    reach = 1080 / 64                                                    # the triangle's half-width, source pixels
    assert y0 <= by0 - reach and y1 >= by1 + reach and x0 <= bx0 - reach and x1 >= bx1 + reach
    assert (y1 - y0) * (x1 - x0) < 0.55 * 1080 * 1920                    # the point: most pixels are never read
    assert frame_plan.plan_frame(BILINEAR_56, 1080, 1920) is plan        # cached per frame size
    big = frame_plan.plan_frame(BILINEAR_56, 2160, 3840)                 # 4K into 56x56: 34x shrink -> box step
    assert big.factor == (3, 3) and big.reduced_size == (-(-(big.region[2] - big.region[0]) // 3),
                                                         -(-(big.region[3] - big.region[1]) // 3))
    assert frame_plan.plan_frame(BICUBIC_299, 1080, 1920).factor == (1, 1)
    assert frame_plan.reduction_factor(40.0, "bicubic") == 8 and frame_plan.reduction_factor(40.0, "nearest") == 1
    assert json.loads(json.dumps(plan.to_dict()))["frame_size"] == [1080, 1920]


@pytest.mark.parametrize("bad", ["1920", "1920x", "x1080", "0x10", "axb", "99999x2"])
def test_frame_sizes_are_width_x_height_or_a_clear_error(bad):
    assert frame_io.parse_frame_size(" 1920x1080 ") == (1080, 1920)
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        frame_io.parse_frame_size(bad)


@pytest.mark.parametrize("pre", [BILINEAR_56, BICUBIC_299], ids=["bilinear56", "bicubic299"])
@pytest.mark.parametrize("reach", [frame_plan.REMAINING_REACH, 3.0], ids=["default", "box-step"])
def test_pillow_and_numpy_executors_run_the_same_plan(pre, reach, photos_dir):
    """Pillow (8-bit fixed point) and numpy (float, PIL's rounding emulated) on the same plan: at
    most 2 grey levels apart on any pixel, on under 1 % of the pixels (5 % with a box step, where
    Image.reduce's own fixed-point mean rounds differently near .5)."""
    diffs = []
    for _, img in _photo_frames(photos_dir, 6):
        for size in SIZES:
            frame = camera_frame(img, size)
            plan = frame_plan.plan_frame(pre, size[0], size[1], reach)
            a = frame_plan.run_pillow(frame, plan).astype(np.float32)
            b = frame_plan.run_numpy(frame, plan)
            assert a.shape == b.shape == pre.input_size + (3,)
            diffs.append(np.abs(a - b).ravel())
    d = np.concatenate(diffs)
    assert d.max() <= 2.0 and (d > 0).mean() < (0.05 if reach == 3.0 else 0.01), (d.max(), (d > 0).mean())
    if reach == 3.0 and pre is BILINEAR_56:
        assert frame_plan.plan_frame(pre, 1080, 1920, reach).factor == (5, 5)     # the box step really ran


def test_fast_path_agrees_with_the_exact_path_on_camera_frames(test_model_onnx, val_dir):
    """300 val images (class-balanced) as 640x480 / 1920x1080 frames: the test model's top-1 on the
    fast path equals the exact path's on >= 99 % (the full run, make frame-accuracy, measures all
    5,000 at three sizes), and the mean KL stays below 1e-4."""
    from inception_deploy.benchmarks.frame_accuracy import Settings, run

    report = run(test_model_onnx, val_dir, None, Settings(sizes=((480, 640), (1080, 1920)), count=300, graph=False))
    rows = {r["set"]: r for r in report["rows"]}
    assert set(rows) == {"val 640x480", "val 1920x1080"}
    for r in rows.values():
        assert r["images"] == 300 and r["path"] == "fast"
        assert r["top1_agreement"] >= 0.99 and r["mean_kl"] <= 1e-4 and r["max_abs_levels"] <= 2.0 + 1e-3, r


# -- the graph -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def network(test_model_onnx):
    from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend(test_model_onnx, threads=1) as b:
        yield b


@pytest.mark.parametrize("size", [(480, 640), (1080, 1920), (2160, 3840)], ids=["640x480", "1920x1080", "3840x2160"])
def test_graph_computes_what_the_numpy_executor_computes(size, test_model_onnx, network, photos_dir, tmp_path):
    """ONNX Runtime on the frame-input model = the network on run_numpy's output (same float arithmetic,
    same 8-bit rounding steps); 3840x2160 exercises the AveragePool box step with partial blocks."""
    import onnx

    from inception_deploy.pipeline.frame_graph import PREFIX, add_frame_input, prefix_quantization_problems
    from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    m = mf.read(test_model_onnx)
    pre = m.preprocessing_obj()
    model = add_frame_input(onnx.load(test_model_onnx), pre, size)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node if n.name.startswith(PREFIX)}
    assert {"Cast", "Slice", "Transpose", "MatMul", "Floor", "Clip", "Gather", "Mul", "Add"} <= ops
    assert ("AveragePool" in ops) == (size == (2160, 3840))
    assert prefix_quantization_problems(model) == []
    assert model.graph.input[0].name == "frame" and len(model.graph.input) == 1
    path = str(tmp_path / "frame.onnx")
    onnx.save(model, path)
    plan = frame_plan.plan_frame(pre, size[0], size[1])
    with OnnxRuntimeBackend(path, threads=1) as graph:
        assert graph.input_dtype == np.uint8 and graph.input_shape == size + (3,)
        for _, img in _photo_frames(photos_dir, 3):
            frame = camera_frame(img, size)
            want = network.infer(pre._normalise_hwc(frame_plan.run_numpy(frame, plan))[None])
            got = graph.infer(frame[None])
            # float sums of a block can land either side of .5 before the 8-bit rounding of the box step
            np.testing.assert_allclose(got, want, atol=2e-4 if plan.factor == (1, 1) else 5e-3, rtol=0)
            assert got.argmax() == network.infer(pre.frame(frame)[None]).argmax()
        two = np.stack([frame, frame[::-1].copy()])
        np.testing.assert_allclose(graph.infer(two)[0], got[0], atol=1e-5)       # dynamic batch


def test_prefix_check_finds_int8_tensors_in_the_preprocessing(test_model_onnx):
    import onnx
    from onnx import helper

    from inception_deploy.pipeline.frame_graph import PREFIX, add_frame_input, prefix_quantization_problems

    pre = mf.read(test_model_onnx).preprocessing_obj()
    model = add_frame_input(onnx.load(test_model_onnx), pre, (480, 640))
    first = next(n for n in model.graph.node if n.name.startswith(PREFIX) and n.op_type == "Slice")
    source = first.input[0]
    first.input[0] = "dq_out"
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", [source, "s"], ["dq_out"], name="planted_dq"))
    problems = prefix_quantization_problems(model)
    assert len(problems) == 1 and "reads the INT8 tensor dq_out" in problems[0]


# -- the artifacts: export, calibrate's variants, build, runtime -----------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory, test_model_onnx, val_dir):
    """export --frame-input 640x480 of the test model (the real CLI)."""
    out = str(tmp_path_factory.mktemp("frame_export"))
    assert main(["export", "--model", "local-dir:" + os.path.relpath(os.path.join("models", "tiny_inception.tiny200")),
                 "--out", out, "--parity-count", "8", "--parity-images", val_dir, "--frame-input", "640x480"]) == 0
    return out


def test_export_frame_input_writes_the_variant_with_its_manifest(exported, capsys):
    net = mf.read(os.path.join(exported, "model.onnx"), expect_kind="onnx")
    assert net.stage["frame_inputs"] == ["640x480"] and net.io["input"]["dtype"] == "float32"
    path = os.path.join(exported, "model.frame-640x480.onnx")
    m = mf.read(path, expect_kind="onnx")
    assert m.io["input"]["dtype"] == "uint8" and m.io["input"]["layout"] == "NHWC" and m.io["input"]["color"] == "BGR"
    assert m.io["input"]["shape"] == ["batch", 480, 640, 3] and m.io["input"]["plan"]["region"]
    assert m.parent["sha256"] == net.artifact["sha256"] and m.preprocessing == net.preprocessing
    parity = m.stage["parity"]
    assert parity["images"] == 32 and parity["top1_agreement"] >= 0.9 and parity["passed"]
    assert frame_io.frame_input_size(m.io) == (480, 640) and frame_io.frame_input_size(net.io) is None


def test_export_rejects_a_bad_frame_size_before_writing_anything(tmp_path, capsys):
    out = str(tmp_path / "x")
    code = main(["export", "--model", "local-dir:models/tiny_inception.tiny200", "--out", out, "--frame-input", "1920"])
    assert code == 2 and "expected WIDTHxHEIGHT" in capsys.readouterr().err and not os.path.exists(out)


def test_int8_variant_keeps_the_preprocessing_out_of_int8_in_the_tensorrt_rtx_build(engines_onnx_dir, val_dir,
                                                                                    tmp_path):
    """The calibrate stage's step on a real Q/DQ model: prefix added after quantization, no Q/DQ in it,
    and TensorRT-RTX really builds it: every prefix layer Float, every convolution Int8, uint8 input."""
    import onnx

    folder = str(tmp_path / "onnx")
    shutil.copytree(engines_onnx_dir, folder)
    int8 = os.path.join(folder, "model.int8.onnx")
    m = write_frame_variant(int8, (480, 640), val_dir, parity_count=16)
    assert m.kind == "onnx-int8" and m.artifact["file"] == "model.int8.frame-640x480.onnx"
    model = onnx.load(variant_path(int8, (480, 640)))
    q_inputs = [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert "input" in q_inputs                    # the network input is still quantized right after the prefix
    out = str(tmp_path / "run")
    assert main(["build", "--onnx-dir", folder, "--target", "rtx", "--precision", "int8", "--out", out,
                 "--frame-input", "640x480", "--quiet"]) == 0
    engine = os.path.join(out, "engines", "rtx", m.model.name, "int8-frame-640x480", "model.engine")
    em = mf.read(engine, expect_kind="engine")
    layers = em.stage["layers"]
    assert set(layers["frame_preprocess_precision"]) == {"Float"} and sum(layers["frame_preprocess_precision"].values()) >= 4
    assert set(layers["conv_input_precision"]) == {"Int8"}
    assert not [c for c in layers["concat_non_int8"] if "frame_preprocess" in c["tensor"] + c["layer"]]
    assert em.io["input"]["dtype"] == "uint8" and em.stage["batch_profile"]["shapes"]["frame"]["max"][1:] == [480, 640, 3]
    with open(os.path.join(os.path.dirname(engine), "model.engine.log")) as f:
        assert "DataType: UInt8" in f.read()


def test_build_names_the_missing_variant(engines_onnx_dir, tmp_path, capsys):
    code = main(["build", "--onnx-dir", engines_onnx_dir, "--target", "rtx", "--precision", "fp16", "--out",
                 str(tmp_path), "--frame-input", "1280x720"])
    err = capsys.readouterr().err
    assert code == 2 and "model.fp16.frame-1280x720.onnx not found" in err and "export --frame-input 1280x720" in err


def test_classifier_feeds_frames_to_a_frame_input_model_as_they_are(exported, photos_dir):
    from inception_deploy.runtime import Classifier

    with Classifier.load(os.path.join(exported, "model.frame-640x480.onnx"), threads=1) as graph, \
            Classifier.load(os.path.join(exported, "model.onnx"), threads=1) as cpu:
        assert graph.frame_size == (480, 640) and cpu.frame_size is None
        assert graph.backend.input_dtype == np.uint8
        frames = [camera_frame(img, (480, 640)) for _, img in _photo_frames(photos_dir, 4)]
        for frame in frames:
            assert graph.preprocess(frame) is frame or np.array_equal(graph.preprocess(frame), frame)
            a, b = graph.classify(frame, top_k=3), cpu.classify(frame, top_k=3)
            assert [p.label_id for p in a] == [p.label_id for p in b]
            np.testing.assert_allclose([p.probability for p in a], [p.probability for p in b], atol=2e-3)
        assert [r[0].label_id for r in graph.classify_batch(frames)] == [graph.classify(f)[0].label_id for f in frames]
        with pytest.raises(ValueError, match="takes 640x480 frames .* got 1280x720"):
            graph.classify(camera_frame(Image.new("RGB", (64, 64)), (720, 1280)))
        with pytest.raises(ValueError, match="uint8"):
            graph.logits(np.zeros((1, 480, 640, 3), dtype=np.float32))


def test_bench_and_verify_leave_frame_variants_to_frame_accuracy(exported, capsys):
    from inception_deploy.benchmarks.runners.factory import candidate_for, discover

    found = discover(exported)
    assert [os.path.basename(c.path) for c in found] == ["model.onnx"]
    with pytest.raises(UserError, match="takes camera frames"):
        candidate_for(os.path.join(exported, "model.frame-640x480.onnx"))


def test_a_failing_variant_parity_writes_nothing(exported, tmp_path, monkeypatch, val_dir):
    """A prefix that does the wrong thing (the manifest's mean/std ignored) fails its parity check."""
    from inception_deploy.pipeline import frame_graph

    folder = str(tmp_path)
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(exported, name), os.path.join(folder, name))
    real = frame_graph.preprocessing_graph
    monkeypatch.setattr(frame_graph, "preprocessing_graph", lambda pre, plan, output: real(
        dataclasses.replace(pre, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), plan, output))
    with pytest.raises(CheckFailed, match="nothing was written"):
        write_frame_variant(os.path.join(folder, "model.onnx"), (480, 640), val_dir, parity_count=16)
    assert sorted(os.listdir(folder)) == ["model.onnx", "model.onnx.json"]


# -- the TensorRT runner with a uint8 frame binding (recording fake: not executed on a GPU here) ----
def test_tensorrt_runner_binds_a_uint8_frame_input_and_the_classifier_feeds_frames(monkeypatch, tmp_path):
    """An engine built from a frame-input variant has one uint8 (N, H, W, 3) input. Against the
    recording fake of TensorRT and CUDA (tests/test_runtime_tensorrt.py, shaped by the real APIs),
    the runner sizes its pinned/device buffers for uint8 frames, copies the frame bytes unchanged,
    and the Classifier hands it frames, not tensors. The real path has not been executed here."""
    import ctypes

    import tensorrt_rtx

    import test_runtime_tensorrt as fake
    from inception_deploy.runtime import Classifier
    from inception_deploy.runtime.backends import tensorrt as trt_backend
    from inception_deploy.runtime.backends.cudamem import CudaRuntimeApi

    fh, fw = 24, 32
    io = {"frame": (tensorrt_rtx.TensorIOMode.INPUT, (-1, fh, fw, 3)),
          "logits": (tensorrt_rtx.TensorIOMode.OUTPUT, (-1, fake.CLASSES))}
    pre = Preprocessing(input_size=(fake.H, fake.W), crop_pct=1.0, interpolation="bilinear")

    class FrameContext(fake.FakeExecutionContext):
        def get_tensor_shape(self, name):
            return (self.shapes.get("frame", (-1,))[0],) + io[name][1][1:]

        def execute_async_v3(self, stream_handle):
            self._rec("execute_async_v3", stream_handle)
            if set(self.addresses) != set(io) or "frame" not in self.shapes:
                return False
            n = self.shapes["frame"][0]
            addr_in, addr_out = self.addresses["frame"], self.addresses["logits"]

            def run():   # "the graph": preprocess the uint8 frames, then the fake network
                raw = (ctypes.c_char * (n * fh * fw * 3)).from_address(addr_in)
                frames = np.frombuffer(raw, dtype=np.uint8).reshape(n, fh, fw, 3)
                x = np.stack([pre.frame(f) for f in frames])
                y = fake.reference_logits(x).astype(np.float32)
                ctypes.memmove(addr_out, y.ctypes.data, y.nbytes)

            self.world.cudart.on_stream(fake.FakeStream(int(stream_handle)), run)
            return True

    class FrameEngine(fake.FakeCudaEngine):
        def get_tensor_dtype(self, name):
            return tensorrt_rtx.DataType.UINT8 if name == "frame" else tensorrt_rtx.DataType.FLOAT

        def get_tensor_profile_shape(self, name, profile_index):
            return [(1, fh, fw, 3), (2, fh, fw, 3), (fake.MAX_BATCH, fh, fw, 3)]

        def create_execution_context(self, runtime_config=None):
            self.world.context = FrameContext(self.world, runtime_config)
            return self.world.context

    class FrameRuntime(fake.FakeRuntime):
        def deserialize_cuda_engine(self, serialized_engine):
            return FrameEngine(self.world)

    monkeypatch.setattr(fake, "IO", io)
    engine = fake.write_engine(str(tmp_path))
    m = mf.read(engine)
    m.io = dict(m.io, input={"name": "frame", "shape": ["batch", fh, fw, 3], "dtype": "uint8", "layout": "NHWC",
                             "color": "BGR", "frame_size": "%dx%d" % (fw, fh)})
    mf.write(m, engine)
    world = fake.FakeWorld()
    world.trt.Runtime = FrameRuntime
    fake.install(monkeypatch, world)
    monkeypatch.setattr(trt_backend, "load_cuda_api", lambda prefer=None: CudaRuntimeApi(world.cudart))
    frames = [fake.RNG.integers(0, 256, size=(fh, fw, 3), dtype=np.uint8) for _ in range(3)]
    with Classifier.load(engine) as clf:
        b = clf.backend
        assert (b.input_name, b.input_shape, b.input_dtype) == ("frame", (fh, fw, 3), np.uint8)
        pinned = sorted(c[2][0] for c in world.calls if c[1] == "cudaMallocHost")
        assert pinned == sorted([fake.MAX_BATCH * fh * fw * 3, fake.MAX_BATCH * fake.CLASSES * 4])   # uint8 frames
        got = clf.classify_batch(frames, top_k=fake.CLASSES)
        for frame, top in zip(frames, got):
            want = fake.reference_logits(pre.frame(frame)[None])[0]
            assert [p.label_id for p in top] == list(np.argsort(-want))
        with pytest.raises(ValueError, match="takes 32x24 frames"):
            clf.classify(np.zeros((fh + 1, fw, 3), dtype=np.uint8))
    assert world.cudart.pinned == {} and world.cudart.device_mem == {}


def test_example_and_bench_runtime_with_a_frame_input_model(exported, photos_dir, tmp_path):
    """The example gives one error line for frames of another size; bench-runtime times a
    frame-input model at its own size (its preprocessing is inference) and the network on the CPU paths."""
    import subprocess
    import sys

    from inception_deploy.benchmarks import runtime_bench
    from test_runtime_example import EXAMPLE, NO_TORCH

    variant = os.path.join(exported, "model.frame-640x480.onnx")
    res = subprocess.run([sys.executable, "-c", NO_TORCH, EXAMPLE, variant, "--source", photos_dir, "--headless"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, DISPLAY=""))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "takes 640x480 frames" in res.stderr
    photo = os.path.join(photos_dir, sorted(os.listdir(photos_dir))[0])
    settings = runtime_bench.Settings(sizes=((240, 320),), iterations=3, warmup=1)
    report = runtime_bench.run(os.path.join(exported, "model.onnx"), photo, settings, graph_models=[variant])
    rows = [(r["model"], r["frame"], r["frame_path"]) for r in report["rows"]]
    assert rows == [("model.onnx", "320x240", "fast"), ("model.onnx", "320x240", "exact"),
                    ("model.frame-640x480.onnx", "640x480", "in graph")]
    for r in report["rows"]:     # 3 timed calls on a shared machine: that they were timed, not their ratios
        assert min(r["preprocess_ms"], r["inference_ms"], r["postprocess_ms"], r["classify_ms"]) >= 0.0
        assert r["inference_ms"] > 0 and r["classify_ratio"] == r["classify_ms"] / r["inference_ms"]
    alone = runtime_bench.run(variant, photo, settings)
    assert [(r["frame"], r["frame_path"]) for r in alone["rows"]] == [("640x480", "in graph")]
    assert "| model.onnx | 320x240 | fast |" in runtime_bench.markdown(report)
