"""bench -> baseline -> gate on the trained test model and the shared val images, end to end through
the CLI; and verify.

The regression the gate must catch is a real one: an INT8 model calibrated (modelopt, max, through
the calibration package) on images preprocessed WITHOUT the mean/std normalisation (a classic
deployment bug), and one whose input activation scale was corrupted. Both must fail the gate with
a message naming the number and the limit; the correctly calibrated INT8 model must pass.
"""
import dataclasses
import json
import os
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.cli import main
from inception_deploy.pipeline.datasets import open_image_folder, select
from inception_deploy.pipeline.preprocess import stack

BENCH_IMAGES = "400"             # 2 a class of the shared val split, seeded
CALIB_IMAGES = 64
# one thread per library: on 2 shared cores, PyTorch's and ONNX Runtime's thread pools fight (10x slower)
FAST = ["--batch-sizes", "1,4", "--iterations", "5", "--warmup-iterations", "1", "--warmup-seconds", "0",
        "--threads", "1"]


def _copy_fp32(onnx_path: str, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(os.path.dirname(onnx_path), name), os.path.join(folder, name))


def _calibration_images(m: mf.Manifest, calib_dir: str, preprocessing) -> np.ndarray:
    ds = open_image_folder(calib_dir, m.model.label_names)
    return stack([preprocessing.image(ds.load(s)) for s in select(ds.samples, CALIB_IMAGES, seed=1)])


def _int8(onnx_path: str, out_path: str, images: np.ndarray, note: str) -> None:
    """modelopt max calibration (the calibration package's call) next to ``onnx_path``'s run folder."""
    from inception_deploy.calibration.qdq import modelopt_quantize

    work = os.path.join(os.path.dirname(out_path), ".work")
    os.makedirs(work, exist_ok=True)
    scratch = os.path.join(work, "in.onnx")   # modelopt rewrites the model it is given: use a copy
    shutil.copy(onnx_path, scratch)
    modelopt_quantize(scratch, out_path, images, "input", method="max")
    shutil.rmtree(work)
    parent = mf.read(onnx_path)
    mf.write(mf.derive(parent, onnx_path, "onnx-int8", stage={"name": "calibrate", "method": "max",
                                                             "summary": f"INT8 (max, {note})"}), out_path)


def _corrupt_input_scale(good: str, out_path: str, factor: float) -> None:
    """Divide the scale of the Q/DQ pair on the network input (every later layer sees clipped data)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(good)
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    init = next(i for i in model.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) / np.float32(factor), init.name))
    onnx.save(model, out_path)
    parent = mf.read(good)
    mf.write(mf.derive(parent, good, "onnx-int8", stage={"summary": f"INT8 with input scale / {factor}"}), out_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, test_model_onnx, calib_dir):
    """Three run folders, each an FP32 ONNX plus one INT8 ONNX: good, wrong preprocessing, bad scale."""
    root = tmp_path_factory.mktemp("bench_runs")
    m = mf.read(test_model_onnx)
    right = m.preprocessing_obj()
    wrong = dataclasses.replace(right, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))   # x / 255 only
    folders = {name: str(root / name) for name in ("good", "wrong_pre", "bad_scale")}
    for folder in folders.values():
        _copy_fp32(test_model_onnx, folder)
    good = os.path.join(folders["good"], "model.int8.onnx")
    _int8(os.path.join(folders["good"], "model.onnx"), good, _calibration_images(m, calib_dir, right),
          "calibrated right")
    _int8(os.path.join(folders["wrong_pre"], "model.onnx"), os.path.join(folders["wrong_pre"], "model.int8.onnx"),
          _calibration_images(m, calib_dir, wrong), "calibrated without normalisation")
    _corrupt_input_scale(good, os.path.join(folders["bad_scale"], "model.int8.onnx"), 8.0)
    return folders


def _bench(folder: str, out: str, *extra: str) -> int:
    return main(["bench", "--from", folder, "--count", BENCH_IMAGES, "--out", out] + FAST + list(extra))


@pytest.fixture(scope="module")
def good_report(runs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("good_report"))
    assert _bench(runs["good"], out, "--with-preprocessing") == 0
    return os.path.join(out, "report.json")


@pytest.fixture(scope="module")
def baseline(good_report, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("baseline") / "tiny.json")
    assert main(["baseline", "--report", good_report, "--out", path, "--max-top1-drop", "1.5",
                 "--max-top5-drop", "1.5"]) == 0
    return path


def test_bench_writes_three_reports_and_a_report_manifest(good_report, capsys):
    folder = os.path.dirname(good_report)
    with open(good_report) as f:
        report = json.load(f)
    assert report["schema"] == "inception-deploy/report@1"
    ids = [r["id"] for r in report["rows"]]
    assert ids == ["fp32/pytorch", "fp32/onnxruntime", "int8/onnxruntime"]
    assert report["reference"] == "fp32/pytorch"
    assert [m["kind"] for m in report["missing"]] == ["onnx-fp16"]          # benchmarked what exists
    ident = report["identity"]
    assert ident["images"]["count"] == int(BENCH_IMAGES) and len(ident["images"]["fingerprint"]) == 64
    report_manifest = mf.read(os.path.join(folder, "report.json"), "report")
    assert ident["model"]["weights_sha256"] == report_manifest.model.weights_sha256
    for r in report["rows"]:
        assert r["accuracy"]["images"] == int(BENCH_IMAGES)
        # plain, then with decode + preprocessing, per batch size
        assert [(lr["batch"], lr["with_preprocessing"]) for lr in r["latency"]] == \
            [(1, False), (1, True), (4, False), (4, True)]
        for lr in r["latency"]:
            s = lr["e2e_ms"]
            assert lr["iterations"] == 5 and 0 < s["min"] <= s["p50"] <= s["p99"] <= s["max"]
            assert lr["throughput_ips"] > 0
    fp32_ort = report["rows"][1]
    assert fp32_ort["drift"]["top1_agreement"] == 1.0 and fp32_ort["drift"]["max_abs_logit_error"] < 1e-3
    assert report["rows"][0]["accuracy"]["top1"] > 15.0      # the trained test model, not chance
    cost = report["preprocessing_cost"]
    assert cost["images"] == 100 and cost["file_decode_and_pil_ms"]["p50"] > 0 and cost["camera_frame_ms"]["p50"] > 0
    env = report["environment"]
    assert env["cpu"] and env["libraries"]["onnxruntime"] and env["threads"]["torch"] == 1
    # report.md: one screen, a line per runner and batch
    md = open(os.path.join(folder, "report.md")).read()
    assert "| precision | runner | batch | p50 ms | p99 ms | img/s | p50 +pre ms | top-1 % |" in md
    assert "Preprocessing per image: file decode + PIL path p50" in md
    assert md.count("\n|") == 2 + 3 * 2 and "missing onnx-fp16" in md and len(md.splitlines()) < 40
    html = open(os.path.join(folder, "report.html")).read()
    for png in ("latency_distribution.png", "accuracy_vs_latency.png"):
        assert f"src='{png}'" in html
        with open(os.path.join(folder, png), "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # the summary of a run folder shows a bench line
    assert main(["summary", folder]) == 0
    assert "bench" in capsys.readouterr().out


def test_gate_passes_on_a_correctly_calibrated_int8_model(good_report, baseline, tmp_path, capsys):
    junit = str(tmp_path / "gate.xml")
    assert main(["gate", "--report", good_report, "--baseline", baseline, "--junit", junit]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "int8/onnxruntime" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 10


@pytest.mark.parametrize("run", ["wrong_pre", "bad_scale"])
def test_gate_fails_a_badly_calibrated_int8_model_with_a_readable_message(runs, baseline, run, tmp_path, capsys):
    out_dir = str(tmp_path / "report")
    assert _bench(runs[run], out_dir, "--no-latency") == 0
    capsys.readouterr()
    junit = str(tmp_path / "gate.xml")
    rc = main(["gate", "--report", os.path.join(out_dir, "report.json"), "--baseline", baseline, "--junit", junit])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED" in out
    failures = out.split("FAILED", 1)[1]
    # which number broke which limit, in words
    assert "int8/onnxruntime: top-1 drop vs reference is +" in failures and "limit 1.50" in failures
    assert "int8/onnxruntime: top-1 fall vs baseline is +" in failures
    assert "fp32/" not in failures                          # the FP32 runners are unchanged
    with open(os.path.join(out_dir, "report.json")) as f:
        drop = next(r for r in json.load(f)["rows"] if r["id"] == "int8/onnxruntime")["drift"]["top1_drop"]
    assert drop > 3.0
    suite = ET.parse(junit).getroot().find("testsuite")
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failed) >= 2
    assert all(c.get("classname") == "gate.int8/onnxruntime" for c in failed)


def test_gate_refuses_another_image_set_or_model_and_missing_files(runs, good_report, baseline, tmp_path, capsys):
    other = str(tmp_path / "other")
    assert _bench(runs["good"], other, "--no-latency", "--no-pytorch", "--count", "200") == 0
    capsys.readouterr()
    junit = str(tmp_path / "gate.xml")
    assert main(["gate", "--report", os.path.join(other, "report.json"), "--baseline", baseline,
                 "--junit", junit]) == 2
    err = capsys.readouterr().err
    assert "image set differs" in err and "--count 400 --seed 0" in err and len(err.strip().splitlines()) == 1
    assert ET.parse(junit).getroot().find("testsuite").get("errors") == "1"
    # another model: same report, other weights hash in the baseline
    with open(baseline) as f:
        base = json.load(f)
    base["identity"]["model"]["weights_sha256"] = "0" * 64
    other_base = str(tmp_path / "other_model.json")
    with open(other_base, "w") as f:
        json.dump(base, f)
    assert main(["gate", "--report", good_report, "--baseline", other_base]) == 2
    assert "model weights differ" in capsys.readouterr().err
    assert main(["gate", "--report", str(tmp_path / "nope.json"), "--baseline", baseline]) == 2
    assert "report not found" in capsys.readouterr().err
    assert main(["gate", "--report", good_report, "--baseline", str(tmp_path / "nope.json")]) == 2
    assert "inception-deploy baseline" in capsys.readouterr().err


def test_gate_flags_override_the_baseline_limits(good_report, baseline, capsys):
    with open(good_report) as f:
        report = json.load(f)
    drop = next(r for r in report["rows"] if r["id"] == "int8/onnxruntime")["drift"]["top1_drop"]
    # a limit below the measured drop fails; latency within a generous limit passes
    if drop > 0:
        assert main(["gate", "--report", good_report, "--baseline", baseline,
                     "--max-top1-drop", str(drop / 2)]) == 1
        assert "top-1 drop vs reference" in capsys.readouterr().out
    assert main(["gate", "--report", good_report, "--baseline", baseline, "--max-latency-regression", "1000"]) == 0
    out = capsys.readouterr().out
    assert "p50 latency change, batch 4" in out and "latency regression 1000.0 %" in out


def test_baseline_missing_runner_fails_the_gate(runs, baseline, tmp_path, capsys):
    """An INT8 artifact that stopped being produced is a regression, not a silent pass."""
    folder = str(tmp_path / "fp32_only")
    _copy_fp32(os.path.join(runs["good"], "model.onnx"), folder)
    out_dir = str(tmp_path / "report")
    assert _bench(folder, out_dir, "--no-latency") == 0
    capsys.readouterr()
    assert main(["gate", "--report", os.path.join(out_dir, "report.json"), "--baseline", baseline]) == 1
    out = capsys.readouterr().out
    assert "int8/onnxruntime: present in report: in the baseline but not measured" in out


def test_verify_runs_onnx_against_its_parent_and_skips_an_engine(runs, test_model_onnx, tmp_path, capsys):
    good = os.path.join(runs["good"], "model.int8.onnx")
    out = str(tmp_path / "verify")
    assert main(["verify", "--engine", good, "--count", "200", "--out", out, "--no-latency", "--threads", "1",
                 "--min-top1-agreement", "0.9"]) == 0
    assert "verified: int8/onnxruntime" in capsys.readouterr().out
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["command"] == "verify" and report["reference"] == "fp32/onnxruntime"
    # the wrongly calibrated model does not agree with its parent: exit 1, with the figure
    bad = os.path.join(runs["wrong_pre"], "model.int8.onnx")
    assert main(["verify", "--engine", bad, "--count", "200", "--out", str(tmp_path / "v2"), "--no-latency",
                 "--threads", "1", "--min-top1-agreement", "0.9"]) == 1
    assert "agrees with its reference fp32/onnxruntime on" in capsys.readouterr().err
    # an engine cannot run here: exit 3 and the reason, before anything is measured
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    mf.write(mf.derive(mf.read(good), good, "engine", stage={"precision": "int8", "target": "rtx"}), str(engine))
    assert main(["verify", "--engine", str(engine), "--out", str(tmp_path / "v3")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot run TensorRT engine") and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "v3" / "report.json")


def test_report_its_manifest_and_the_baseline_follow_the_schemas(good_report, baseline, validate_document):
    with open(good_report, encoding="utf-8") as f:
        validate_document("report", json.load(f))
    with open(mf.sidecar(good_report), encoding="utf-8") as f:
        validate_document("manifest", json.load(f))
    with open(baseline, encoding="utf-8") as f:
        validate_document("baseline", json.load(f))


def test_the_report_manifest_has_a_sane_name(good_report):
    """One sidecar rule (pipeline.manifest.sidecar): report.json's manifest is report.manifest.json."""
    folder = os.path.dirname(good_report)
    assert os.path.isfile(os.path.join(folder, "report.manifest.json")) and not os.path.exists(good_report + ".json")
    assert mf.read(good_report, expect_kind="report").artifact["file"] == "report.json"


def test_a_report_written_before_the_rename_reads_under_the_new_name(good_report, baseline, tmp_path):
    """frame_opencv_ms (the camera-frame path's cost, never OpenCV's) is camera_frame_ms; an older
    report.json is read under the new name by load_report, the one place that knows the old one."""
    from inception_deploy.benchmarks.report import load_report, markdown

    old = json.load(open(good_report))
    cost = old["preprocessing_cost"]
    cost["frame_opencv_ms"] = cost.pop("camera_frame_ms")
    path = tmp_path / "report.json"
    path.write_text(json.dumps(old))
    report = load_report(str(path))
    assert "frame_opencv_ms" not in report["preprocessing_cost"]
    assert report["preprocessing_cost"]["camera_frame_ms"] == cost["frame_opencv_ms"]
    assert "camera-frame path p50" in markdown(report) and "OpenCV" not in markdown(report)
    assert main(["gate", "--report", str(path), "--baseline", baseline]) == 0          # still gates


def test_report_html_comes_from_the_template_and_is_left_out_without_jinja2(good_report, tmp_path, monkeypatch):
    """report.html is rendered by jinja2 (autoescaped); where jinja2 is missing (a device's system
    Python) report.json and report.md are still written together, and no half page."""
    import sys

    from inception_deploy.benchmarks.report import load_report, write_reports

    report = load_report(good_report)
    report["rows"][0]["notes"] = ["<b>&</b>"]
    written = write_reports(report, str(tmp_path / "with"), None, None)
    page = open(written["html"], encoding="utf-8").read()
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page
    monkeypatch.setitem(sys.modules, "jinja2", None)
    written = write_reports(report, str(tmp_path / "without"), None, None)
    assert "html" not in written and sorted(os.listdir(tmp_path / "without")) == sorted(
        ["report.json", "report.md", "latency_distribution.png", "accuracy_vs_latency.png"])
