"""Bench, verify and gate as a hostile user meets them: a report made on other pictures under the val
file names is refused, one made on the model's own calibration images is warned about and fails the
gate, malformed reports and baselines are one line with a JUnit error case, and unreadable images
are counted once each.

Real `inception-deploy verify` runs of the trained test model (ONNX Runtime, no latency pass where
not needed) on small copies of the shared val/ and calib/ images."""
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from inception_deploy.benchmarks import gate
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths

QUICK = ["--no-latency", "--count", "1000"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", *args], capture_output=True, text=True,
                          cwd=paths.REPO_ROOT)


def copy_classes(val_dir, dest, classes, per_class=5, offset=0):
    """``classes`` class folders of val/ with ``per_class`` images each; with ``offset``, the pictures
    of other classes saved under these file names."""
    names = sorted(os.listdir(val_dir))
    for i, wnid in enumerate(names[:classes]):
        files = sorted(os.listdir(os.path.join(val_dir, wnid)))[:per_class]
        donor = names[i + offset]
        donor_files = sorted(os.listdir(os.path.join(val_dir, donor)))[:per_class]
        os.makedirs(os.path.join(dest, wnid))
        for name, src in zip(files, donor_files):
            shutil.copy(os.path.join(val_dir, donor, src), os.path.join(dest, wnid, name))
    return dest


@pytest.fixture(scope="module")
def reports(tmp_path_factory, test_model_onnx, val_dir):
    root = tmp_path_factory.mktemp("trust_reports")
    same = copy_classes(val_dir, str(root / "val"), 4)
    other = copy_classes(val_dir, str(root / "other"), 4, offset=50)
    out = {}
    for name, images in (("val", same), ("other", other)):
        res = run_cli("verify", "--engine", test_model_onnx, "--images", images, "--out", str(root / name), *QUICK)
        assert res.returncode == 0, res.stderr[-3000:]
        out[name] = str(root / name / "report.json")
    base = str(root / "baseline.json")
    res = run_cli("baseline", "--report", out["val"], "--out", base)
    assert res.returncode == 0, res.stderr
    out["baseline"] = base
    return out


def test_gate_refuses_a_report_made_on_other_pictures_under_the_same_names(reports, tmp_path):
    r_val, r_other = (json.load(open(reports[k])) for k in ("val", "other"))
    assert r_val["identity"]["images"]["count"] == r_other["identity"]["images"]["count"] == 20
    junit = str(tmp_path / "gate.xml")
    res = run_cli("gate", "--report", reports["other"], "--baseline", reports["baseline"], "--junit", junit)
    assert res.returncode == 2 and "image set differs" in res.stderr, res.stdout + res.stderr
    assert ET.parse(junit).getroot().find(".//error") is not None
    res = run_cli("gate", "--report", reports["val"], "--baseline", reports["baseline"])
    assert res.returncode == 0 and "PASSED" in res.stdout, res.stdout + res.stderr


def test_reports_and_baselines_of_the_names_only_fingerprint_are_refused_with_the_fix(reports, tmp_path):
    old = json.load(open(reports["baseline"]))
    del old["identity"]["images"]["fingerprint_method"]
    path = str(tmp_path / "old.json")
    json.dump(old, open(path, "w"))
    res = run_cli("gate", "--report", reports["val"], "--baseline", path)
    line = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in line and "names only" in line and "inception-deploy baseline" in line


@pytest.mark.parametrize("change, message", [
    (lambda r, b: r["rows"][0].pop("accuracy"), "lacks its id or accuracy record"),
    (lambda r, b: r["rows"].__setitem__(0, dict(r["rows"][0], drift={"top1_drop": None, "top5_drop": 0.1})),
     "drift.top1_drop is None, expected a number"),
    (lambda r, b: b["limits"].__setitem__("max_top1_drop", "half"), "limit max_top1_drop is 'half'"),
])
def test_malformed_report_or_baseline_is_one_line_and_a_junit_error(reports, tmp_path, change, message):
    report, base = json.load(open(reports["val"])), json.load(open(reports["baseline"]))
    change(report, base)
    rp, bp, junit = str(tmp_path / "r.json"), str(tmp_path / "b.json"), str(tmp_path / "gate.xml")
    json.dump(report, open(rp, "w"))
    json.dump(base, open(bp, "w"))
    res = run_cli("gate", "--report", rp, "--baseline", bp, "--junit", junit)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        res.stderr
    error = ET.parse(junit).getroot().find(".//error")
    assert error is not None and message in error.get("message")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, test_model_onnx, calib_dir):
    out = tmp_path_factory.mktemp("trust_calibrated")
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(os.path.dirname(test_model_onnx), name), str(out / name))
    res = run_cli("calibrate", "--onnx", str(out / "model.onnx"), "--images", calib_dir, "--count", "32",
                  "--batch-size", "16", "--precision", "int8", "--method", "max", "--no-trt-check")
    assert res.returncode == 0, res.stderr[-3000:]
    return str(out)


def test_bench_on_the_models_calibration_images_warns_and_the_gate_fails_it(calibrated, calib_dir, tmp_path):
    int8 = os.path.join(calibrated, "model.int8.onnx")
    cal = mf.read(os.path.join(calibrated, "model.int8.calib.cache"), expect_kind="calibration")
    images = tmp_path / "images"
    for f in cal.stage["files"][:12]:                        # the very files it was calibrated on, copied
        dest = images / f["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(calib_dir, f["path"]), str(dest))
    res = run_cli("verify", "--engine", int8, "--images", str(images), "--out", str(tmp_path / "r"), *QUICK)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING: 12 of the 12 images are calibration images of this model" in res.stderr
    report_path = str(tmp_path / "r" / "report.json")
    report = json.load(open(report_path))
    assert report["calibration_overlap"]["images"] == 12
    assert "CALIBRATION IMAGES" in open(str(tmp_path / "r" / "report.md")).read()
    result = gate.evaluate(report, gate.baseline_from_report(report, report_path, dict(gate.DEFAULT_LIMITS)))
    assert [(c.row, c.name) for c in result.failures] == [("images", "not calibration images")]
    res = run_cli("baseline", "--report", report_path, "--out", str(tmp_path / "b.json"))
    assert res.returncode == 2 and "calibration images" in res.stderr and not (tmp_path / "b.json").exists()


def test_unreadable_images_are_counted_once_with_preprocessing_timing(test_model_onnx, val_dir, tmp_path):
    images = copy_classes(val_dir, str(tmp_path / "images"), 2, per_class=2)
    first = os.path.join(images, sorted(os.listdir(images))[0])
    for i, data in enumerate((b"", b"not an image", open(os.path.join(first, os.listdir(first)[0]), "rb").read()[:200])):
        open(os.path.join(first, "bad%d.JPEG" % i), "wb").write(data)
    res = run_cli("verify", "--engine", test_model_onnx, "--images", images, "--out", str(tmp_path / "r"),
                  "--count", "100", "--with-preprocessing", "--batch-sizes", "1", "--iterations", "3",
                  "--warmup-iterations", "1", "--warmup-seconds", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.load(open(str(tmp_path / "r" / "report.json")))
    assert report["images_unreadable"]["count"] == 3 and report["identity"]["images"]["count"] == 7
    assert "3 unreadable images left out" in open(str(tmp_path / "r" / "report.md")).read()
