"""Does TensorRT keep the Q/DQ graph in INT8? Build it with TensorRT-RTX and read its layer list.

The engines stage's builder (``engines.builder.build_engine``) builds for the ``rtx`` target here
(no GPU needed) and parses the builder's ``Layers:`` log (``engines.layers``); this module only
asks it and keeps what calibration cares about: layers whose output is not INT8, reformat layers,
and tensors at a Concat that are not INT8 (TensorRT issue #4366: each costs a requantization).
The engine itself is thrown away; ``inception-deploy build`` makes the real one.
"""
import shutil
import tempfile
from typing import Any, Dict

TARGET = "rtx"


def layer_check(onnx_path: str, work_dir: str) -> Dict[str, Any]:
    """Counts from a TensorRT-RTX INT8 build of ``onnx_path`` (needs its manifest beside it)."""
    try:
        from inception_deploy.engines.builder import build_engine
    except ImportError as e:
        return {"status": "not run", "note": f"engines.builder not available ({e})"}
    out_root = tempfile.mkdtemp(prefix=".trt-check.", dir=work_dir)
    try:
        result = build_engine(onnx_path, TARGET, "int8", out_root, progress=False)
    except Exception as e:   # the build stage reports its own failures; here it is a finding
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        return {"status": "build failed", "note": f"TensorRT-RTX INT8 build failed: {message}"}
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    layers = result.layers
    record = {"status": "built", "target": TARGET, "total": layers.total,
              "by_output_precision": dict(layers.by_output_precision),
              "reformat_layers": layers.reformat_layers, "reformat_names": list(layers.reformat_names),
              "concat_non_int8": len(layers.concat_non_int8), "concat_non_int8_tensors": list(layers.concat_non_int8),
              "conv_input_precision": dict(layers.conv_input_precision)}
    record["reformat_explained"] = explain_reformats(layers.reformat_names)
    record["note"] = (f"{layers.total} layers, {layers.reformat_layers} reformat, "
                      f"{len(layers.concat_non_int8)} non-INT8 tensors at Concat")
    return record


def explain_reformats(names: Any) -> Dict[str, str]:
    """Why the reformat layers that remain are there (see docs/calibration.md)."""
    notes = {}
    for name in names:
        if "ReplConc" in name or "MulMinMaxRounCast" in name:
            notes[name] = "quantizes the FP32 network input (and pads 3 channels to 4): every INT8 engine has it"
        elif "_Move_" in name:
            notes[name] = ("copies an INT8 tensor (the pooling branch) into its slice of a Concat output: "
                           "same scale, no type conversion")
        else:
            notes[name] = "unexplained"
    return notes
