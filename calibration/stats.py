"""Streaming activation statistics: one ONNX Runtime pass, a fixed-size histogram per tensor.

ONNX Runtime's own calibrators keep every activation of every batch before reducing them (they ran
out of 24 GB at 256 Inception images). Here each batch is reduced at once to a histogram of
``|x|`` with ``BINS`` bins over ``[0, R]``, ``R`` a power of two: when a later batch exceeds
``R``, ``R`` doubles and neighbouring bins merge pairwise, which is exact (no re-interpolation).
Memory is ``BINS`` counters per tensor whatever the image count, and every calibration method
(max, percentile, entropy, mse) is computed afterwards from the same pass.

Results are cached on disk, keyed by the model's sha256, the image files' sha256s, the
preprocessing and the tensor list, so re-running a stage (or trying another method) costs nothing.
"""
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from inception_deploy.pipeline import atomic

BINS = 8192
STATS_VERSION = 4  # 2: the graph input from the batches; 3: derived Concat histograms; 4: channel means
HISTC_CHUNK = 1 << 23


@dataclass
class TensorHistogram:
    """|x| histogram of one tensor: ``counts[i]`` holds values in ``[i, i+1) * R / BINS``."""

    counts: np.ndarray          # (BINS,) int64
    range_max: float            # R, a power of two (0 until the first non-zero value)
    amax: float                 # exact max |x|
    min: float                  # exact signed min / max (non-negative tensors are post-ReLU)
    max: float
    elements: int

    @classmethod
    def empty(cls) -> "TensorHistogram":
        return cls(np.zeros(BINS, dtype=np.int64), 0.0, 0.0, math.inf, -math.inf, 0)

    @property
    def bin_width(self) -> float:
        return self.range_max / len(self.counts) if self.range_max else 0.0

    def grow_to(self, range_max: float) -> None:
        """Double ``R`` until it reaches ``range_max``, merging bin pairs (exact)."""
        if self.range_max == 0.0:
            self.range_max = range_max
            return
        while self.range_max < range_max:
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([merged, np.zeros_like(merged)])
            self.range_max *= 2.0

    def add(self, values: np.ndarray) -> None:
        """Count ``|values|`` in. torch's one-pass ``aminmax`` and ``histc`` kernels: 3x faster than
        the same steps in numpy (which cost more than the network on Inception: issue 21)."""
        import torch

        flat = torch.from_numpy(np.ascontiguousarray(values)).reshape(-1)
        if flat.numel() == 0:
            return
        lo_t, hi_t = torch.aminmax(flat)
        lo, hi = float(lo_t), float(hi_t)
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.elements += int(flat.numel())
        amax = max(-lo, hi)
        if not math.isfinite(amax):
            raise FloatingPointError("non-finite activation")
        self.amax = max(self.amax, amax)
        if amax == 0.0:
            self.counts[0] += flat.numel()
            return
        self.grow_to(power_of_two_at_least(amax))
        source = flat if lo >= 0.0 else flat.abs()
        bins = len(self.counts)
        for start in range(0, source.numel(), HISTC_CHUNK):   # histc counts in float32: exact below 2**24
            part = torch.histc(source[start:start + HISTC_CHUNK], bins=bins, min=0.0, max=self.range_max)
            self.counts += part.numpy().astype(np.int64)

    def merged(self, others: Iterable["TensorHistogram"]) -> "TensorHistogram":
        """The histogram of all these tensors' values together (a Concat's shared-scale group)."""
        group = [self] + list(others)
        out = TensorHistogram.empty()
        out.grow_to(max(h.range_max for h in group))
        for h in group:
            if h.elements == 0:
                continue
            counts = h.counts
            r = h.range_max or out.range_max
            while r < out.range_max:
                counts = counts.reshape(-1, 2).sum(axis=1)
                counts = np.concatenate([counts, np.zeros_like(counts)])
                r *= 2.0
            out.counts = out.counts + counts
            out.amax = max(out.amax, h.amax)
            out.min, out.max = min(out.min, h.min), max(out.max, h.max)
            out.elements += h.elements
        return out


def power_of_two_at_least(x: float) -> float:
    return float(2.0 ** math.ceil(math.log2(x))) if x > 0 else 0.0


@dataclass
class ActivationStats:
    """Histograms of every recorded tensor, with the facts that identify how they were made, and the
    per-channel means of the 4-D ones (what bias correction needs: :func:`calibration.qdq.correct_bias`)."""

    tensors: Dict[str, TensorHistogram]
    images: int
    key: str
    seconds: Dict[str, float] = field(default_factory=dict)
    from_cache: bool = False
    batch: int = 0                # images per ONNX Runtime run in the pass
    channel_means: Dict[str, np.ndarray] = field(default_factory=dict)   # (C,) float64, NCHW tensors

    def save(self, path: str) -> None:
        names = sorted(self.tensors)
        arrays = {
            "names": np.array(names),
            "counts": np.stack([self.tensors[n].counts for n in names]),
            "facts": np.array([[self.tensors[n].range_max, self.tensors[n].amax, self.tensors[n].min,
                                self.tensors[n].max, float(self.tensors[n].elements)] for n in names]),
            "meta": np.array(json.dumps({"images": self.images, "key": self.key, "version": STATS_VERSION,
                                         "seconds": self.seconds, "batch": self.batch})),
            "mean_names": np.array(sorted(self.channel_means)),
            "mean_sizes": np.array([len(self.channel_means[n]) for n in sorted(self.channel_means)], dtype=np.int64),
            "means": np.concatenate([self.channel_means[n] for n in sorted(self.channel_means)] or [np.zeros(0)]),
        }
        with atomic.atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str) -> Optional["ActivationStats"]:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != STATS_VERSION:
                    return None
                tensors = {}
                for name, counts, facts in zip(z["names"], z["counts"], z["facts"]):
                    tensors[str(name)] = TensorHistogram(counts.astype(np.int64), float(facts[0]), float(facts[1]),
                                                         float(facts[2]), float(facts[3]), int(facts[4]))
                ends = np.cumsum(z["mean_sizes"])
                means = {str(n): z["means"][end - size:end].copy()
                         for n, size, end in zip(z["mean_names"], z["mean_sizes"], ends)}
        except (OSError, ValueError, KeyError):
            return None
        return cls(tensors, int(meta["images"]), str(meta["key"]), dict(meta.get("seconds") or {}), True,
                   int(meta.get("batch") or 0), means)


def stats_key(model_sha256: str, image_sha256s: Sequence[str], preprocessing: Dict[str, object],
              tensors: Sequence[str]) -> str:
    """What the histograms depend on: the model, the image contents (in order), preprocessing, tensors."""
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_sha256, "pre": preprocessing, "bins": BINS, "v": STATS_VERSION},
                        sort_keys=True).encode())
    for digest in image_sha256s:
        h.update(digest.encode())
    for name in sorted(tensors):
        h.update(name.encode() + b"\0")
    return h.hexdigest()


def bytes_per_image(model, tensors: Sequence[str]) -> int:  # type: ignore[no-untyped-def]
    """float32 bytes of ``tensors`` for one image (symbolic dims count as 1), from shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: vi.type.tensor_type.shape for vi in list(inferred.graph.value_info)
              + list(inferred.graph.input) + list(inferred.graph.output)}
    total = 0
    for name in tensors:
        volume = 1
        for dim in getattr(shapes.get(name), "dim", []):
            volume *= dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1
        total += 4 * volume
    return total


def relu_inputs(model) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    """{pre-activation tensor: ReLU output} for tensors read only by one ReLU (a Conv's output).

    TensorRT fuses Conv+ReLU, so the pre-activation never exists in an INT8 engine; recording it
    would also stop ONNX Runtime from fusing Conv+ReLU in the histogram pass (it must be an output)
    and double the histogram work. Its cache entry takes the ReLU output's range.
    """
    consumers: Dict[str, List[object]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    pairs = {}
    for name, nodes in consumers.items():
        if len(nodes) == 1 and nodes[0].op_type == "Relu" and name not in outputs:  # type: ignore[attr-defined]
            pairs[name] = nodes[0].output[0]  # type: ignore[attr-defined]
    return pairs


def float_activation_tensors(model) -> List[str]:  # type: ignore[no-untyped-def]
    """Every float32 tensor a node computes, plus the float graph inputs (what TensorRT's implicit
    calibrator gives a scale to), in graph order; pre-ReLU tensors are left out (see relu_inputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info)
             + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    names: List[str] = [i.name for i in model.graph.input
                        if i.name not in inits and types.get(i.name) == onnx.TensorProto.FLOAT]
    seen = set(names) | set(relu_inputs(model))
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape", "Identity"):
            continue
        for out in node.output:
            if out and out not in seen and types.get(out) == onnx.TensorProto.FLOAT:
                names.append(out)
                seen.add(out)
    return names


VIEW_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")


def derived_tensors(model, tensors: Sequence[str]) -> Dict[str, List[str]]:  # type: ignore[no-untyped-def]
    """{tensor: the recorded tensors whose values it holds}, in graph order, for tensors whose histogram
    follows exactly from others': a Concat output holds its inputs' values, a Flatten/Reshape/Squeeze/
    Unsqueeze output its input's. Not recording them saves ORT outputs and histogram work (a quarter
    of Inception-v3's activations are Concat outputs)."""
    wanted = set(tensors)
    derived: Dict[str, List[str]] = {}
    for node in model.graph.node:
        if not node.output or node.output[0] not in wanted:
            continue
        sources = list(node.input) if node.op_type == "Concat" else list(node.input[:1])
        if node.op_type in ("Concat",) + VIEW_OPS and sources and all(s in wanted for s in sources):
            derived[node.output[0]] = sources
    return derived


def collect(onnx_path: str, tensors: Sequence[str], batches: Iterable[np.ndarray], input_name: str,
            key: str, total_images: int, progress_label: Optional[str] = "activation histograms") -> ActivationStats:
    """Run the FP32 model once over ``batches`` with ``tensors`` as extra outputs; histogram each, and
    sum the channels of the 4-D ones (the ones :func:`derived_tensors` names are derived afterwards)."""
    import onnx

    from inception_deploy.pipeline.progress import Progress

    model = onnx.load(onnx_path)
    derived = derived_tensors(model, tensors)
    recorded = [t for t in tensors if t not in derived]
    t0 = time.perf_counter()
    runner = _OutputRunner(model, recorded, input_name)
    session_s = time.perf_counter() - t0
    hists = {name: TensorHistogram.empty() for name in recorded}
    sums: Dict[str, ChannelSum] = {}
    run_s = hist_s = 0.0
    images = 0
    bar = Progress(total_images, progress_label, unit="img") if progress_label else None
    for batch in batches:
        t = time.perf_counter()
        outputs = runner.run(batch)
        run_s += time.perf_counter() - t
        t = time.perf_counter()
        # the graph input is histogrammed from the batch itself: bound as an output, ORT never writes it
        for name, value in ([(input_name, batch)] if input_name in hists else []) + list(zip(runner.names, outputs)):
            hists[name].add(value)
            if value.ndim == 4:
                sums.setdefault(name, ChannelSum()).add(value)
        hist_s += time.perf_counter() - t
        images += len(batch)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    means = {name: total.mean() for name, total in sums.items()}
    _derive(model, derived, hists, means)
    seconds = {"session": round(session_s, 2),
               "onnxruntime": round(run_s, 2), "histograms": round(hist_s, 2)}
    return ActivationStats(hists, images, key, seconds, channel_means=means)


def _derive(model, derived: Dict[str, List[str]], hists: Dict[str, TensorHistogram],  # type: ignore[no-untyped-def]
            means: Dict[str, np.ndarray]) -> None:
    """Histograms (and, for a channel Concat, channel means) of the tensors that were not recorded."""
    channel_concats = {n.output[0] for n in model.graph.node if n.op_type == "Concat"
                       and next((a.i for a in n.attribute if a.name == "axis"), 0) == 1}
    for name, sources in derived.items():
        hists[name] = hists[sources[0]].merged(hists[s] for s in sources[1:])
        if name in channel_concats and all(s in means for s in sources):
            means[name] = np.concatenate([means[s] for s in sources])


class _OutputRunner:
    """The FP32 model with ``recorded`` tensors as extra outputs, run batch after batch into the same
    output arrays (ONNX Runtime IOBinding): allocating ~1 GB of fresh outputs per run costs more page
    faults than the inference itself (x2.7 on Inception-v4)."""

    def __init__(self, model, recorded: Sequence[str], input_name: str) -> None:  # type: ignore[no-untyped-def]
        import onnx

        from inception_deploy.pipeline.onnx_io import ort_session

        existing = {o.name for o in model.graph.output}
        for name in recorded:
            if name not in existing:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
        self.session = ort_session(model.SerializeToString())  # bytes: no temp file (models here are < 2 GB)
        self.input_name = input_name
        self.names = [n for n in recorded if n != input_name]
        self.binding = self.session.io_binding()
        self.buffers: Optional[List[np.ndarray]] = None

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        if self.buffers is not None and len(batch) == len(self.buffers[0]):
            self.binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch))
            self.session.run_with_iobinding(self.binding)
            return self.buffers
        outputs = self.session.run(self.names, {self.input_name: batch})
        if self.buffers is None and all(o.ndim and len(o) == len(batch) for o in outputs):
            self.buffers = [np.empty_like(o) for o in outputs]
            for name, buf in zip(self.names, self.buffers):
                self.binding.bind_output(name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        return outputs


class ChannelSum:
    """Running per-channel sum of NCHW batches (float64), for the channel means."""

    def __init__(self) -> None:
        self.total: Optional[np.ndarray] = None
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(values))
        part = t.reshape(t.shape[0], t.shape[1], -1).sum(dim=(0, 2)).double().numpy()
        self.total = part if self.total is None else self.total + part
        self.count += int(t.numel() // t.shape[1])

    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1) if self.total is not None else np.zeros(0)
