"""The README of a deploy bundle: what it needs, how to build, verify and run it on the device."""
import shlex
from typing import Dict, List, Optional

from inception_deploy.engines import deepstream
from inception_deploy.engines.deploy_files import BundleText, copy_hint, engine_relpath


def _versions(b: BundleText) -> str:
    t = b.target
    rows = [("TensorRT", t.tensorrt), ("JetPack", t.jetpack), ("CUDA", t.cuda), ("Python", t.python),
            ("DeepStream", t.deepstream)]
    return "\n".join("| %s | %s |" % (k, v) for k, v in rows if v)


def _agreement(result: Optional[Dict[str, object]]) -> str:
    if not result:
        return "Not measured for this bundle (it was written without a verification set)."
    if result.get("skipped"):
        return "Not measured: %s." % result["skipped"]
    return ("Measured on the host when this bundle was written, on the %s images in `eval/` with the FP32 model: "
            "nvinfer-style preprocessing (%s) gives the same top-1 class as the model's own preprocessing on "
            "**%.2f %%** of them; top-1 accuracy %.2f %% with the model's preprocessing, %.2f %% nvinfer-style. "
            "Where that matters, crop the object upstream (a detector's boxes, `nvdspreprocess`) to the model's "
            "crop fraction." % (result["images"], result["emulation"], result["top1_agreement_percent"],
                                result["top1_model_preprocessing_percent"], result["top1_nvinfer_style_percent"]))


def _verify(b: BundleText) -> str:
    if b.eval_set is None:
        return "This bundle carries no verification set (written with `--no-eval-set`)."
    ref = b.eval_set["reference"]  # type: ignore[index]
    return """`./verify_on_device.sh [{p}]` builds the engine if needed, runs it on the {n} class-balanced labeled
images in `eval/` and compares it with the FP32 logits the host computed for exactly those files (top-1
{top1} % on the host). It writes `out/verify/<precision>/report.json` in the host bench's format (accuracy,
drop and agreement against the host FP32, KL, latency percentiles, GPU and end-to-end time, power mode and
clocks where readable) and exits 1 below 90 % top-1 agreement. Gate it on the host:

```sh
scp user@device:~/{bundle}/out/verify/int8/report.json .
inception-deploy gate --report report.json --baseline benchmarks/baselines/<model>.{bundle}.json --junit gate.xml
```

It needs numpy and Pillow beside TensorRT (JetPack: `sudo apt install python3-numpy python3-pil`).""".format(
        p="|".join(b.precisions), n=b.eval_set["count"], top1=ref["top1_percent"],  # type: ignore[index]
        bundle=b.target.name)


def _trtexec(b: BundleText) -> str:
    return "\n\n".join("%s:\n\n```sh\n%s\n```" % (p, cmd) for p, cmd in b.commands.items()) or "-"


def _triton(b: BundleText) -> List[str]:
    if b.target.platform != "datacenter":
        return []
    name = deepstream.triton_name(b.model_name)
    engine = engine_relpath(b.target, b.model_name, b.default_precision, b.dla_core)
    return ["## Triton Inference Server", "",
            "`triton/%s/config.pbtxt` serves the engine with dynamic batching (up to batch %d) and the labels "
            "for classification requests. Put the engine built here in the repository:" % (
                name, b.target.batch_for(-1).max), "",
            "```sh",
            "mkdir -p %s && cp %s %s" % (shlex.quote("triton/%s/1" % name), shlex.quote(engine),
                                         shlex.quote("triton/%s/1/model.plan" % name)),
            "tritonserver --model-repository=$PWD/triton   # in the NGC tritonserver container of this TensorRT",
            "```", ""]


def readme(b: BundleText) -> str:
    t, m = b.target, b.manifest
    scp, ssh = copy_hint(t.name, t, b.default_precision, b.dla_core)
    rows = "\n".join("| %s | `model/%s` |" % (p, f) for p, f in b.precisions.items())
    ds_engine = engine_relpath(t, b.model_name, b.default_precision, b.dla_core, softmax=True)
    dla = " --dla-core %d" % b.dla_core if b.dla_core >= 0 else ""
    lines = [
        "# %s for %s: deploy bundle" % (m.model.name, t.name), "",
        "%s. Made by `inception-deploy` on a host that cannot build this target's engine: %s." % (
            t.description, b.reason), "",
        "| needs | version |", "| --- | --- |", _versions(b), "",
        "The engine is built on the device itself, by the same builder the project uses (`python/engines`: the "
        "standard library and TensorRT, nothing else), with the device's system Python and TensorRT bindings.", "",
        "## Build the engine on the device", "", "```sh", scp, ssh, "```", "",
        "`build_on_device.sh [%s] [--softmax] [--dla-core N]` checks the files against `SHA256SUMS`, then writes "
        "`%s` and its manifest (`model.engine.json`: TensorRT version, GPU, power mode, layer precisions, build "
        "time). It builds only what this bundle carries the ONNX for:" % (
            "|".join(b.precisions), engine_relpath(t, b.model_name, b.default_precision, b.dla_core)), "",
        "| precision | built from |", "| --- | --- |", rows, "",
        "## Verify on the device", "", _verify(b), "",
        "## The same with trtexec", "",
        "`./trtexec_commands.sh [precision]` runs these (%s). They are generated from the builder's own settings "
        "(batch profile, workspace, optimisation level, timing cache file, build only) and write the same engine "
        "paths:" % t.tensorrt, "", _trtexec(b), "",
        "## DeepStream", "",
        "nvinfer's classifier parser reads probabilities, so DeepStream gets its own engine with a Softmax "
        "appended (`./build_on_device.sh %s --softmax%s` -> `%s`). `deepstream/%s` names only that prebuilt "
        "engine (no ONNX): nvinfer cannot build one itself, so it can never fall back to FP16 when INT8 was "
        "asked for; without the engine the pipeline stops with an error." % (
            b.default_precision, dla, ds_engine, deepstream.CONFIG), "",
        "`deepstream-app -c deepstream/%s` runs it on a video file (set `[source0] uri`); "
        "`deepstream/%s VIDEO.mp4` is the same as one gst-launch-1.0 line." % (
            deepstream.APP_CONFIG, deepstream.GST_SCRIPT), "",
        "nvinfer scales the whole frame to the input size and does not crop, and it has one scale for all "
        "channels. " + _agreement(b.deepstream), ""]
    lines += _triton(b)
    lines += ["## Notes", ""] + (["- %s" % n for n in b.notes] or ["- none"]) + [""]
    return "\n".join(lines)
