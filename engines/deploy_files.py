"""The text files of a deploy bundle: trtexec equivalents, DeepStream nvinfer config + labels,
the on-device build script and the README. Pure text generation, stdlib only."""
import os
import shlex
from typing import Dict, Optional, Sequence

from engines.targets import Target
from pipeline.manifest import Manifest

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"   # where JetPack and NVIDIA's containers put it
NVINFER_MODE = {"fp32": 0, "int8": 1, "fp16": 2}


def engine_relpath(target: Target, model_name: str, precision: str) -> str:
    """Where ``build_on_device.sh`` writes the engine, relative to the bundle root."""
    return "out/engines/%s/%s/%s/model.engine" % (target.name, model_name, precision)


def _shape(name: str, batch: int, chw: Sequence[int]) -> str:
    return "%s:%s" % (name, "x".join(str(d) for d in [batch] + list(chw)))


def trtexec_command(target: Target, precision: str, onnx_rel: str, engine_rel: str, input_name: str,
                    chw: Sequence[int], calib_rel: Optional[str] = None, dla_core: int = -1) -> str:
    """The trtexec line equivalent to the builder's settings on the target's TensorRT.

    TensorRT 10+ builds the typed ONNX with ``--stronglyTyped``; TensorRT 8.x needs the precision
    flags; the implicit INT8 path (``--int8 --calib``) and DLA builds use flags on every version.
    """
    b = target.batch_for(dla_core)
    args = [TRTEXEC, "--onnx=%s" % onnx_rel, "--saveEngine=%s" % engine_rel,
            "--minShapes=%s" % _shape(input_name, b.min, chw), "--optShapes=%s" % _shape(input_name, b.opt, chw),
            "--maxShapes=%s" % _shape(input_name, b.max, chw),
            "--memPoolSize=workspace:%dM" % target.workspace_mib, "--profilingVerbosity=detailed"]
    if target.tensorrt_major >= 9:  # trtexec 8.5 has no --builderOptimizationLevel
        args.append("--builderOptimizationLevel=%d" % target.optimization_level)
    if target.hardware_compatibility == "ampere_plus":
        args.append("--hardwareCompatibilityLevel=ampere+")
    implicit = precision == "int8" and target.int8_mode == "implicit"
    if implicit:
        args += ["--int8", "--calib=%s" % calib_rel]
    elif dla_core >= 0 or target.tensorrt_major < 10:
        args += {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8"]}[precision]
    else:
        args.append("--stronglyTyped")
    if dla_core >= 0:
        if precision == "int8" and "--fp16" not in args:
            args.append("--fp16")
        args.append("--useDLACore=%d" % dla_core)
        if target.dla.gpu_fallback:
            args.append("--allowGPUFallback")
    return " ".join(shlex.quote(a) for a in args)


def trtexec_script(target: Target, commands: Dict[str, str], engines: Dict[str, str]) -> str:
    lines = ["#!/usr/bin/env bash",
             "# trtexec equivalents of build_on_device.sh for %s (%s)." % (target.name, target.tensorrt),
             "# Usage: ./trtexec_commands.sh [%s]   (run on the device)" % "|".join(commands),
             "set -euo pipefail",
             'cd "$(dirname "${BASH_SOURCE[0]}")"',
             'case "${1:-%s}" in' % next(iter(commands))]
    for p, cmd in commands.items():
        lines += ["  %s)" % p, "    mkdir -p %s" % os.path.dirname(engines[p]), "    %s ;;" % cmd]
    lines += ['  *) echo "usage: $0 [%s]" >&2; exit 2 ;;' % "|".join(commands), "esac"]
    return "\n".join(lines) + "\n"


def labels_line(m: Manifest) -> str:
    """DeepStream classifier labels: one line per output layer, the class names separated by ``;``."""
    names = []
    for label in m.model.label_names:
        text = (m.model.label_descriptions or {}).get(label, "")
        name = text.split(",")[0].strip() or label
        names.append(name.replace(";", ",").strip())
    return ";".join(names) + "\n"


def nvinfer_config(target: Target, m: Manifest, precision: str, onnx_rel: str, engine_rel: str,
                   calib_rel: Optional[str], dla_core: int = -1) -> str:
    """A DeepStream ``nvinfer`` primary-classifier config (paths relative to the config file)."""
    pre = m.preprocessing
    mean = [float(v) for v in pre["mean"]]
    std = [float(v) for v in pre["std"]]
    h, w = int(pre["input_size"][0]), int(pre["input_size"][1])
    std_avg = sum(std) / 3.0
    spread = max(abs(s - std_avg) / std_avg for s in std)
    io = m.io or {}
    output = (io.get("output") or {}).get("name", "logits")
    lines = [
        "# DeepStream nvinfer config: %s as a primary classifier on %s (%s)." % (m.model.name, target.name, precision),
        "# Made by inception-deploy from the model's manifest. nvinfer computes y = net-scale-factor * (x - offsets)",
        "# on RGB pixels in 0..255 and scales the whole frame (or object) to %dx%d: it does not crop" % (w, h),
        "# (the model's own eval transform resizes to %.3f of the crop and center-crops)." % float(pre["crop_pct"]),
    ]
    if spread > 1e-6:
        lines.append("# nvinfer has one scale for all channels: std %s is approximated by %.4f (max %.1f %% off)."
                     % ("/".join("%.3f" % s for s in std), std_avg, 100 * spread))
    lines.append("# The model outputs logits (no softmax): classifier-threshold applies to logits.")
    lines += [
        "[property]",
        "gpu-id=0",
        "net-scale-factor=%.10f" % (1.0 / (255.0 * std_avg)),
        "offsets=%s" % ";".join("%.4f" % (255.0 * v) for v in mean),
        "model-color-format=0",
        "onnx-file=%s" % onnx_rel,
        "model-engine-file=%s" % engine_rel,
        "labelfile-path=labels.txt",
        "infer-dims=3;%d;%d" % (h, w),
        "batch-size=%d" % target.batch_for(dla_core).opt,
        "network-mode=%d" % NVINFER_MODE[precision],
        "network-type=1",
        "process-mode=1",
        "gie-unique-id=1",
        "output-blob-names=%s" % output,
        "classifier-threshold=0.0",
        "classifier-async-mode=0",
        "maintain-aspect-ratio=0",
        "scaling-filter=1",
    ]
    if calib_rel:
        lines.append("int8-calib-file=%s" % calib_rel)
    if dla_core >= 0:
        lines += ["enable-dla=1", "use-dla-core=%d" % dla_core]
    return "\n".join(lines) + "\n"


def build_script(target: Target, default_precision: str) -> str:
    """``build_on_device.sh``: the same builder, the device's system Python and TensorRT, no torch."""
    return """#!/usr/bin/env bash
# Build the TensorRT engine for {target} on the device, with its system Python ({python}) and
# TensorRT bindings: the same builder inception-deploy uses (python/engines), no torch, no modelopt.
# Usage: ./build_on_device.sh [int8|fp16|fp32] [extra `engines build` options, e.g. --dla-core 0]
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
PRECISION="${{1:-{precision}}}"
shift || true
PYTHON="${{PYTHON:-python3}}"
cd "$HERE"
if command -v sha256sum >/dev/null; then
  sha256sum --quiet -c SHA256SUMS || {{ echo "error: bundle files changed or incomplete (SHA256SUMS)"; exit 2; }}
fi
if ! "$PYTHON" -c "import tensorrt" 2>/dev/null; then
  echo "error: $PYTHON cannot import tensorrt; on a Jetson install it with 'sudo apt install python3-libnvinfer'" \\
       "(part of JetPack), elsewhere 'pip install tensorrt'" >&2
  exit 3
fi
"$PYTHON" -c "import numpy" 2>/dev/null || {{ echo "error: numpy missing: sudo apt install python3-numpy" >&2; exit 3; }}
PYTHONPATH="$HERE/python" exec "$PYTHON" -m engines build --onnx-dir "$HERE/model" --target {target} \\
  --precision "$PRECISION" --out "$HERE/out" --no-bundle "$@"
""".format(target=target.name, precision=default_precision, python=_python_of(target))


def _python_of(target: Target) -> str:
    text = target.jetpack or target.tensorrt
    for token in ("Python 3.8", "Python 3.10", "Python 3.12"):
        if token in text:
            return token
    return "Python 3.8+"


def readme(target: Target, m: Manifest, reason: str, precisions: Dict[str, str], notes: Sequence[str],
           commands: Dict[str, str], bundle_name: str) -> str:
    rows = "\n".join("| %s | `model/%s` |" % (p, f) for p, f in precisions.items())
    trtexec = "\n\n".join("%s:\n\n```sh\n%s\n```" % (p, cmd) for p, cmd in commands.items())
    note_text = "\n".join("- %s" % n for n in notes) if notes else "- none"
    return """# {model} for {target}: deploy bundle

{description}. Made by `inception-deploy` on a host that cannot build this target's engine:
{reason}.

**Needs:** {needs}. The engine is built on the device itself, by the same builder the project uses
(`python/engines`), with the device's system Python and TensorRT bindings (no torch, no modelopt).

## Build the engine on the device

```sh
scp -r {bundle} <user>@<device>:~/
ssh <user>@<device> '~/{bundle}/build_on_device.sh {precision}'
```

`build_on_device.sh [int8|fp16|fp32] [--dla-core 0|1] [--batch MIN,OPT,MAX]` checks the files against
`SHA256SUMS`, then writes `{engine}` and its manifest
(`model.engine.json`: TensorRT version, GPU, power mode, layer precisions, build time).

| precision | built from |
| --- | --- |
{rows}

## The same with trtexec

`./trtexec_commands.sh [precision]` runs these ({tensorrt}):

{trtexec}

## DeepStream

`deepstream/config_infer_primary_classifier.txt` is an `nvinfer` primary-classifier config for this
model (preprocessing from its manifest; see the comments there for what nvinfer cannot express),
`deepstream/labels.txt` its labels. Point a pipeline's `nvinfer config-file-path` at it.

## Notes

{notes}
""".format(model=m.model.name, target=target.name, description=target.description, reason=reason,
           needs=target.jetpack or target.tensorrt, bundle=bundle_name, precision=next(iter(precisions)),
           engine=engine_relpath(target, m.model.name, next(iter(precisions))), rows=rows, trtexec=trtexec or "-",
           notes=note_text, tensorrt=target.tensorrt)


def relpath(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")
