"""Write a bench/verify report three ways: ``report.json`` (everything, versioned schema, with a
``report`` manifest so ``inception-deploy summary`` shows it), ``report.md`` (one screen: precision
x runner x batch -> latency, throughput, accuracy, drift) and ``report.html`` (the same table, the
plots as PNG files beside it, the worst classes and the environment). The files of one report are
published together (:mod:`pipeline.publish`), ``report.json`` last.
"""
import importlib.util
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from inception_deploy.benchmarks.environment import one_line
from inception_deploy.pipeline import documents
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import publish

# report@1 keys renamed since reports were first written: (section, old key) -> new key. load_report
# reads an older report's key under its new name; this is the one place that knows the old names.
RENAMED_KEYS = {("preprocessing_cost", "frame_opencv_ms"): "camera_frame_ms"}   # never OpenCV's path

COLUMNS = ("precision", "runner", "batch", "p50 ms", "p99 ms", "img/s", "top-1 %", "top-5 %",
           "top-1 drop", "top-5 drop", "agree %", "KL")


def _ms(x: Optional[float]) -> str:
    if x is None:
        return ""
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _rate(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _drop(x: Optional[float], significant: bool = False) -> str:
    return "" if x is None else f"{x:+.2f}" + ("*" if significant else "")


def table(report: Dict[str, Any]) -> Tuple[List[str], List[List[str]]]:
    """Header and rows: one line per runner and batch size; accuracy on each runner's first line."""
    gpu = any(lr.get("gpu_ms") for r in report["rows"] for lr in r["latency"])
    pre = any(lr.get("with_preprocessing") for r in report["rows"] for lr in r["latency"])
    head = list(COLUMNS[:6]) + (["p50 +pre ms"] if pre else []) + (["GPU p50 ms"] if gpu else []) + list(COLUMNS[6:])
    lines = []
    for r in report["rows"]:
        plain = [lr for lr in r["latency"] if not lr.get("with_preprocessing")] or [None]
        with_pre = {lr["batch"]: lr for lr in r["latency"] if lr.get("with_preprocessing")}
        for i, lr in enumerate(plain):
            d = r.get("drift") or {}
            first = i == 0
            runner = r["runner"] + (" (ref)" if r.get("reference") else "")
            cells = [r["precision"] if first else "", runner if first else "",
                     str(lr["batch"]) if lr else "-", _ms(lr["e2e_ms"]["p50"]) if lr else "",
                     _ms(lr["e2e_ms"]["p99"]) if lr else "", _rate(lr["throughput_ips"]) if lr else ""]
            if pre:
                p = with_pre.get(lr["batch"]) if lr else None
                cells.append(_ms(p["e2e_ms"]["p50"]) if p else "")
            if gpu:
                cells.append(_ms(lr["gpu_ms"]["p50"]) if lr and lr.get("gpu_ms") else "")
            a = r["accuracy"]
            cells += [f"{a['top1']:.2f}" if first else "", f"{a['top5']:.2f}" if first else "",
                      _drop(d.get("top1_drop"), d.get("significant", False)) if first and d else "",
                      _drop(d.get("top5_drop")) if first and d else "",
                      f"{100 * d['top1_agreement']:.1f}" if first and d else "",
                      f"{d['mean_kl']:.4f}" if first and d else ""]
            lines.append(cells)
    return head, lines


def _title(report: Dict[str, Any]) -> str:
    ident = report["identity"]
    sel = ident["images"]["selection"]
    chosen = "all" if sel.get("count") is None else f"class-balanced subset, seed {sel.get('seed')}"
    return (f"{report['command']}: {ident['model']['name']} on {ident['images']['count']} images of "
            f"{_short(ident['images']['root'])} ({chosen})")


def _short(path: str) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("../../") else path


def notes(report: Dict[str, Any]) -> List[str]:
    """The lines under the table: missing/skipped artifacts, worst classes, unreadable images."""
    out = []
    overlap = report.get("calibration_overlap") or {}
    if overlap.get("images"):
        out.append(f"CALIBRATION IMAGES: {overlap['images']} of the {overlap.get('of')} images were used to calibrate "
                   f"this model ({', '.join(overlap.get('calibration_manifests') or [])}); its figures are "
                   "optimistic and the gate fails this report")
    for m in report.get("missing", []):
        out.append(f"missing {m['kind']}: {m['reason']}")
    for s in report.get("skipped", []):
        out.append(f"skipped {s['id']}: {s['reason']}")
    for r in report["rows"]:
        for n in r.get("notes", []):
            out.append(f"{r['id']}: {n}")
        d = r.get("drift")
        if d and d.get("worst_classes"):
            worst = ", ".join(f"{w['label']} {w['top1_drop']:+.0f}" for w in d["worst_classes"][:3])
            ci = d.get("top1_drop_ci95") or [0, 0]
            out.append(f"{r['id']}: McNemar p={d['mcnemar_p']:.2g} ({d['only_baseline_correct']} vs "
                       f"{d['only_candidate_correct']} discordant), top-1 drop 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}]; "
                       f"worst classes (top-1 drop, points): {worst}")
    load = (report.get("host_load") or {}).get("start")
    cpus = report.get("environment", {}).get("cpus_usable") or 0
    threads = report.get("settings", {}).get("threads")
    if load is not None and cpus and load >= cpus:
        out.append(f"host busy: load average {load:.1f} on {cpus} CPUs when the run started; latency figures are "
                   "pessimistic and noisy" + (", multi-threaded pools suffer most (try --threads 1)"
                                              if not threads or threads > 1 else ""))
    bad = report.get("images_unreadable", {}).get("count", 0)
    if bad:
        out.append(f"{bad} unreadable images left out")
    return out


def markdown(report: Dict[str, Any]) -> str:
    head, rows = table(report)
    env = report["environment"]
    lines = [f"# {_title(report)}", "",
             f"{one_line(env)} · {report['created']} · {report['elapsed_s']:.0f} s", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c for c in row) + " |" for row in rows]
    cost = report.get("preprocessing_cost")
    footer = ["", "Latency: end-to-end per batch (host copies included; `+pre`: decode and preprocessing of the "
              "files too). Drops in points against the reference (ref) on the same images, positive = worse; "
              "* = real at this sample size (McNemar p < 0.05)."]
    if cost and cost.get("images"):
        footer.append(f"Preprocessing per image: file decode + PIL path p50 "
                      f"{_ms(cost['file_decode_and_pil_ms']['p50'])} ms, camera-frame path p50 "
                      f"{_ms(cost['camera_frame_ms']['p50'])} ms ({cost['images']} images).")
    extra = notes(report)
    return "\n".join(lines + footer + ([""] + [f"- {n}" for n in extra] if extra else [])) + "\n"


TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
PLOT_TITLES = {"latency_distribution": "Latency distribution per runner",
               "accuracy_vs_latency": "Accuracy vs latency per precision"}


def html_page(report: Dict[str, Any], plots: Dict[str, str], folder: str) -> str:
    """``report.html`` from ``templates/report.html.j2`` (jinja2, autoescaped): the table, the plots
    beside it (paths relative to ``folder``), the notes, the worst classes and the environment.
    ImportError where jinja2 is missing (a device's system Python: report.json and .md suffice there)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, keep_trailing_newline=True)
    head, rows = table(report)
    ident = report["identity"]
    worst = [{"id": r["id"], "classes": r["drift"]["worst_classes"]} for r in report["rows"]
             if r.get("drift") and r["drift"].get("worst_classes")]
    return env.get_template("report.html.j2").render(
        title=_title(report), environment_line=one_line(report["environment"]), created=report["created"],
        elapsed_s=report["elapsed_s"], weights_sha256=str(ident["model"]["weights_sha256"]),
        images_fingerprint=ident["images"]["fingerprint"], preprocessing_sha256=ident["preprocessing"]["sha256"],
        head=head, rows=rows, notes=notes(report), worst=worst,
        plots=[{"name": name, "title": PLOT_TITLES.get(name, name), "src": os.path.relpath(path, folder)}
               for name, path in plots.items()],
        environment_json=json.dumps(report["environment"], indent=2))


def summary_line(report: Dict[str, Any]) -> str:
    """The one line ``inception-deploy summary`` shows for this report."""
    rows = report["rows"]
    ref = next(r for r in rows if r.get("reference"))
    parts = [f"{report['identity']['images']['count']} images, reference {ref['id']} top-1 "
             f"{ref['accuracy']['top1']:.1f} %"]
    for r in rows:
        if r.get("drift"):
            parts.append(f"{r['id']} drop {r['drift']['top1_drop']:+.2f}")
    if report.get("missing"):
        parts.append("missing " + ", ".join(m["kind"] for m in report["missing"]))
    if report.get("skipped"):
        parts.append("skipped " + ", ".join(s["id"] for s in report["skipped"]))
    return "; ".join(parts)


def write_reports(report: Dict[str, Any], folder: str, parent: Optional[mf.Manifest],
                  parent_path: Optional[str]) -> Dict[str, str]:
    """Write report.json (+ manifest), report.md, plots and report.html into ``folder``, together."""
    from inception_deploy.benchmarks.plots import render

    paths = {"json": os.path.join(folder, "report.json"), "md": os.path.join(folder, "report.md"),
             "html": os.path.join(folder, "report.html")}
    with publish.RunLock(folder, report["command"]), publish.Publication(folder) as pub:
        _write_text(pub.add(paths["json"]), json.dumps(report, indent=2) + "\n")
        if parent is not None and parent_path is not None:
            m = mf.derive(parent, parent_path, "report", artifact_path=paths["json"], stage={
                "name": report["command"], "summary": summary_line(report), "report_schema": report["schema"],
                "markdown": os.path.basename(paths["md"]),
                "html": os.path.basename(paths["html"]) if importlib.util.find_spec("jinja2") else None})
            pub.write_manifest(m, paths["json"])
        _write_text(pub.add(paths["md"]), markdown(report))
        plots = render(report, pub.staging)
        for path in plots.values():
            pub.add(os.path.join(folder, os.path.basename(path)))
        try:
            page = html_page(report, plots, pub.staging)
        except ImportError:      # no jinja2 (a device's system Python): report.json, report.md and the plots
            page = None
            del paths["html"]
        if page is not None:
            _write_text(pub.add(paths["html"]), page)
        pub.last(paths["json"])                                  # the file make tracks
    legacy = paths["json"] + ".json"          # the report manifest's name before sidecar() gave JSON artifacts theirs
    if os.path.isfile(legacy) and os.path.isfile(mf.sidecar(paths["json"])):
        os.remove(legacy)
    paths.update({name: os.path.join(folder, os.path.basename(p)) for name, p in plots.items()})
    return paths


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def load_report(path: str) -> Dict[str, Any]:
    """Read a report.json; :class:`UserError` (exit 2) when missing, unreadable or of another schema."""
    fix = "write it with inception-deploy bench/verify (or make bench) with this version of inception-deploy"
    data = documents.read_document(path, documents.REPORT, "report", fix)
    documents.check_keys(data, ("identity", "rows", "reference"), path, fix)
    return upgrade(data)


def upgrade(data: Dict[str, Any]) -> Dict[str, Any]:
    """An older report@1 with its :data:`RENAMED_KEYS` under their new names (in place)."""
    for (section, old), new in RENAMED_KEYS.items():
        part = data.get(section)
        if isinstance(part, dict) and old in part and new not in part:
            part[new] = part.pop(old)
    return data
