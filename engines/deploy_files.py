"""The shell scripts and README of a deploy bundle. Pure text generation, stdlib only.

Every word that comes from data (model names, paths, target names) is quoted for the shell with
:func:`shlex.quote`: a model called ``cats&dogs v2`` is a path, never a command.
"""
import os
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from inception_deploy.engines import trtexec
from inception_deploy.engines.builder import engine_variant
from inception_deploy.engines.targets import Target
from inception_deploy.pipeline.labels import display_name
from inception_deploy.pipeline.manifest import Manifest

TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"   # where JetPack and NVIDIA's containers put it


@dataclass
class BundleText:
    """What the bundle's text files describe: the target, the model, what it builds from."""

    target: Target
    manifest: Manifest
    reason: str
    precisions: Dict[str, str]                  # precision -> ONNX file in model/
    default_precision: str
    dla_core: int = -1
    notes: List[str] = field(default_factory=list)
    commands: Dict[str, str] = field(default_factory=dict)   # precision -> rendered trtexec line
    deepstream: Optional[Dict[str, object]] = None           # measured nvinfer-style agreement (or why not)
    eval_set: Optional[Dict[str, object]] = None             # the verification images the bundle carries

    @property
    def model_name(self) -> str:
        return self.manifest.model.name


def engine_relpath(target: Target, model_name: str, precision: str, dla_core: int = -1,
                   softmax: bool = False) -> str:
    """Where ``build_on_device.sh`` writes the engine, relative to the bundle root (the builder's layout)."""
    return "/".join(("out", "engines", target.name, model_name, engine_variant(precision, dla_core, softmax),
                     "model.engine"))


def timing_cache_dir(target: Target) -> str:
    return "/".join(("out", "engines", target.name))


def labels_line(m: Manifest) -> str:
    """DeepStream classifier labels: one line per output layer, the class names separated by ``;``."""
    names = [display_name(label, m.model.label_descriptions or {}).replace(";", ",").strip()
             for label in m.model.label_names]
    return ";".join(names) + "\n"


def _case_usage(precisions: Sequence[str]) -> str:
    return "|".join(precisions)


def trtexec_script(b: BundleText) -> str:
    """``trtexec_commands.sh``: the trtexec equivalent of each bundled precision, generated from the
    builder's own settings (:mod:`engines.trtexec`), sharing its timing cache file."""
    t = b.target
    cache_dir = timing_cache_dir(t)
    lines = ["#!/usr/bin/env bash",
             "# trtexec equivalents of build_on_device.sh for %s (%s), generated from the same target data and" % (
                 t.name, t.tensorrt),
             "# build settings; they share its timing cache. Usage: ./trtexec_commands.sh [%s]" % _case_usage(
                 b.commands),
             "# TRTEXEC=/path/to/trtexec picks another trtexec (default: the one on PATH, else %s)." % TRTEXEC_DEFAULT,
             "set -euo pipefail",
             'cd "$(dirname "${BASH_SOURCE[0]}")"',
             'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo %s)}"' % TRTEXEC_DEFAULT,
             'TRT_VERSION="$("${PYTHON:-python3}" -c \'import tensorrt; print(tensorrt.__version__)\' 2>/dev/null '
             '|| echo unknown)"',
             '%s=%s/"timing-tensorrt-$TRT_VERSION.cache"' % (trtexec.TIMING_CACHE_VAR, shlex.quote(cache_dir)),
             'case "${1:-%s}" in' % next(iter(b.commands))]
    for p, cmd in b.commands.items():
        engine_dir = os.path.dirname(engine_relpath(t, b.model_name, p, b.dla_core))
        lines += ["  %s)" % p, "    mkdir -p %s" % shlex.quote(engine_dir), "    %s ;;" % cmd]
    lines += ['  *) echo "usage: $0 [%s]" >&2; exit 2 ;;' % _case_usage(b.commands), "esac"]
    return "\n".join(lines) + "\n"


def _python_of(target: Target) -> str:
    return "Python %s" % target.python if target.python else "Python 3.8+"


def _prologue(b: BundleText) -> str:
    """The scripts' common start: strict mode, the bundle folder, the precision (only bundled ones), Python."""
    allowed = "|".join(b.precisions)
    return """set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
PRECISION="${{1:-{precision}}}"
case "$PRECISION" in
  {allowed}) shift || true ;;
  *) echo "error: this bundle builds {allowed} (it carries their ONNX); got '$PRECISION'" >&2; exit 2 ;;
esac
PYTHON="${{PYTHON:-python3}}"
cd "$HERE"
""".format(precision=shlex.quote(b.default_precision), allowed=allowed)


def build_script(b: BundleText) -> str:
    """``build_on_device.sh``: the project's builder (python/engines), the device's Python and TensorRT.
    It builds only the precisions whose ONNX the bundle carries."""
    t = b.target
    allowed = "|".join(b.precisions)
    return """#!/usr/bin/env bash
# Build the TensorRT engine for {target} on the device, with its system Python ({python}) and TensorRT
# bindings: the same builder inception-deploy uses (python/engines: standard library + TensorRT only).
# Usage: ./build_on_device.sh [{allowed}] [--softmax] [--dla-core N] [other `engines build` options]
#   --softmax  the engine outputs softmax probabilities (the one DeepStream's classifier parser needs)
{prologue}if command -v sha256sum >/dev/null; then
  sha256sum --quiet -c SHA256SUMS || {{ echo "error: bundle files changed or incomplete (SHA256SUMS)" >&2; exit 2; }}
fi
if ! "$PYTHON" -c "import tensorrt" 2>/dev/null; then
  echo "error: $PYTHON cannot import tensorrt; on a Jetson install it with 'sudo apt install python3-libnvinfer'" \\
       "(part of JetPack), elsewhere 'pip install tensorrt'" >&2
  exit 3
fi
PYTHONPATH="$HERE/python" exec "$PYTHON" -m inception_deploy.engines build --onnx-dir "$HERE/model" --target {target_q} \\
  --precision "$PRECISION" --out "$HERE/out" --no-bundle "$@"
""".format(target=t.name, target_q=shlex.quote(t.name), python=_python_of(t), allowed=allowed,
           prologue=_prologue(b))


def verify_script(b: BundleText) -> str:
    """``verify_on_device.sh``: build the engine if needed, run it on the bundled images against the
    host's FP32 logits, write the same report.json the host bench writes (gate it on the host)."""
    t = b.target
    allowed = "|".join(b.precisions)
    return """#!/usr/bin/env bash
# Verify the {target} engine on this device: builds it if needed (./build_on_device.sh), runs it on the
# class-balanced images in eval/ and compares with the FP32 logits the host computed for them; writes
# out/verify/<precision>/report.json (the host bench's format: top-1/top-5, drop and agreement against the
# host FP32, KL, latency percentiles, GPU vs end-to-end time, power mode and clocks where readable).
# Needs numpy and Pillow beside TensorRT (JetPack: sudo apt install python3-numpy python3-pil).
# Usage: ./verify_on_device.sh [{allowed}] [--dla-core N] [extra `benchmarks.device_verify` options]
# Then on the host: inception-deploy gate --report report.json --baseline <device baseline>
{prologue}DLA=()
if [ "${{1:-}}" = "--dla-core" ]; then DLA=(--dla-core "$2"); shift 2; fi
"$PYTHON" -c "import numpy, PIL" 2>/dev/null || {{
  echo "error: verification needs numpy and Pillow: sudo apt install python3-numpy python3-pil" >&2; exit 3; }}
"$HERE/build_on_device.sh" "$PRECISION" ${{DLA[@]+"${{DLA[@]}}"}}
PYTHONPATH="$HERE/python" exec "$PYTHON" -m inception_deploy.benchmarks.device_verify --bundle "$HERE" --target {target_q} \\
  --precision "$PRECISION" ${{DLA[@]+"${{DLA[@]}}"}} --out "$HERE/out/verify/$PRECISION" "$@"
""".format(target=t.name, target_q=shlex.quote(t.name), allowed=allowed, prologue=_prologue(b))


def copy_hint(bundle_path: str, target: Target, precision: str, dla_core: int = -1) -> List[str]:
    """The two commands that ship a bundle and build on the device, every word quoted."""
    device = "user@jetson" if target.is_jetson else "user@server"
    name = os.path.basename(os.path.normpath(bundle_path))
    remote = "~/%s/build_on_device.sh %s" % (shlex.quote(name), shlex.quote(precision))
    if dla_core >= 0:
        remote += " --dla-core %d" % dla_core
    return ["scp -r %s %s:~/" % (shlex.quote(bundle_path), device), "ssh %s %s" % (device, shlex.quote(remote))]


def relpath(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")
