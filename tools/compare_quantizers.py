"""Peer comparison of INT8 quantizers on one FP32 ONNX (``make compare-quantizers``).

Every quantizer gets the same FP32 model and the same calibration images (seeded, class-balanced,
preprocessed once by the model's own preprocessing), and every output is judged the same way:
ONNX Runtime logits on the same evaluation images against the FP32 model's (top-1/top-5 drop,
agreement, KL, McNemar p), calibration wall time, file size, and whether TensorRT builds it in INT8
(a real TensorRT-RTX build here; TensorRT needs signed INT8 with zero point 0).

Quantizers: this project's calibrate stage (each range method, one histogram pass shared, as the
stage does), NVIDIA Model Optimizer's own calibration (max, entropy), ONNX Runtime's
``quantize_static`` (QDQ, per-channel, symmetric signed activations: MinMax, Entropy, Percentile;
calibration fed in strides so its histogram calibrators fit in memory) and NNCF's ONNX backend
(its default and its mixed preset), which runs in its own virtual environment
(``.venv-peers``, made by the make target) and never in the project's.

    python tools/compare_quantizers.py --onnx build/demo/onnx/model.onnx [--eval-count all]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from inception_deploy.calibration.methods import METHODS  # noqa: E402
from inception_deploy.pipeline import atomic, paths  # noqa: E402
from inception_deploy.pipeline import manifest as mf  # noqa: E402
from inception_deploy.pipeline.command import run  # noqa: E402
from inception_deploy.pipeline.errors import UserError  # noqa: E402

REPO = paths.REPO_ROOT
PEERS_PYTHON = os.path.join(REPO, ".venv-peers", "bin", "python")
NNCF_SCRIPT = os.path.join(REPO, "tools", "peers", "nncf_quantize.py")
ORT_STRIDE = 25          # images per ORT calibrator collect pass (its histogram calibrators hold them all)


@dataclass
class Inputs:
    """What every quantizer is given, and what every output is judged on."""

    fp32: str
    manifest: mf.Manifest
    calib: np.ndarray            # (N, 3, H, W) float32, preprocessed
    eval_x: np.ndarray
    eval_y: np.ndarray
    fp32_logits: np.ndarray
    work: str


@dataclass
class Row:
    quantizer: str
    family: str
    calibration_s: float
    bytes: int = 0
    top1_drop: Optional[float] = None
    top5_drop: Optional[float] = None
    top1_agreement: Optional[float] = None
    mean_kl: Optional[float] = None
    mcnemar_p: Optional[float] = None
    tensorrt: str = ""                  # "INT8 (n conv)" / "builds, k conv not INT8" / "fails: ..."
    concat_non_int8: Optional[int] = None
    notes: List[str] = field(default_factory=list)


# -- the quantizers: each writes ``out`` from ``inputs`` and returns its calibration wall time ------

def project_quantizers(inputs: Inputs) -> Dict[str, Callable[[str], float]]:
    """This project's methods, made as the calibrate stage makes them (one histogram pass, the shared
    :class:`calibration.ranges.RangeRecipe`, bias correction); the pass is timed once and counted in each
    method's time (each method alone would pay it)."""
    import onnx

    from inception_deploy.calibration import methods as cmethods
    from inception_deploy.calibration import qdq
    from inception_deploy.calibration import stats as cstats
    from inception_deploy.calibration.ranges import RangeRecipe

    model = onnx.load(inputs.fp32)
    tensors = cstats.float_activation_tensors(model)
    t0 = time.perf_counter()
    batches = (inputs.calib[i:i + 32] for i in range(0, len(inputs.calib), 32))
    stats = cstats.collect(inputs.fp32, tensors, batches, inputs.manifest.input_name, "compare", len(inputs.calib))
    pass_s = time.perf_counter() - t0
    recipe = RangeRecipe.for_model(model, stats.tensors, inputs.manifest.preprocessing, inputs.manifest.input_name)

    def make(method: str) -> Callable[[str], float]:
        def run(out: str) -> float:
            t = time.perf_counter()
            qdq.quantize_with_scales(inputs.fp32, out, recipe.scales(cmethods.Method.parse(method)), inputs.calib,
                                     inputs.manifest.input_name, channel_means=stats.channel_means)
            return pass_s + time.perf_counter() - t
        return run

    print(f"compare: project histogram pass {pass_s:.1f} s (ORT {stats.seconds['onnxruntime']:.1f} s, histograms "
          f"{stats.seconds['histograms']:.1f} s)", file=sys.stderr)
    return {f"project {m}": make(m) for m in cmethods.METHODS}


def modelopt_peer(method: str) -> Callable[[str, np.ndarray, str, str], None]:
    def run(fp32: str, images: np.ndarray, input_name: str, out: str) -> None:
        from inception_deploy.calibration import qdq

        qdq.modelopt_quantize(fp32, out, images, input_name, method=method)
    return run


class _Reader:
    """ONNX Runtime's CalibrationDataReader over the prepared array, with the range API its
    strided calibration uses (``CalibStridedMinMax``: any method, collect pass by collect pass)."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self.images, self.input_name = images, input_name
        self.start, self.end, self.i = 0, len(images), 0

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.i = start_index, end_index, start_index

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.i >= self.end:
            return None
        self.i += 1
        return {self.input_name: np.ascontiguousarray(self.images[self.i - 1:self.i])}

    def rewind(self) -> None:
        self.i = self.start


def ort_peer(method: str) -> Callable[[str, np.ndarray, str, str], None]:
    def run(fp32: str, images: np.ndarray, input_name: str, out: str) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        n = len(images) - len(images) % ORT_STRIDE
        quantize_static(fp32, out, _Reader(images[:n], input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                       "CalibStridedMinMax": ORT_STRIDE})
    return run


# Peers run one process each: modelopt patches ONNX Runtime's calibrators in the process that imports
# it (ORT's quantize_static then collects nothing), and NNCF lives in its own virtual environment.
IN_PROCESS_PEERS: Dict[str, Callable[[str, np.ndarray, str, str], None]] = {
    "modelopt max": modelopt_peer("max"),
    "modelopt entropy": modelopt_peer("entropy"),
    "ORT MinMax": ort_peer("MinMax"),
    "ORT Entropy": ort_peer("Entropy"),
    "ORT Percentile": ort_peer("Percentile"),
}
NNCF_PEERS = {"NNCF default": "performance", "NNCF mixed": "mixed"}
PEERS = list(IN_PROCESS_PEERS) + list(NNCF_PEERS)


def peer_command(name: str, inputs: "Inputs", out: str) -> List[str]:
    images = os.path.join(inputs.work, "calib.npy")
    if not os.path.isfile(images):
        np.save(images, inputs.calib)
    common = ["--onnx", inputs.fp32, "--images", images, "--input", inputs.manifest.input_name, "--out", out]
    if name in NNCF_PEERS:
        if not os.path.isfile(PEERS_PYTHON):
            raise UserError(f"{PEERS_PYTHON} is missing: make compare-quantizers creates it (pip install nncf)")
        return [PEERS_PYTHON, NNCF_SCRIPT, "--preset", NNCF_PEERS[name]] + common
    return [sys.executable, os.path.abspath(__file__), "--peer", name] + common


def run_peer(name: str, inputs: "Inputs", out: str) -> float:
    """The peer in its own process; returns its calibration + quantization wall time."""
    res = subprocess.run(peer_command(name, inputs, out), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError((res.stderr.strip().splitlines() or ["no output"])[-1][:200])
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


def peer_main(args: argparse.Namespace) -> int:
    """``--peer NAME``: quantize in this fresh process and print {"seconds": ...}."""
    images = np.load(args.images, mmap_mode="r")
    t = time.perf_counter()
    IN_PROCESS_PEERS[args.peer](args.onnx, np.asarray(images), args.input, args.out)
    print(json.dumps({"seconds": round(time.perf_counter() - t, 2)}))
    return 0


# -- judging an output ----------------------------------------------------------------------------

def why_not_tensorrt(path: str) -> str:
    """Empty if every Q/DQ is signed INT8 with zero point 0 (what TensorRT executes as written), else why not.

    TensorRT's ONNX parser imports a UINT8 Q/DQ as INT8 ("Defaulting to INT8"), and it has no
    asymmetric INT8: such a model builds, but does not compute what ONNX Runtime computes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path, load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    unsigned = nonzero = 0
    for node in model.graph.node:
        zero = inits.get(node.input[2]) if node.op_type in ("QuantizeLinear", "DequantizeLinear") and \
            len(node.input) > 2 else None
        if zero is not None:
            unsigned += zero.data_type == onnx.TensorProto.UINT8
            nonzero += bool(np.any(numpy_helper.to_array(zero) != 0))
    return ", ".join(([f"{unsigned} UINT8 Q/DQ"] if unsigned else []) +
                     ([f"{nonzero} non-zero zero points"] if nonzero else []))


def tensorrt_verdict(path: str, work: str) -> Tuple[str, Optional[int]]:
    """(what a TensorRT-RTX INT8 build makes of it, its non-INT8 Concat inputs)."""
    from inception_deploy.calibration.trt_check import layer_check

    layers = layer_check(path, work)
    if layers.get("status") != "built":
        return "fails: " + str(layers.get("note", ""))[:120], None
    wrong = why_not_tensorrt(path)
    if wrong:
        return f"builds, not as ORT runs it: {wrong}", layers["concat_non_int8"]
    conv = layers["conv_input_precision"]
    other = {k: v for k, v in conv.items() if k != "Int8"}
    verdict = f"INT8 ({conv.get('Int8', 0)} conv)" if not other else \
        f"builds, {sum(other.values())} conv in {'/'.join(sorted(other))}"
    return verdict, layers["concat_non_int8"]


def judge(inputs: Inputs, row: Row, path: str) -> None:
    """Drift on the evaluation images, size, and a TensorRT-RTX INT8 build's layer check."""
    from inception_deploy.pipeline.metrics import compare
    from inception_deploy.calibration.evaluate import predict

    row.bytes = os.path.getsize(path)
    logits = predict(path, inputs.eval_x, input_name=inputs.manifest.input_name, output_name=inputs.manifest.output_name)
    d = compare(logits, inputs.fp32_logits, inputs.eval_y)
    row.top1_drop, row.top5_drop, row.top1_agreement = d.top1_drop, d.top5_drop, d.top1_agreement
    row.mean_kl, row.mcnemar_p = d.mean_kl, d.mcnemar_p
    mf.write(mf.derive(inputs.manifest, inputs.fp32, "onnx-int8", {"summary": row.quantizer}), path)
    row.tensorrt, row.concat_non_int8 = tensorrt_verdict(path, inputs.work)


def prepare(fp32: str, calib_dir: str, eval_dir: str, calib_count: int, eval_count: Optional[int], seed: int,
            work: str) -> Inputs:
    from inception_deploy.calibration import data as cdata
    from inception_deploy.calibration.evaluate import predict

    manifest = mf.read(fp32, expect_kind="onnx")
    pre = manifest.preprocessing_obj()
    calib_set = cdata.choose_calibration_images(calib_dir, manifest.label_names, calib_count, seed, 32, eval_dir)
    calib, _, _ = cdata.load_arrays(calib_set, pre, 64, label="calibration images")
    eval_set = cdata.choose_images(eval_dir, manifest.label_names, eval_count, seed, require_labels=True)
    x, y, _ = cdata.load_arrays(eval_set, pre, 64, label="evaluation images")
    logits = predict(fp32, x, input_name=manifest.input_name, output_name=manifest.output_name)
    return Inputs(fp32, manifest, calib, x, y, logits, work)


def run_one(inputs: Inputs, name: str, family: str, quantize: Callable[[str], float]) -> Row:
    out = os.path.join(inputs.work, name.replace(" ", "-") + ".onnx")
    try:
        seconds = quantize(out)
    except Exception as e:  # a peer that fails is a finding of the comparison, not a crash of it
        row = Row(name, family, 0.0, tensorrt="-")
        row.notes.append(f"quantization failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        print(f"compare: {name}: {row.notes[-1]}", file=sys.stderr)
        return row
    row = Row(name, family, round(seconds, 1))
    judge(inputs, row, out)
    print(f"compare: {name:24s} drop {row.top1_drop:+.2f}/{row.top5_drop:+.2f}  agreement "
          f"{100 * row.top1_agreement:.2f} %  KL {row.mean_kl:.4f}  {row.calibration_s:.0f} s  "
          f"{row.bytes / 1e6:.1f} MB  TensorRT: {row.tensorrt}", file=sys.stderr)
    return row


def table(rows: List[Row], inputs: Inputs) -> str:
    lines = [f"FP32 model: {inputs.fp32} ({os.path.getsize(inputs.fp32) / 1e6:.1f} MB); {len(inputs.calib)} "
             f"calibration images, {len(inputs.eval_y)} evaluation images", "",
             "| quantizer | top-1 drop | top-5 drop | top-1 agreement | mean KL | McNemar p | calibration | size | "
             "TensorRT INT8 build | non-INT8 Concat inputs |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if r.top1_drop is None:
            lines.append(f"| {r.quantizer} | - | - | - | - | - | - | - | {'; '.join(r.notes)} | - |")
            continue
        lines.append(f"| {r.quantizer} | {r.top1_drop:+.2f} | {r.top5_drop:+.2f} | {100 * r.top1_agreement:.2f} % | "
                     f"{r.mean_kl:.4f} | {r.mcnemar_p:.2f} | {r.calibration_s:.0f} s | {r.bytes / 1e6:.1f} MB | "
                     f"{r.tensorrt} | {r.concat_non_int8 if r.concat_non_int8 is not None else '-'} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True, help="the exported FP32 model.onnx (with its manifest)")
    p.add_argument("--calib-images", default=paths.CALIB_DIR)
    p.add_argument("--eval-images", default=paths.VAL_DIR)
    p.add_argument("--calib-count", type=int, default=500)
    p.add_argument("--eval-count", default="1000", help="evaluation images, or 'all' (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma-separated quantizer names (substring match), e.g. 'project,ORT'")
    p.add_argument("--out", default=None, help="report folder (default: build/compare-quantizers/<model>)")
    p.add_argument("--peer", choices=sorted(IN_PROCESS_PEERS), help=argparse.SUPPRESS)   # one peer, in this process
    p.add_argument("--images", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.set_defaults(func=_run)
    return run(p, argv)


def _run(args: argparse.Namespace) -> int:
    """One peer in this process (``--peer``), or every chosen quantizer and the table."""
    if args.peer:
        return peer_main(args)
    if args.eval_count != "all" and not args.eval_count.isdigit():
        raise UserError(f"--eval-count {args.eval_count!r}: expected a number of images or 'all'")
    eval_count = None if args.eval_count == "all" else int(args.eval_count)
    model = mf.read(args.onnx, expect_kind="onnx").model.name
    out_dir = args.out or os.path.join(REPO, "build", "compare-quantizers", model)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".compare.", dir=out_dir) as work:
        inputs = prepare(args.onnx, args.calib_images, args.eval_images, args.calib_count, eval_count,
                         args.seed, work)
        wanted = [w.strip() for w in (args.only or "").split(",") if w.strip()]
        chosen = lambda name: not wanted or any(w.lower() in name.lower() for w in wanted)  # noqa: E731
        rows: List[Row] = []
        if any(chosen(f"project {m}") for m in METHODS):
            for name, fn in project_quantizers(inputs).items():
                if chosen(name):
                    rows.append(run_one(inputs, name, "project", fn))
        for name in PEERS:
            if chosen(name):
                rows.append(run_one(inputs, name, name.split()[0], lambda out, n=name: run_peer(n, inputs, out)))
        text = table(rows, inputs)
    atomic.write_text(os.path.join(out_dir, "table.md"), text + "\n")
    atomic.write_json(os.path.join(out_dir, "table.json"),
                      {"onnx": os.path.abspath(args.onnx), "calib_images": args.calib_count,
                       "eval_images": len(inputs.eval_y), "seed": args.seed, "rows": [asdict(r) for r in rows]})
    print(text)
    print(f"\nwritten: {os.path.join(out_dir, 'table.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
