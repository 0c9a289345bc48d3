"""The calibrate stage: FP32 ONNX -> INT8 Q/DQ ONNX and/or FP16 ONNX, with manifests and drift.

Parts, each timed and printed:
1. choose the calibration images (seeded, class-balanced; sha256 of each file),
2. one ONNX Runtime pass recording a histogram of every activation (cached by model + images),
3. activation ranges by the chosen method, one value per Concat group; the TensorRT calibration
   cache and its ``calibration`` manifest,
4. the Q/DQ model through modelopt's cache import: modelopt places Q/DQ, our scales are checked
   and re-imported if it changed them,
5. drift on the evaluation images, and the accuracy-budget search when a budget is given,
6. the TensorRT-RTX INT8 build's layer check (engines.builder),
7. FP16 through AutoCast.

The whole run holds the output folder's run lock, and its outputs (calibration cache and its
manifest, INT8 and FP16 ONNX with theirs) are staged and published together at the end
(:mod:`pipeline.publish`): a killed or failed run leaves the previous set untouched, never a
new cache beside an old INT8 model.
"""
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from inception_deploy.pipeline import trt_cache
from inception_deploy.calibration import data as cdata
from inception_deploy.calibration import methods as cmethods
from inception_deploy.calibration import qdq
from inception_deploy.calibration import stats as cstats
from inception_deploy.pipeline import lineage
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import publish as pub_
from inception_deploy.pipeline.errors import CheckFailed, UserError
from inception_deploy.pipeline.progress import StatusLine

DEFAULT_METHOD = "percentile-99.999"
DEFAULT_COUNT = 500
DEFAULT_EVAL_COUNT = 1000
PRECISIONS = ("int8", "fp16")
REFERENCE_IMAGES = 32          # FP16 AutoCast reference batch and sensitivity pass
STATS_MEMORY = 1 << 30         # bytes of activations one histogram-pass batch may hold


@dataclass
class Options:
    onnx_path: str
    images: str
    precisions: Sequence[str] = ("int8",)
    method: str = DEFAULT_METHOD
    count: int = DEFAULT_COUNT
    seed: int = 0
    batch_size: int = 32
    out_dir: Optional[str] = None
    eval_images: Optional[str] = None
    eval_count: Optional[int] = DEFAULT_EVAL_COUNT
    budget: Optional[str] = None
    max_minutes: float = 10.0
    high_precision: str = "fp32"
    cache_version: str = trt_cache.DEFAULT_VERSION
    trt_check: bool = True
    compare_methods: Sequence[str] = ()
    nodes_to_exclude: Sequence[str] = ()
    stats_cache: bool = True
    bias_correction: bool = True
    corrupt_scales: Dict[str, float] = field(default_factory=dict)   # tests only: force some amax values


class Timer:
    """Prints and records the time of each part (``calibrate: <part>: 1.2 s``)."""

    def __init__(self) -> None:
        self.parts: Dict[str, float] = {}
        self._t = time.perf_counter()
        self.start = self._t
        self._status = StatusLine("calibrate")

    def done(self, part: str, note: str = "") -> float:
        now = time.perf_counter()
        seconds = now - self._t
        self._t = now
        self.parts[part] = round(self.parts.get(part, 0.0) + seconds, 2)
        self._status.line(f"{part}: {seconds:.1f} s" + (f" ({note})" if note else ""))
        return seconds

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 2)


@dataclass
class Outputs:
    int8: Optional[str] = None
    fp16: Optional[str] = None
    cache: Optional[str] = None
    calibration_manifest: Optional[str] = None
    manifests: Dict[str, mf.Manifest] = field(default_factory=dict)
    budget_met: Optional[bool] = None
    budget_stopped: str = ""
    method_table: List[Dict[str, Any]] = field(default_factory=list)
    written: List[str] = field(default_factory=list)     # said on the terminal once published


def _paths(onnx_path: str, out_dir: Optional[str]) -> Dict[str, str]:
    folder = out_dir or os.path.dirname(os.path.abspath(onnx_path))
    stem = os.path.basename(onnx_path)
    stem = stem[:-5] if stem.endswith(".onnx") else stem
    return {"dir": folder, "int8": os.path.join(folder, stem + ".int8.onnx"),
            "fp16": os.path.join(folder, stem + ".fp16.onnx"),
            "cache": os.path.join(folder, stem + ".int8.calib.cache"),
            "stats": os.path.join(folder, ".calibration")}


def run(opts: Options) -> Outputs:
    precisions = [p for p in PRECISIONS if p in opts.precisions]
    unknown = [p for p in opts.precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise UserError(f"precision {', '.join(unknown) or '(none)'} not supported; expected int8, fp16 or int8,fp16")
    if opts.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if not opts.max_minutes > 0:
        raise UserError(f"--max-minutes must be a positive number of minutes, got {opts.max_minutes:g}")
    method = cmethods.Method.parse(opts.method)
    compare_methods = [cmethods.Method.parse(m) for m in opts.compare_methods]
    budget = None
    if opts.budget is not None:
        from inception_deploy.calibration.budget import Budget
        budget = Budget.parse(opts.budget)
        if not opts.eval_images:
            raise UserError("--accuracy-budget needs --eval-images (a labeled folder, e.g. the shared val/ split)")
    if (compare_methods or budget) and "int8" not in precisions:
        raise UserError("--accuracy-budget and --compare-methods apply to --precision int8")
    parent = lineage.check(opts.onnx_path, expect_kind="onnx")   # sha256, labels, graph I/O vs manifest
    fp32 = load_onnx(opts.onnx_path)        # decoded once: a bad file is refused before the lock
    paths = _paths(opts.onnx_path, opts.out_dir)
    with pub_.RunLock(paths["dir"], "calibrate"):
        out = _run_locked(opts, precisions, method, compare_methods, budget, parent, fp32, paths)
    for line in out.written:
        print(f"calibrate: wrote {line}", file=sys.stderr)
    return out


def load_onnx(path: str) -> Any:
    """``onnx.load`` with a one-line UserError naming the file when its bytes do not decode."""
    import onnx

    try:
        return onnx.load(path)
    except Exception as e:  # protobuf's DecodeError and friends
        raise UserError(f"{path} does not decode as an ONNX model ({type(e).__name__}: {str(e).splitlines()[0]}); "
                        f"{mf.regenerate('onnx')}") from None


@dataclass
class StageRun:
    """What every part of one calibrate run reads and writes (made once by :func:`_run_locked`)."""

    opts: Options
    parent: mf.Manifest
    fp32: Any                             # the input ONNX, decoded (onnx.ModelProto)
    paths: Dict[str, str]
    calib: cdata.ImageSet
    reference: np.ndarray                 # REFERENCE_IMAGES preprocessed calibration images
    evaluation: Optional["Evaluation"]
    work: str
    timer: "Timer"
    out: "Outputs"
    pub: pub_.Publication
    stats: Optional[cstats.ActivationStats] = None


def _run_locked(opts: Options, precisions: List[str], method: cmethods.Method,
                compare_methods: List[cmethods.Method], budget: Any, parent: mf.Manifest, fp32: Any,
                paths: Dict[str, str]) -> "Outputs":
    """The run, under the output folder's lock; every output is published at the end, together."""
    pre = parent.preprocessing_obj()
    timer = Timer()
    out = Outputs()

    calib = cdata.choose_calibration_images(opts.images, parent.label_names, opts.count, opts.seed,
                                            opts.batch_size, opts.eval_images)
    unreadable = len(calib.folder.skipped)
    timer.done("choose calibration images", f"{len(calib)} images, sha256 of each"
               + (f"; {unreadable} unreadable left out" if unreadable else ""))
    reference, _, _ = cdata.load_arrays(cdata.ImageSet(calib.folder.subset(calib.samples[:REFERENCE_IMAGES]),
                                                       REFERENCE_IMAGES, opts.seed, calib.sha256[:REFERENCE_IMAGES]),
                                        pre, opts.batch_size)

    evaluation = None
    if opts.eval_images:
        evaluation = _load_eval(opts, parent, pre, timer)

    work = pub_.temp_dir(paths["dir"], "calibrate")
    try:
        with pub_.Publication(paths["dir"]) as pub:
            run = StageRun(opts, parent, fp32, paths, calib, reference, evaluation, work, timer, out, pub)
            run.stats = _histograms(run, pre)
            if "int8" in precisions:
                _int8(run, method, compare_methods, budget)
            if "fp16" in precisions:
                _fp16(run)
            pub.last(paths["int8"] if "int8" in precisions else paths["fp16"])   # the file make tracks
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _frame_variants(parent, out, opts.eval_images or opts.images, timer)
    print(f"calibrate: total {timer.total():.1f} s", file=sys.stderr)
    return out


def _frame_variants(parent: mf.Manifest, out: Outputs, images: str, timer: Timer) -> None:
    """The frame-input variants the export asked for (``export --frame-input``), of each model
    written here: the preprocessing is prepended after quantization and checked to hold no Q/DQ."""
    from inception_deploy.pipeline.frame_io import parse_frame_size
    from inception_deploy.pipeline.frame_variant import write_frame_variant

    sizes = [parse_frame_size(s) for s in parent.stage.get("frame_inputs") or []]
    for path in (out.int8, out.fp16):
        for size in (sizes if path else []):
            variant = write_frame_variant(path, size, images)
            timer.done("frame-input variant", "%s: %s" % (variant.artifact["file"], variant.stage["summary"]))


# -- parts ------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    images: np.ndarray
    labels: np.ndarray
    fp32_logits: np.ndarray
    record: Dict[str, Any]
    output_name: str
    input_name: str

    def predict(self, path: str, index: Optional[np.ndarray] = None) -> np.ndarray:
        from inception_deploy.calibration.evaluate import predict

        x = self.images if index is None else self.images[index]
        return predict(path, x, input_name=self.input_name, output_name=self.output_name)


def _load_eval(opts: Options, parent: mf.Manifest, pre: Any, timer: Timer) -> Evaluation:
    from inception_deploy.pipeline.metrics import accuracy
    from inception_deploy.calibration.evaluate import predict

    images = cdata.choose_images(opts.eval_images, parent.label_names, opts.eval_count,  # type: ignore[arg-type]
                                 opts.seed, require_labels=True, what="evaluation images")
    x, y, _ = cdata.load_arrays(images, pre, 64, label=None)
    t = time.perf_counter()
    logits = predict(opts.onnx_path, x, input_name=parent.input_name, output_name=parent.output_name)
    forward_s = time.perf_counter() - t
    acc = accuracy(logits, y)
    record = dict(images.record())
    record["fp32"] = acc.to_dict()
    record["fp32_forward_ms_per_image"] = round(1000.0 * forward_s / max(len(y), 1), 2)
    timer.done("evaluation images + FP32 logits", f"{len(y)} images, FP32 top-1 {acc.top1:.2f} %, top-5 {acc.top5:.2f} %")
    return Evaluation(x, y, logits, record, parent.output_name, parent.input_name)


def _histograms(run: StageRun, pre: Any) -> cstats.ActivationStats:
    """The activation statistics of the calibration images (one ONNX Runtime pass), or their cache."""
    opts, parent, calib = run.opts, run.parent, run.calib
    model = run.fp32
    tensors = cstats.float_activation_tensors(model)
    key = cstats.stats_key(parent.artifact["sha256"], calib.sha256, parent.preprocessing, tensors)
    cache_file = os.path.join(run.paths["stats"], "stats-%s.npz" % key[:20])
    stats = cstats.ActivationStats.load(cache_file) if opts.stats_cache and os.path.isfile(cache_file) else None
    if stats is not None and stats.key == key:
        run.timer.done("activation histograms", f"reused {os.path.relpath(cache_file)} (same model and images)")
        return stats
    per_image = cstats.bytes_per_image(model, tensors)
    batch = max(1, min(opts.batch_size, STATS_MEMORY // max(per_image, 1)))   # every tensor of a batch is held at once
    batches = (b.images for b in calib.folder.batches(pre, batch))
    stats = cstats.collect(opts.onnx_path, tensors, batches, run.parent.input_name, key, len(calib))
    stats.batch = batch
    run.timer.done("activation histograms", "one ONNX Runtime pass, %d tensors: ORT %.1f s, histograms %.1f s, "
                   "decode+preprocess the rest" % (len(tensors), stats.seconds["onnxruntime"],
                                                   stats.seconds["histograms"]))
    if opts.stats_cache:
        stats.save(cache_file)
    return stats


def _int8(run: StageRun, method: cmethods.Method, compare_methods: List[cmethods.Method], budget: Any) -> None:
    """Ranges -> TensorRT cache -> Q/DQ candidate -> drift (or the budget search, or the method
    comparison) -> TensorRT-RTX layer check -> staged for publishing."""
    from inception_deploy.calibration.ranges import RangeRecipe

    opts, stats = run.opts, run.stats
    assert stats is not None
    recipe = RangeRecipe.for_model(run.fp32, stats.tensors, run.parent.preprocessing,
                                   run.parent.input_name, opts.corrupt_scales)
    scales = recipe.scales(method)
    run.timer.done("activation ranges", f"{method.name}, {len(scales)} tensors, {len(recipe.groups)} Concat groups"
                   + (", exact input scale" if recipe.input_amax else ""))
    amax = {k: v * trt_cache.INT8_MAX for k, v in scales.items()}     # the ranges as the scales give them
    cal_link = _write_calibration(run, method, scales, amax, recipe)
    builder = qdq.CandidateBuilder(opts.onnx_path, run.work, run.reference, run.parent.input_name, opts.nodes_to_exclude,
                                   opts.high_precision, opts.cache_version,
                                   stats.channel_means if opts.bias_correction else None)
    first = builder.build(scales)
    check_runs(first, run.reference[:4], run.parent.input_name, run.parent.output_name)
    result = builder.last
    assert result is not None
    run.timer.done("modelopt quantize with imported scales", f"{result.graph.qdq_pairs} QuantizeLinear nodes, "
                   f"{result.reimported_scales} scales re-imported after modelopt, "
                   f"{len(result.bias_corrected)} biases corrected")
    stage = _int8_record(run, method, amax, recipe, result, cal_link)
    chosen = _measure_int8(run, first, builder, recipe, scales, compare_methods, budget, stage)
    _publish_int8(run, chosen, stage)


def _write_calibration(run: StageRun, method: cmethods.Method, scales: Dict[str, float], amax: Dict[str, float],
                       recipe: Any) -> Dict[str, str]:
    """The TensorRT calibration cache and its ``calibration`` manifest, staged: published with the
    INT8 model at the end. Returns the INT8 manifest's link to it."""
    opts, paths = run.opts, run.paths
    trt_cache.write_cache(run.pub.add(paths["cache"]), scales, opts.cache_version)
    cal_manifest = mf.derive(run.parent, opts.onnx_path, "calibration", artifact_path=paths["cache"], stage={
        "name": "calibrate", "method": method.name, "images": len(run.calib), "seed": opts.seed,
        "source": run.calib.record(), "files": run.calib.file_list(), "batch_size": opts.batch_size,
        "histogram_bins": cstats.BINS, "histogram_batch": run.stats.batch, "stats_key": run.stats.key,
        "stats_reused": run.stats.from_cache,
        "cache_header": trt_cache.header_for(opts.cache_version), "tensors": len(scales),
        "concat_groups": [sorted(g) for g in recipe.groups],
        "input_scale": "exact (the preprocessing puts the input on the INT8 grid)" if recipe.input_amax else "measured",
        "amax": {k: amax[k] for k in sorted(amax)},
        "warnings": run.calib.warnings, "versions": qdq.versions(),
        "timings_s": dict(run.timer.parts, histogram_pass=run.stats.seconds),
        "summary": f"{method.name} ranges for {len(scales)} tensors from {len(run.calib)} images "
                   f"(seed {opts.seed}), TensorRT cache {os.path.basename(paths['cache'])}",
    })
    cal_manifest_sha = mf.file_sha256(run.pub.write_manifest(cal_manifest, paths["cache"]))
    run.out.cache, run.out.calibration_manifest = paths["cache"], mf.sidecar(paths["cache"])
    run.timer.done("calibration cache + manifest", os.path.basename(paths["cache"]))
    return {"file": os.path.basename(mf.sidecar(paths["cache"])), "sha256": cal_manifest_sha}


def _int8_record(run: StageRun, method: cmethods.Method, amax: Dict[str, float], recipe: Any,
                 result: qdq.QuantizeResult, cal_link: Dict[str, str]) -> Dict[str, Any]:
    """The INT8 manifest's stage record (drift, budget and layer check are added as they are measured)."""
    opts = run.opts
    return {"name": "calibrate", "precision": "int8", "method": method.name,
            "images": len(run.calib), "seed": opts.seed, "high_precision_dtype": opts.high_precision,
            "quantization": {"activations": "per-tensor, symmetric", "weights": "per-channel, symmetric, stored INT8",
                             "input_scale": "exact" if recipe.input_amax else "measured",
                             "bias_correction": bool(result.bias_corrected),
                             "tool": "modelopt.onnx.quantization (placement) + calibration-cache import"},
            "calibration_cache": os.path.basename(run.paths["cache"]),
            "calibration_manifest": cal_link,
            "graph": result.graph.to_dict(),
            "scales_reimported_after_modelopt": result.reimported_scales,
            "maxpool_outputs_quantized": result.maxpool_outputs_quantized,
            "bias_corrected_nodes": len(result.bias_corrected),
            "quantized_tensors_without_range": result.unscaled_tensors,
            "amax_summary": cmethods.summarize_amax(amax, recipe.hists, list(result.graph.activation_scales)),
            "nodes_to_exclude": list(opts.nodes_to_exclude), "versions": qdq.versions()}


def _measure_int8(run: StageRun, first: str, builder: qdq.CandidateBuilder, recipe: Any, scales: Dict[str, float],
                  compare_methods: List[cmethods.Method], budget: Any, stage: Dict[str, Any]) -> str:
    """Drift on the evaluation images (or the budget search, which may pick another candidate) and the
    method comparison; returns the candidate to publish."""
    evaluation = run.evaluation
    if evaluation is None:
        return first
    from inception_deploy.pipeline.metrics import compare

    chosen = first
    if budget is not None:
        chosen = _budget(run, budget, first, builder, scales, stage)
    else:
        drift = compare(evaluation.predict(first), evaluation.fp32_logits, evaluation.labels, run.parent.label_names)
        stage["drift"] = drift.to_dict()
        run.timer.done("INT8 drift (ONNX Runtime)", f"top-1 drop {drift.top1_drop:+.2f}, top-5 drop "
                       f"{drift.top5_drop:+.2f} points, agreement {100 * drift.top1_agreement:.2f} %")
    stage["evaluation"] = evaluation.record
    stage["histogram_pass_cost"] = histogram_cost(run.stats, evaluation.record["fp32_forward_ms_per_image"])
    if compare_methods:
        run.out.method_table = _compare(run, compare_methods, recipe, builder, stage)
    return chosen


def _publish_int8(run: StageRun, chosen: str, stage: Dict[str, Any]) -> None:
    """The chosen candidate's graph facts and TensorRT-RTX layer check, then staged with its manifest."""
    import onnx

    opts, paths = run.opts, run.paths
    stage["graph"] = qdq.inspect_qdq(onnx.load(chosen)).to_dict()
    stage["excluded_nodes"] = stage.get("budget", {}).get("excluded", [])
    if opts.trt_check:
        from inception_deploy.calibration.trt_check import layer_check

        candidate = {k: v for k, v in stage.items() if k not in ("calibration_cache", "calibration_manifest")}
        mf.write(mf.derive(run.parent, opts.onnx_path, "onnx-int8", dict(candidate, summary="candidate"),
                           artifact_path=chosen), chosen)
        stage["tensorrt_layers"] = layer_check(chosen, run.work)
        run.timer.done("TensorRT-RTX INT8 build check", stage["tensorrt_layers"].get("note", ""))
    stage["timings_s"] = dict(run.timer.parts, total=run.timer.total(), histogram_pass=run.stats.seconds)
    stage["summary"] = _int8_summary(stage)
    manifest = mf.derive(run.parent, opts.onnx_path, "onnx-int8", stage, artifact_path=paths["int8"])
    run.pub.add_artifact(paths["int8"], chosen, manifest)
    run.out.int8 = paths["int8"]
    run.out.manifests["onnx-int8"] = manifest
    run.out.written.append(f"{paths['int8']} ({manifest.artifact['bytes'] / 1e6:.1f} MB) and {paths['cache']}")


def histogram_cost(stats: cstats.ActivationStats, forward_ms: float) -> Dict[str, Any]:
    """The histogram pass per image (ONNX Runtime with every activation as an output, plus the
    histograms; decoding excluded) against a bare FP32 forward pass (the evaluation pass)."""
    ms = 1000.0 * (stats.seconds.get("onnxruntime", 0.0) + stats.seconds.get("histograms", 0.0)) / max(stats.images, 1)
    return {"ms_per_image": round(ms, 2), "fp32_forward_ms_per_image": forward_ms,
            "ratio": round(ms / forward_ms, 2) if forward_ms and not stats.from_cache else None,
            "reused": stats.from_cache}


def check_runs(path: str, images: np.ndarray, input_name: str, output_name: str) -> None:
    """The Q/DQ graph passes onnx.checker and ONNX Runtime runs it to finite logits."""
    import onnx

    from inception_deploy.calibration.evaluate import predict

    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:
        raise CheckFailed(f"quantized graph {path} fails onnx.checker: {str(e).splitlines()[0]}") from None
    logits = predict(path, images, input_name=input_name, output_name=output_name)
    if not np.isfinite(logits).all():
        raise CheckFailed(f"quantized graph {path} gives non-finite logits in ONNX Runtime")


def _budget(run: StageRun, budget: Any, first: str, builder: qdq.CandidateBuilder, scales: Dict[str, float],
            stage: Dict[str, Any]) -> str:
    """The accuracy-budget search (:func:`calibration.budget.search`) from the first candidate."""
    from inception_deploy.calibration.budget import search
    from inception_deploy.calibration.evaluate import rank_sensitivity

    opts, evaluation, out = run.opts, run.evaluation, run.out
    assert evaluation is not None and builder.last is not None
    first_result = builder.last
    choose, report = cdata.split_eval(len(evaluation.labels), opts.seed)
    ranking_cache: List[Any] = []

    def rank() -> List[str]:
        t = time.perf_counter()
        sample = evaluation.images[choose[:REFERENCE_IMAGES]]
        ranked = rank_sensitivity(opts.onnx_path, first, sample, weighted_nodes(first, first_result.graph.quantized_nodes),
                                  input_name=evaluation.input_name)
        ranking_cache.extend(ranked)
        print(f"budget: sensitivity of {len(ranked)} quantized nodes on {len(sample)} images in "
              f"{time.perf_counter() - t:.1f} s; top: " + ", ".join(r.node for r in ranked[:3]), file=sys.stderr)
        return [r.node for r in ranked]

    result, chosen = search(budget, lambda excluded: builder.build(scales, excluded),
                            lambda p, idx: evaluation.predict(p, idx),
                            evaluation.fp32_logits, evaluation.labels, choose, report, first, rank,
                            opts.max_minutes * 60.0, ranking_record=lambda: [r.to_dict() for r in ranking_cache[:20]])
    stage["budget"] = result.to_dict()
    stage["drift"] = result.report_drift
    out.budget_met = result.met
    out.budget_stopped = result.stopped
    d = result.report_drift
    note = ""
    if result.met and not result.report_within:
        note = (f"; over budget on the report half, McNemar p={d['mcnemar_p']:.2f}"
                + (": not significant at this sample size" if not d["significant"] else ""))
    run.timer.done("accuracy budget search", f"{'met' if result.met else 'NOT met'}: {len(result.excluded)} node(s) "
                   f"kept in {opts.high_precision}; report half: top-1 drop {d['top1_drop']:+.2f}, top-5 drop "
                   f"{d['top5_drop']:+.2f}" + note)
    return chosen


WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def weighted_nodes(path: str, quantized: Sequence[str]) -> List[str]:
    """The quantized nodes worth keeping in high precision: the ones doing the arithmetic.

    Pooling, Flatten and the like only pass INT8 through; excluding them buys no accuracy and
    costs a reformat."""
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(path).graph.node}
    return [n for n in quantized if ops.get(n) in WEIGHTED_OPS]


def _compare(run: StageRun, methods: List[cmethods.Method], recipe: Any, builder: qdq.CandidateBuilder,
             stage: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every listed method from the same histograms, evaluated on the same images."""
    from inception_deploy.pipeline.metrics import compare

    evaluation, stats = run.evaluation, run.stats
    assert evaluation is not None and stats is not None
    table = []
    for m in methods:
        t = time.perf_counter()
        scales = recipe.scales(m)
        t_ranges = time.perf_counter() - t
        path = builder.build(scales)
        t_build = time.perf_counter() - t - t_ranges
        drift = compare(evaluation.predict(path), evaluation.fp32_logits, evaluation.labels)
        row = {"method": m.name, "top1_drop": drift.top1_drop, "top5_drop": drift.top5_drop,
               "top1_agreement": drift.top1_agreement, "mean_kl": drift.mean_kl, "mcnemar_p": drift.mcnemar_p,
               "top1_drop_ci95": drift.top1_drop_ci95,
               "ranges_s": round(t_ranges, 2), "quantize_s": round(t_build, 2),
               "calibration_s": round(stats.seconds["onnxruntime"] + stats.seconds["histograms"] + t_ranges + t_build, 2)}
        table.append(row)
        os.remove(path)
        print(f"compare: {m.name:18s} top-1 drop {drift.top1_drop:+.2f}  top-5 drop {drift.top5_drop:+.2f}  "
              f"agreement {100 * drift.top1_agreement:.2f} %  ranges {t_ranges:.1f} s", file=sys.stderr)
    stage["method_comparison"] = {"images": int(len(evaluation.labels)), "histogram_pass_s": stats.seconds,
                                  "rows": table}
    run.timer.done("method comparison", f"{len(methods)} methods from one histogram pass")
    return table


def _int8_summary(stage: Dict[str, Any]) -> str:
    parts = [f"INT8 Q/DQ ({stage['method']}, {stage['images']} images, {stage['graph']['quantized_nodes']} quantized nodes)"]
    d = stage.get("drift")
    if d:
        parts.append(f"top-1 drop {d['top1_drop']:+.2f} / top-5 drop {d['top5_drop']:+.2f} points on {d['images']} val images")
    b = stage.get("budget")
    if b:
        parts.append(f"budget top1={b['budget']['top1']:g},top5={b['budget']['top5']:g} "
                     f"{'met' if b['met'] else 'NOT met'} with {len(b['excluded'])} node(s) excluded "
                     f"(decided on {b['choose_images']} images, drift above on the other {b['report_images']}"
                     f", McNemar p={b['report_drift']['mcnemar_p']:.2f})")
    layers = stage.get("tensorrt_layers") or {}
    if "reformat_layers" in layers:
        parts.append(f"TensorRT-RTX: {layers['reformat_layers']} reformat layers, {layers['concat_non_int8']} non-INT8 concats")
    return "; ".join(parts)


def _fp16(run: StageRun) -> None:
    """FP16 AutoCast (nodes that overflow stay FP32), its drift, staged for publishing."""
    from inception_deploy.calibration import fp16

    opts, parent, reference, evaluation = run.opts, run.parent, run.reference, run.evaluation
    input_name, output_name, paths, work, timer, out, pub = (run.parent.input_name, run.parent.output_name, run.paths, run.work,
                                                             run.timer, run.out, run.pub)
    hists = run.stats.tensors if run.stats else {}

    partial = os.path.join(work, "fp16.onnx")
    result = fp16.convert(opts.onnx_path, partial, reference, input_name, hists)
    check_runs(partial, reference[:4], input_name, output_name)
    timer.done("FP16 AutoCast", f"{result.fp16_nodes}/{result.nodes} nodes FP16, {len(result.fp32_nodes)} kept FP32, "
               f"{len(result.overflowing_tensors)} tensors beyond FP16 range")
    stage: Dict[str, Any] = {"name": "calibrate", "precision": "fp16", "autocast": result.to_dict(),
                             "reference_images": {"count": int(len(reference)), "seed": opts.seed,
                                                  "source": os.path.abspath(opts.images)},
                             "versions": qdq.versions()}
    if evaluation is not None:
        from inception_deploy.pipeline.metrics import compare

        drift = compare(evaluation.predict(partial), evaluation.fp32_logits, evaluation.labels, parent.label_names)
        stage["drift"] = drift.to_dict()
        stage["evaluation"] = evaluation.record
        timer.done("FP16 drift (ONNX Runtime)", f"top-1 drop {drift.top1_drop:+.2f}, top-5 drop {drift.top5_drop:+.2f}, "
                   f"agreement {100 * drift.top1_agreement:.2f} %")
    stage["timings_s"] = {"autocast": round(result.seconds, 2)}
    summary = f"FP16 ({result.fp16_nodes}/{result.nodes} nodes FP16, I/O FP32, {len(result.fp32_nodes)} kept FP32)"
    if "drift" in stage:
        summary += (f"; top-1 drop {stage['drift']['top1_drop']:+.2f} / top-5 drop {stage['drift']['top5_drop']:+.2f} "
                    f"points on {stage['drift']['images']} val images")
    stage["summary"] = summary
    manifest = mf.derive(parent, opts.onnx_path, "onnx-fp16", stage, artifact_path=paths["fp16"])
    pub.add_artifact(paths["fp16"], partial, manifest)
    out.fp16 = paths["fp16"]
    out.manifests["onnx-fp16"] = manifest
    out.written.append(f"{paths['fp16']} ({manifest.artifact['bytes'] / 1e6:.1f} MB)")
