"""DeepStream and Triton files of a deploy bundle, from the model's manifest. Text only, stdlib.

What nvinfer does, from its sources (``gstnvinfer_property_parser.cpp``,
``nvdsinfer_context_impl_output_parsing.cpp``, ``nvdsinfer_model_builder.cpp``):

- it scales the whole frame (or object) to the network size, no crop, with ``scaling-filter``
  (``NvBufSurfTransform_Inter``: 0 nearest, 1 bilinear, 2 GPU-cubic / VIC 5-tap, ...) on
  ``scaling-compute-hw`` (0 default: VIC on Jetson, 1 GPU, 2 VIC), then ``y = net-scale-factor *
  (x - offsets[c])`` on 0..255 RGB: one scale for all channels;
- its default classifier parser reads FP32 outputs as probabilities: a class counts only when its
  value is above ``classifier-threshold`` and above 0 (the running maximum starts at 0), and that
  value becomes the label's confidence. So the engine it loads outputs softmax probabilities
  (``build_on_device.sh <precision> --softmax``), not logits;
- given ``network-mode=1`` (INT8) and an ONNX but no ``int8-calib-file``, it logs "INT8 calibration
  file not specified. Trying FP16 mode." and builds FP16. The config therefore names only the
  prebuilt engine (``model-engine-file``) and no ONNX: nvinfer cannot build, so it can never
  silently build another precision; a missing engine is an error.
"""
import re
from typing import Dict, List, Optional

from inception_deploy.engines.deploy_files import BundleText, engine_relpath
from inception_deploy.pipeline.manifest import Manifest

SCALING_FILTER = {"nearest": 0, "bilinear": 1, "bicubic": 2}     # NvBufSurfTransformInter_{Nearest,Bilinear,Algo1}
NVINFER_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
CONFIG = "config_infer_primary_classifier.txt"
APP_CONFIG = "deepstream_app_config.txt"
GST_SCRIPT = "run_gst_launch.sh"


def net_scale(pre: Dict[str, object]) -> Dict[str, object]:
    """nvinfer's ``net-scale-factor`` / ``offsets`` for the manifest's mean/std (one std: the mean of three)."""
    mean = [float(v) for v in pre["mean"]]      # type: ignore[union-attr]
    std = [float(v) for v in pre["std"]]        # type: ignore[union-attr]
    avg = sum(std) / 3.0
    return {"factor": 1.0 / (255.0 * avg), "offsets": [255.0 * v for v in mean], "std_avg": avg,
            "std_spread": max(abs(s - avg) / avg for s in std)}


def nvinfer_config(b: BundleText, precision: str) -> str:
    """A DeepStream ``nvinfer`` primary-classifier config (paths relative to the config file)."""
    m, t = b.manifest, b.target
    pre = m.preprocessing
    scale = net_scale(pre)
    h, w = int(pre["input_size"][0]), int(pre["input_size"][1])
    interp = str(pre["interpolation"])
    engine = "../" + engine_relpath(t, b.model_name, precision, b.dla_core, softmax=True)
    lines = [
        "# DeepStream nvinfer config: %s as a primary classifier on %s (%s)." % (m.model.name, t.name, precision),
        "# Made by inception-deploy from the model's manifest. The engine is the one ./build_on_device.sh %s" % precision,
        "# --softmax%s builds (softmax probabilities: nvinfer's classifier parser expects them). No onnx-file:" % (
            " --dla-core %d" % b.dla_core if b.dla_core >= 0 else ""),
        "# nvinfer cannot build an engine itself, so it never falls back to another precision (it would build",
        "# FP16 for network-mode=1 without an int8-calib-file); a missing engine stops the pipeline instead.",
        "# nvinfer scales the whole frame to %dx%d with %s (scaling-filter=%d on the GPU): it does not crop" % (
            w, h, interp, SCALING_FILTER[interp]),
        "# (the model's own eval transform resizes to %.3f of the crop and center-crops); see README.md for" % float(
            pre["crop_pct"]),
        "# the measured top-1 agreement of this preprocessing with the model's own.",
    ]
    if scale["std_spread"] > 1e-6:
        lines.append("# nvinfer has one scale for all channels: std %s is approximated by %.4f (max %.1f %% off)."
                     % ("/".join("%.3f" % s for s in pre["std"]), scale["std_avg"],  # type: ignore[union-attr]
                        100 * float(scale["std_spread"])))   # type: ignore[arg-type]
    lines += [
        "[property]",
        "gpu-id=0",
        "net-scale-factor=%.10f" % scale["factor"],
        "offsets=%s" % ";".join("%.4f" % v for v in scale["offsets"]),  # type: ignore[union-attr]
        "model-color-format=0",
        "model-engine-file=%s" % engine,
        "labelfile-path=labels.txt",
        "infer-dims=3;%d;%d" % (h, w),
        "batch-size=%d" % t.batch_for(b.dla_core).opt,
        "network-mode=%d" % NVINFER_MODE[precision],
        "network-type=1",
        "process-mode=1",
        "gie-unique-id=1",
        "output-blob-names=probabilities",
        "# the top-1 class is attached when its probability is above this (raise it to drop unsure labels)",
        "classifier-threshold=0.0",
        "maintain-aspect-ratio=0",
        "scaling-filter=%d" % SCALING_FILTER[interp],
        "scaling-compute-hw=1",
    ]
    if b.dla_core >= 0:
        lines += ["enable-dla=1", "use-dla-core=%d" % b.dla_core]
    return "\n".join(lines) + "\n"


def app_config(b: BundleText) -> str:
    """A complete ``deepstream-app -c`` config: a video file through the classifier to a fake sink, with
    per-stream FPS. Set ``[source0] uri`` to a video of your own."""
    return "\n".join([
        "# deepstream-app config: %s classifying every frame of a file (deepstream-app -c %s)." % (
            b.model_name, APP_CONFIG),
        "# Replace [source0] uri with your video; [sink0] type=1 is a fakesink (type=2 shows it on a display).",
        "[application]", "enable-perf-measurement=1", "perf-measurement-interval-sec=5", "",
        "[source0]", "enable=1", "# 3 = URI (file://, rtsp://)", "type=3",
        "uri=file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_720p.mp4", "num-sources=1",
        "gpu-id=0", "", "[streammux]", "gpu-id=0", "batch-size=1", "batched-push-timeout=40000",
        "width=1280", "height=720", "live-source=0", "", "[primary-gie]", "enable=1", "gpu-id=0",
        "gie-unique-id=1", "config-file=%s" % CONFIG, "", "[osd]", "enable=1", "gpu-id=0", "display-text=1",
        "", "[sink0]", "enable=1", "type=1", "sync=0", "gpu-id=0",
        "",
        "[tests]", "file-loop=0", ""])


def gst_launch_script(b: BundleText) -> str:
    """The same pipeline as one gst-launch-1.0 line (for debugging with GST_DEBUG)."""
    return """#!/usr/bin/env bash
# The classifier on a video file with plain GStreamer (DeepStream's plugins): decode, batch, nvinfer,
# draw the label, discard. Usage: ./run_gst_launch.sh VIDEO.mp4 (H.264 in MP4).
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
VIDEO="$(realpath "${{1:?usage: $0 VIDEO.mp4}}")"
exec gst-launch-1.0 filesrc location="$VIDEO" ! qtdemux ! h264parse ! nvv4l2decoder ! m.sink_0 \\
  nvstreammux name=m batch-size=1 width=1280 height=720 ! \\
  nvinfer config-file-path={config} ! nvvideoconvert ! nvdsosd ! fakesink sync=false
""".format(config=CONFIG)


def _pb_string(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def triton_name(model_name: str) -> str:
    """A Triton model-repository folder name: letters, digits, ``_ . -`` (others become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_name).strip(".") or "model"


def triton_config(b: BundleText, preferred: Optional[List[int]] = None) -> str:
    """Triton ``config.pbtxt`` for the TensorRT plan (``platform: "tensorrt_plan"``), dynamic batching
    up to the target's max batch, the label file for ``classification`` requests."""
    m, t = b.manifest, b.target
    h, w = int(m.preprocessing["input_size"][0]), int(m.preprocessing["input_size"][1])
    io = m.io or {}
    inp = (io.get("input") or {}).get("name", "input")
    out = (io.get("output") or {}).get("name", "logits")
    batch = t.batch_for(-1)
    sizes = preferred or sorted({batch.opt, batch.max})
    return "\n".join([
        "# Triton model configuration for %s on %s: put the engine at %s/1/model.plan" % (
            m.model.name, t.name, triton_name(m.model.name)),
        "name: %s" % _pb_string(triton_name(m.model.name)),
        'platform: "tensorrt_plan"',
        "max_batch_size: %d" % batch.max,
        "input [", "  {", "    name: %s" % _pb_string(inp), "    data_type: TYPE_FP32",
        "    dims: [ 3, %d, %d ]" % (h, w), "  }", "]",
        "output [", "  {", "    name: %s" % _pb_string(out), "    data_type: TYPE_FP32",
        "    dims: [ %d ]" % m.model.num_classes, '    label_filename: "labels.txt"', "  }", "]",
        "instance_group [", "  {", "    count: 1", "    kind: KIND_GPU", "  }", "]",
        "dynamic_batching {", "  preferred_batch_size: [ %s ]" % ", ".join(str(s) for s in sizes),
        "  max_queue_delay_microseconds: 100", "}", ""])


def triton_labels(m: Manifest) -> str:
    """Triton's label file: one class name per line, in output order."""
    from inception_deploy.pipeline.labels import display_name

    return "".join("%s\n" % display_name(label, m.model.label_descriptions or {}) for label in m.model.label_names)
