"""The CI gate: a report against a committed baseline -> pass (0), regression (1), unusable (2).

A baseline (``inception-deploy baseline``, written from a real run, never by hand) records what
was measured (hashes of the source weights, the image list and the preprocessing), the figures of
every runner, and the limits. The gate first refuses to compare different things (exit 2), then
checks, for every runner in the baseline:

- drift against the FP32 reference in the same report: top-1 / top-5 drop <= the limit (what a
  deployment loses);
- accuracy against the same runner in the baseline: top-1 / top-5 may fall at most the limit
  (what changed since the baseline was recorded: a bad calibration, a preprocessing change);
- latency (p50 per batch size) against the baseline, only when a limit is set (off by default:
  shared CI machines are noisy);
- every runner of the baseline is still in the report (an artifact that silently stopped being
  built is a regression too);
- the images are not calibration images of the model (bench records the overlap it finds).

Report and baseline are checked for shape first: a missing or non-numeric figure is unusable
input (exit 2) naming the field, never an internal error. Image sets are compared by content
fingerprint; a report or baseline from a version that fingerprinted names only is refused with
the command that regenerates it.

Limits come from the baseline file, flags override them. stdlib only, Python 3.8 syntax.
"""
import datetime
import os
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from inception_deploy.pipeline import atomic, documents
from inception_deploy.pipeline.datasets import FINGERPRINT_METHOD
from inception_deploy.pipeline.errors import UserError

DEFAULT_LIMITS = {"max_top1_drop": 0.5, "max_top5_drop": 0.5, "max_latency_regression": None}
EPS = 1e-9


@dataclass
class Check:
    row: str
    name: str
    value: Optional[float]
    limit: Optional[float]
    unit: str
    passed: bool
    detail: str = ""
    skipped: Optional[str] = None        # why this check could not run here (e.g. no GPU): not a failure

    def line(self) -> str:
        value = "-" if self.value is None else f"{self.value:+.2f}"
        limit = "-" if self.limit is None else f"{self.limit:.2f}"
        state = "skip" if self.skipped else "ok" if self.passed else "FAIL"
        return f"{self.row:<26} {self.name:<34} {value:>9} {limit:>7} {self.unit:<7} {state}"

    def failure(self) -> str:
        if self.value is None:
            return f"{self.row}: {self.name}: {self.detail}"
        return f"{self.row}: {self.name} is {self.value:+.2f} {self.unit}, limit {self.limit:.2f}" + \
               (f" ({self.detail})" if self.detail else "")


@dataclass
class GateResult:
    report: str
    baseline: str
    limits: Dict[str, Optional[float]]
    checks: List[Check] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def skips(self) -> List[Check]:
        return [c for c in self.checks if c.skipped]

    @property
    def failures(self) -> List[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures


# -- baseline files ---------------------------------------------------------------------------------
def baseline_from_report(report: Dict[str, Any], report_path: str,
                         limits: Dict[str, Optional[float]]) -> Dict[str, Any]:
    """The baseline record of a report: identity, limits and each runner's figures."""
    from inception_deploy.benchmarks.environment import one_line
    from inception_deploy.pipeline.hashing import file_sha256

    rows = {}
    for r in report["rows"]:
        d = r.get("drift") or {}
        rows[r["id"]] = {
            "precision": r["precision"], "backend": r["backend"], "runner": r["runner"],
            "reference": bool(r.get("reference")),
            "top1": r["accuracy"]["top1"], "top5": r["accuracy"]["top5"], "images": r["accuracy"]["images"],
            "top1_drop": d.get("top1_drop"), "top5_drop": d.get("top5_drop"),
            "top1_agreement": d.get("top1_agreement"),
            "latency_p50_ms": {str(lr["batch"]): lr["e2e_ms"]["p50"] for lr in r["latency"]
                               if not lr.get("with_preprocessing")},
        }
    ident = report["identity"]
    return {
        "schema": documents.BASELINE,
        "created": report.get("created"),
        "from_report": {"file": os.path.relpath(report_path), "sha256": file_sha256(report_path),
                        "command": report.get("command")},
        "identity": {"model": ident["model"],
                     "images": {k: v for k, v in ident["images"].items() if k != "root"},
                     "preprocessing": {"sha256": ident["preprocessing"]["sha256"]}},
        "limits": dict(limits),
        "environment": one_line(report.get("environment", {})),
        "reference": report["reference"],
        "rows": rows,
    }


def write_baseline(report_path: str, out_path: str, limits: Dict[str, Optional[float]]) -> Dict[str, Any]:
    from inception_deploy.benchmarks.report import load_report

    report = load_report(report_path)
    check_report_shape(report, report_path)
    overlap = (report.get("calibration_overlap") or {}).get("images")
    if overlap:
        raise UserError(f"{report_path} was measured on {overlap} calibration images of the model; a baseline must "
                        "come from images the model was not calibrated on (re-run bench on the val/ split)")
    if report.get("skipped") or report.get("missing"):
        gaps = [m["kind"] for m in report.get("missing", [])] + [s["id"] for s in report.get("skipped", [])]
        print(f"note: the baseline covers only what this report measured (not: {', '.join(gaps)})")
    base = baseline_from_report(report, report_path, limits)
    atomic.write_json(out_path, base)
    return base


def load_baseline(path: str) -> Dict[str, Any]:
    return documents.read_document(path, documents.BASELINE, "baseline",
                                   "write one from a trusted run with inception-deploy baseline --report REPORT "
                                   "--out PATH, then commit it")


# -- input shape ---------------------------------------------------------------------------------------
def _number(value: Any, what: str, where: str, fix: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise UserError(f"{where}: {what} is {value!r}, expected a number; {fix}")


def check_report_shape(report: Dict[str, Any], where: str) -> None:
    """Every field the gate reads is there and numeric (UserError naming the first that is not)."""
    fix = "re-run inception-deploy bench to write it again"
    ident = report.get("identity")
    if not isinstance(ident, dict) or not all(isinstance(ident.get(k), dict) for k in ("model", "images",
                                                                                     "preprocessing")):
        raise UserError(f"{where}: identity must hold model, images and preprocessing records; {fix}")
    rows = report.get("rows")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{where}: no measured rows; {fix}")
    for i, r in enumerate(rows):
        name = f"row {r.get('id', i)!r}" if isinstance(r, dict) else f"row {i}"
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("accuracy"), dict):
            raise UserError(f"{where}: {name} lacks its id or accuracy record; {fix}")
        for key in ("top1", "top5"):
            _number(r["accuracy"].get(key), f"{name} accuracy.{key}", where, fix)
        d = r.get("drift")
        if d is not None:
            if not isinstance(d, dict):
                raise UserError(f"{where}: {name} drift is {d!r}, expected a record or null; {fix}")
            for key in ("top1_drop", "top5_drop"):
                _number(d.get(key), f"{name} drift.{key}", where, fix)
        latency = r.get("latency", [])
        if not isinstance(latency, list) or not all(isinstance(lr, dict) and isinstance(lr.get("e2e_ms"), dict)
                                                    for lr in latency):
            raise UserError(f"{where}: {name} latency must be a list of records with e2e_ms; {fix}")
        for lr in latency:
            _number(lr.get("batch"), f"{name} latency batch", where, fix)
            _number(lr["e2e_ms"].get("p50"), f"{name} latency p50 (batch {lr.get('batch')})", where, fix)


def check_baseline_shape(baseline: Dict[str, Any], where: str) -> None:
    """Limits are numbers or null, every row's figures numbers (or null where the baseline has none)."""
    fix = "write it again with inception-deploy baseline --report REPORT"
    limits = baseline.get("limits") or {}
    if not isinstance(limits, dict):
        raise UserError(f"{where}: limits must be a record; {fix}")
    for key in DEFAULT_LIMITS:
        _number(limits.get(key), f"limit {key}", where, "set it to a number of points/percent or null", True)
    ident = baseline.get("identity")
    if not isinstance(ident, dict) or not all(isinstance(ident.get(k), dict) for k in ("model", "images",
                                                                                     "preprocessing")):
        raise UserError(f"{where}: identity must hold model, images and preprocessing records; {fix}")
    rows = baseline.get("rows")
    if not isinstance(rows, dict):
        raise UserError(f"{where}: rows must be a record of runners; {fix}")
    for rid, row in rows.items():
        if not isinstance(row, dict):
            raise UserError(f"{where}: row {rid!r} must be a record; {fix}")
        for key in ("top1", "top5"):
            _number(row.get(key), f"row {rid!r} {key}", where, fix, allow_none=True)
        latency = row.get("latency_p50_ms", {})
        if not isinstance(latency, dict):
            raise UserError(f"{where}: row {rid!r} latency_p50_ms must be a record; {fix}")
        for batch, ms in latency.items():
            if not str(batch).isdigit():
                raise UserError(f"{where}: row {rid!r} latency batch {batch!r} is not a batch size; {fix}")
            _number(ms, f"row {rid!r} latency_p50_ms[{batch}]", where, fix)


# -- the gate -----------------------------------------------------------------------------------------
def check_fingerprint_method(report: Dict[str, Any], baseline: Dict[str, Any]) -> None:
    """Both must identify their image set by content (this version's fingerprint), or nothing is compared."""
    for what, data, fix in (("report", report, "re-run inception-deploy bench"),
                            ("baseline", baseline, "re-run bench on the baseline's images and record it again "
                                                   "with inception-deploy baseline --report REPORT --out BASELINE")):
        method = (data["identity"]["images"] or {}).get("fingerprint_method")
        if method != FINGERPRINT_METHOD:
            raise UserError(f"the {what} identifies its images by {'names only' if method is None else repr(method)}, "
                            f"not by content ({FINGERPRINT_METHOD}): it was written by an earlier version and "
                            f"cannot be compared; {fix}")


def check_identity(report: Dict[str, Any], baseline: Dict[str, Any]) -> None:
    """Refuse (exit 2) to compare a report with a baseline of another model, image set or preprocessing."""
    check_fingerprint_method(report, baseline)
    r, b = report["identity"], baseline["identity"]
    problems = []
    if r["model"].get("weights_sha256") != b["model"].get("weights_sha256"):
        problems.append(f"model weights differ (report {r['model'].get('name')} "
                        f"{str(r['model'].get('weights_sha256'))[:12]}..., baseline {b['model'].get('name')} "
                        f"{str(b['model'].get('weights_sha256'))[:12]}...)")
    if r["images"].get("fingerprint") != b["images"].get("fingerprint"):
        sel = b["images"].get("selection") or {}
        how = "all images" if sel.get("count") is None else f"--count {sel.get('count')} --seed {sel.get('seed')}"
        problems.append(f"image set differs (report {r['images'].get('count')} images "
                        f"{r['images']['fingerprint'][:12]}..., baseline {b['images'].get('count')} images "
                        f"{str(b['images'].get('fingerprint'))[:12]}...; the baseline used {how})")
    if r["preprocessing"].get("sha256") != b["preprocessing"].get("sha256"):
        problems.append("preprocessing differs (report %s..., baseline %s...)"
                        % (r["preprocessing"]["sha256"][:12], str(b["preprocessing"].get("sha256"))[:12]))
    if problems:
        raise UserError("report and baseline measure different things: " + "; ".join(problems)
                        + ". Re-run bench on the baseline's model and images, or record a new baseline with "
                          "inception-deploy baseline")


def resolve_limits(baseline: Dict[str, Any], overrides: Dict[str, Optional[float]]) -> Dict[str, Optional[float]]:
    limits = dict(DEFAULT_LIMITS)
    limits.update({k: v for k, v in (baseline.get("limits") or {}).items() if k in DEFAULT_LIMITS})
    limits.update({k: v for k, v in overrides.items() if v is not None})
    for k, v in limits.items():
        if v is not None and v < 0:
            raise UserError(f"{k} must be >= 0, got {v}")
    return limits


def _significance(d: Dict[str, Any]) -> str:
    p = d.get("mcnemar_p")
    if p is None:
        return ""
    return f"McNemar p={p:.2g}: " + ("real at this sample size" if p < 0.05 else "within noise at this sample size")


def evaluate(report: Dict[str, Any], baseline: Dict[str, Any], report_path: str = "", baseline_path: str = "",
             overrides: Optional[Dict[str, Optional[float]]] = None) -> GateResult:
    check_report_shape(report, report_path or "report")
    check_baseline_shape(baseline, baseline_path or "baseline")
    check_identity(report, baseline)
    limits = resolve_limits(baseline, overrides or {})
    res = GateResult(report_path, baseline_path, limits)
    overlap = report.get("calibration_overlap") or {}
    used = overlap.get("images") if isinstance(overlap, dict) else None
    if not isinstance(used, int) or isinstance(used, bool):
        used = None if "calibration_overlap" not in report else -1
    res.checks.append(Check("images", "not calibration images", float(used) if used is not None and used >= 0 else None,
                            0.0, "images", used == 0, _overlap_detail(overlap, used)))
    got = {r["id"]: r for r in report["rows"]}
    top1, top5, lat = limits["max_top1_drop"], limits["max_top5_drop"], limits["max_latency_regression"]
    for rid, base in baseline["rows"].items():
        r = got.get(rid)
        if r is None:
            why = next((s["reason"] for s in report.get("skipped", []) if s["id"] == rid), None)
            if why:   # the runner cannot run on this host (no GPU / TensorRT): reported as skipped, with why
                res.checks.append(Check(rid, "present in report", None, None, "", True,
                                        "in the baseline, not runnable here", skipped=why))
            else:
                res.checks.append(Check(rid, "present in report", None, None, "", False,
                                        "in the baseline but not measured (and not skipped with a reason)"))
            continue
        d = r.get("drift")
        if d:
            for name, value, limit in (("top-1 drop vs reference", d["top1_drop"], top1),
                                       ("top-5 drop vs reference", d["top5_drop"], top5)):
                if limit is not None:
                    res.checks.append(Check(rid, name, value, limit, "points", value <= limit + EPS,
                                            _significance(d) if name.startswith("top-1") else ""))
        for name, key, limit in (("top-1 fall vs baseline", "top1", top1), ("top-5 fall vs baseline", "top5", top5)):
            if limit is None or base.get(key) is None:
                continue
            fall = base[key] - r["accuracy"][key]
            res.checks.append(Check(rid, name, fall, limit, "points", fall <= limit + EPS,
                                    f"{base[key]:.2f} % -> {r['accuracy'][key]:.2f} %"))
        if lat is not None:
            now = {str(lr["batch"]): lr["e2e_ms"]["p50"] for lr in r["latency"] if not lr.get("with_preprocessing")}
            for batch, was in sorted(base.get("latency_p50_ms", {}).items(), key=lambda kv: int(kv[0])):
                if batch not in now:
                    res.notes.append(f"{rid}: batch {batch} latency not measured in the report")
                    continue
                change = 100.0 * (now[batch] - was) / was if was > 0 else 0.0
                res.checks.append(Check(rid, f"p50 latency change, batch {batch}", change, lat, "%",
                                        change <= lat + EPS, f"{was:.3g} ms -> {now[batch]:.3g} ms"))
    for rid in got:
        if rid not in baseline["rows"]:
            res.notes.append(f"{rid}: not in the baseline (only reported; record a new baseline to gate it)")
    if lat is not None and report.get("environment"):
        from inception_deploy.benchmarks.environment import one_line
        if baseline.get("environment") and one_line(report["environment"]) != baseline["environment"]:
            res.notes.append("latency compared across different environments: baseline " + baseline["environment"])
    res.seconds = time.time() - res.started
    return res


def _overlap_detail(overlap: Any, used: Optional[int]) -> str:
    if used is None:
        return "the report does not say whether its images were calibration images (re-run bench)"
    if used < 0:
        return "the report's calibration_overlap record is unreadable (re-run bench)"
    if used == 0:
        return ""
    return "%d of %s images were used to calibrate the model (%s)" % (
        used, overlap.get("of"), ", ".join(overlap.get("calibration_manifests") or []))


def screen(res: GateResult) -> str:
    """One screen: which number broke which limit."""
    lim = res.limits
    lines = [f"gate: {res.report} against {res.baseline}",
             "limits: top-1 drop {} points, top-5 drop {} points, latency regression {}".format(
                 lim["max_top1_drop"], lim["max_top5_drop"],
                 "off" if lim["max_latency_regression"] is None else f"{lim['max_latency_regression']} %"),
             "",
             f"{'runner':<26} {'check':<34} {'value':>9} {'limit':>7} {'unit':<7} result"]
    lines += [c.line() for c in res.checks]
    lines += [f"note: {n}" for n in res.notes]
    lines.append("")
    skipped = [f"  {c.row}: skipped: {c.skipped}" for c in res.skips]
    if res.passed:
        lines.append(f"PASSED: all {len(res.checks) - len(skipped)} checks hold"
                     + (f", {len(skipped)} skipped (cannot run on this host):" if skipped else ""))
        lines += skipped
    else:
        lines.append(f"FAILED: {len(res.failures)} of {len(res.checks)} checks broke their limits:")
        lines += ["  " + c.failure() for c in res.failures]
    return "\n".join(lines)


def _suite(hostname: Optional[str], started: float, seconds: float) -> ET.Element:
    """A ``testsuite`` with what both Jenkins' xunit schema and the Ant JUnit.xsd ask for: name,
    timestamp (ISO 8601 without a zone), hostname, time, and the aggregate's package and id."""
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return ET.Element("testsuite", name="inception-deploy gate", package="inception-deploy", id="0",
                      timestamp=stamp, hostname=hostname or socket.gethostname() or "localhost", time="%.3f" % seconds)


def _properties(suite: ET.Element, values: Dict[str, Any]) -> None:
    props = ET.SubElement(suite, "properties")
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value="" if value is None else str(value))


def junit_xml(res: Optional[GateResult], error: Optional[str] = None, hostname: Optional[str] = None) -> str:
    """JUnit XML for CI systems: one testcase per check, skipped ones with their reason, or one error
    for unusable input. Valid against Jenkins' xunit junit-10.xsd and the Ant JUnit.xsd alike."""
    started = res.started if res is not None else time.time()
    suite = _suite(hostname, started, res.seconds if res is not None else 0.0)
    counts = {"tests": 1, "failures": 0, "errors": 1, "skipped": 0}
    if res is None:
        _properties(suite, {})
        case = ET.SubElement(suite, "testcase", classname="gate", name="inputs usable", time="0")
        ET.SubElement(case, "error", message=error or "unusable input", type="UserError").text = error or ""
    else:
        _properties(suite, {"report": res.report, "baseline": res.baseline, **res.limits})
        for c in res.checks:
            case = ET.SubElement(suite, "testcase", classname="gate." + c.row, name=c.name, time="0")
            if c.skipped:
                ET.SubElement(case, "skipped", message=c.skipped)
            elif not c.passed:
                ET.SubElement(case, "failure", message=c.failure(), type="GateRegression").text = c.line()
        counts = {"tests": len(res.checks), "failures": len(res.failures), "errors": 0, "skipped": len(res.skips)}
    for key, value in counts.items():
        suite.set(key, str(value))
    ET.SubElement(suite, "system-out").text = screen(res) if res is not None else (error or "")
    ET.SubElement(suite, "system-err").text = ""
    root = ET.Element("testsuites")
    root.append(suite)
    if hasattr(ET, "indent"):  # Python 3.9+
        ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str, res: Optional[GateResult], error: Optional[str] = None) -> None:
    atomic.write_text(path, junit_xml(res, error))
