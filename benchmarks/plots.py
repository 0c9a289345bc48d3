"""Report plots, rendered to PNG files (CI systems attach files, not notebooks).

- ``latency_distribution.png``: per-iteration end-to-end latency of every runner, one panel per
  batch size (box = p25..p75, whiskers p5..p95, dots = p99 and the outliers beyond).
- ``accuracy_vs_latency.png``: top-1 against per-image latency (p50) for each runner, colour by
  precision, marker by backend; one panel for batch 1 (latency-bound) and one for the largest
  batch measured (throughput-bound).

matplotlib is optional on device hosts: :func:`render` returns ``{}`` and the HTML report says
the plots were not drawn.
"""
from typing import Any, Dict, List

from inception_deploy.pipeline import atomic

PRECISION_COLOURS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#d62728", "fp8": "#9467bd", "bf16": "#8c564b"}
BACKEND_MARKERS = {"pytorch": "o", "onnxruntime": "s", "tensorrt": "^"}


def _plain_latency(row: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [r for r in row.get("latency", []) if not r.get("with_preprocessing")]


RUNNER_NAMES = {"pytorch": "PyTorch", "onnxruntime": "ORT", "tensorrt": "TensorRT", "tensorrt-rtx": "TRT-RTX"}


def _runner_label(row: Dict[str, Any]) -> str:
    """Short, two-line tick label: ``fp32`` / ``ORT cpu``."""
    name = str(row.get("runner") or row["backend"])
    base, _, device = name.partition("-")
    short = RUNNER_NAMES.get(name) or RUNNER_NAMES.get(base, base)
    return f"{row['precision']}\n{short}" + (f" {device}" if device and name not in RUNNER_NAMES else "")


def _plain_log_axis(axis: Any, lo: float, hi: float) -> None:
    """Log scale with plain numbers (1, 2, 5, 10 ... not 2x10^0) and no crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = (hi / lo) if lo > 0 else 1e9
    subs = (1.0, 2.0, 5.0) if decades < 300 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig: Any, title: str, path: str, plt: Any) -> None:
    """Title the figure, lay it out, write it as a PNG atomically and free it."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def latency_distribution(report: Dict[str, Any], path: str, plt: Any) -> bool:
    rows = [r for r in report["rows"] if _plain_latency(r)]
    sizes = sorted({lr["batch"] for r in rows for lr in _plain_latency(r)})
    if not sizes:
        return False
    fig, axes = plt.subplots(1, len(sizes), figsize=(max(4.2 * len(sizes), 6), 4.2), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        data, names, colours = [], [], []
        for r in rows:
            for lr in _plain_latency(r):
                if lr["batch"] == n and lr.get("samples_ms"):
                    data.append(lr["samples_ms"])
                    names.append(_runner_label(r))
                    colours.append(PRECISION_COLOURS.get(r["precision"], "#7f7f7f"))
        if not data:
            ax.set_visible(False)
            continue
        box = ax.boxplot(data, whis=(5, 95), patch_artist=True, widths=0.6,
                         flierprops={"marker": ".", "markersize": 3, "alpha": 0.5})
        for patch, colour in zip(box["boxes"], colours):
            patch.set_facecolor(colour)
            patch.set_alpha(0.45)
        for i, samples in enumerate(data, start=1):  # p99 as a black tick
            s = sorted(samples)
            ax.plot([i], [s[min(len(s) - 1, int(0.99 * (len(s) - 1) + 0.5))]], marker="_", color="black",
                    markersize=14)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_title(f"batch {n}")
        ax.set_ylabel("end-to-end latency per batch (ms)")
        ax.grid(axis="y", alpha=0.3)
        hi, lo = max(max(d) for d in data), min(min(d) for d in data)
        if lo > 0 and hi / lo > 30:
            ax.set_yscale("log")
            _plain_log_axis(ax.yaxis, lo, hi)
    model = report["identity"]["model"]["name"]
    _save(fig, f"{model}: latency distribution ({report['settings']['timing']['iterations']} timed iterations; "
               "box p25-p75, whiskers p5-p95, black tick p99)", path, plt)
    return True


def accuracy_vs_latency(report: Dict[str, Any], path: str, plt: Any) -> bool:
    rows = [r for r in report["rows"] if _plain_latency(r)]
    sizes = sorted({lr["batch"] for r in rows for lr in _plain_latency(r)})
    if not sizes:
        return False
    panels = [sizes[0]] + ([sizes[-1]] if sizes[-1] != sizes[0] else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.4), squeeze=False)
    ref = next((r for r in report["rows"] if r.get("reference")), None)
    for ax, n in zip(axes[0], panels):
        xs = []
        for r in rows:
            lr = next((x for x in _plain_latency(r) if x["batch"] == n), None)
            if lr is None:
                continue
            per_image = lr["e2e_ms"]["p50"] / n
            xs.append(per_image)
            ax.scatter([per_image], [r["accuracy"]["top1"]], s=90,
                       color=PRECISION_COLOURS.get(r["precision"], "#7f7f7f"),
                       marker=BACKEND_MARKERS.get(r["backend"], "D"), edgecolor="black", linewidth=0.6, zorder=3,
                       alpha=0.85, label=_runner_label(r).replace("\n", " "))
        if ref is not None:
            ax.axhline(ref["accuracy"]["top1"], color="grey", linestyle="--", linewidth=0.8, zorder=1)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis, min(xs), max(xs))
        ax.margins(x=0.25)
        ax.set_xlabel(f"p50 latency per image at batch {n} (ms, log scale)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"batch {n}: " + ("latency-bound" if n == 1 else "throughput-bound"))
        ax.grid(alpha=0.3, which="both")
        _pad_y(ax, [r["accuracy"]["top1"] for r in rows])
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, fontsize=8, loc="lower right")
    images = report["identity"]["images"]["count"]
    _save(fig, f"{report['identity']['model']['name']}: top-1 vs latency on {images} images (dashed: the reference)",
          path, plt)
    return True


def _pad_y(ax: Any, values: List[float]) -> None:
    lo, hi = min(values), max(values)
    pad = max(0.5, (hi - lo) * 0.3)
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))


def render(report: Dict[str, Any], folder: str) -> Dict[str, str]:
    """Draw every plot into ``folder``; returns {plot name: file path} ({} without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    import os

    out = {}
    for name, draw in (("latency_distribution", latency_distribution), ("accuracy_vs_latency", accuracy_vs_latency)):
        path = os.path.join(folder, name + ".png")
        if draw(report, path, plt):
            out[name] = path
    return out
