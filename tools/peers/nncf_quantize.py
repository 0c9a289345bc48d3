"""NNCF's post-training INT8 quantization of an ONNX model (a peer in make compare-quantizers).

Runs in the peers' own virtual environment (``.venv-peers``: nncf, onnx, onnxruntime, numpy; no
torch, nothing of this project imported), so NNCF's dependencies never touch the project's. Reads
the calibration images the comparison prepared (one .npy, already preprocessed), writes the
quantized ONNX and prints one JSON line: {"seconds": calibration + quantization wall time}.

    python nncf_quantize.py --onnx model.onnx --images calib.npy --input input --out q.onnx [--preset mixed]

NNCF decides each activation quantizer's signedness from its statistics (unsigned after a ReLU);
forcing signed activations conflicts with its hardware configs (ValueError in NNCF 3.4), so its
outputs are compared as NNCF makes them.
"""
import argparse
import json
import sys
import time

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True)
    p.add_argument("--images", required=True, help=".npy of preprocessed images (N, 3, H, W) float32")
    p.add_argument("--input", required=True, help="the graph input's name")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=1, help="NNCF's ONNX backend feeds one sample a step")
    p.add_argument("--preset", choices=("performance", "mixed"), default="performance",
                   help="performance (NNCF's default for CNNs: symmetric) or mixed (asymmetric activations)")
    args = p.parse_args()

    import nncf
    import onnx

    images = np.load(args.images, mmap_mode="r")
    model = onnx.load(args.onnx)
    dataset = nncf.Dataset([np.ascontiguousarray(images[i:i + args.batch_size])
                            for i in range(0, len(images), args.batch_size)],
                           lambda x: {args.input: x})
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}[args.preset]
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, dataset, preset=preset, subset_size=len(images))
    seconds = time.perf_counter() - t0
    onnx.save(quantized, args.out)
    print(json.dumps({"seconds": round(seconds, 2), "nncf": nncf.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
