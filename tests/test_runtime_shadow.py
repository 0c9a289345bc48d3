"""The shadow-mode drift monitor (runtime.shadow) with real models and a planted bad INT8 model.

The bad model is the gate test's: an INT8 ONNX calibrated (modelopt, max) on images preprocessed
without the mean/std normalisation; the good one is calibrated right. The expected agreement is the
one `inception-deploy verify` measures for the good model on val images. The monitor must raise the
alarm on the bad model within a bounded number of compared frames and stay quiet on the good one.
"""
import dataclasses
import json
import os
import shutil
import threading

import pytest

import test_benchmarks_gate as gate_test
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.cli import main
from inception_deploy.pipeline.datasets import open_image_folder, select
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.frame_variant import camera_frame
from inception_deploy.runtime import Classifier
from inception_deploy.runtime.shadow import (ShadowMonitor, ShadowSettings, attach, expected_agreement, find_reference,
                            wilson_upper, _z)

FRAMES = (480, 640)
FAST = ["--batch-sizes", "1", "--iterations", "3", "--warmup-iterations", "1", "--warmup-seconds", "0",
        "--threads", "1"]


def test_wilson_bound_matches_the_textbook_values():
    assert abs(_z(0.975) - 1.959964) < 1e-5 and abs(_z(0.99) - 2.326348) < 1e-5
    assert abs(wilson_upper(0, 10, 0.975) - 0.27753) < 1e-4          # the 95 % two-sided interval's upper end
    assert abs(wilson_upper(95, 100, 0.975) - 0.97847) < 1e-4
    assert wilson_upper(10, 10, 0.99) == pytest.approx(1.0) and wilson_upper(0, 0, 0.99) == 1.0
    assert wilson_upper(50, 100, 0.99) > wilson_upper(500, 1000, 0.99) > 0.5     # more frames, tighter bound


@pytest.fixture(scope="module")
def runs(tmp_path_factory, test_model_onnx, calib_dir):
    """good/ and bad/: the FP32 model.onnx and an INT8 model.int8.onnx derived from it."""
    root = tmp_path_factory.mktemp("shadow_runs")
    m = mf.read(test_model_onnx)
    right = m.preprocessing_obj()
    wrong = dataclasses.replace(right, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = {}
    for name, pre in (("good", right), ("bad", wrong)):
        folder = str(root / name)
        gate_test._copy_fp32(test_model_onnx, folder)
        gate_test._int8(os.path.join(folder, "model.onnx"), os.path.join(folder, "model.int8.onnx"),
                        gate_test._calibration_images(m, calib_dir, pre), name)
        out[name] = os.path.join(folder, "model.int8.onnx")
    return out


@pytest.fixture(scope="module")
def verify_report(runs, val_dir, tmp_path_factory):
    """`inception-deploy verify` of the good INT8 model against its FP32 parent on 200 val images."""
    out = str(tmp_path_factory.mktemp("verify"))
    assert main(["verify", "--engine", runs["good"], "--images", val_dir, "--count", "200", "--out", out] + FAST) == 0
    return os.path.join(out, "report.json")


@pytest.fixture(scope="module")
def frames(test_model_onnx, val_dir):
    ds = open_image_folder(val_dir, mf.read(test_model_onnx).model.label_names)
    return [camera_frame(ds.load(s), FRAMES) for s in select(ds.samples, 150, seed=5)]


def test_reference_and_expected_level_come_from_the_manifests(runs, verify_report):
    assert os.path.samefile(find_reference(runs["good"]), os.path.join(os.path.dirname(runs["good"]), "model.onnx"))
    level, source = expected_agreement(runs["good"], verify_report)
    with open(verify_report) as f:
        row = [r for r in json.load(f)["rows"] if not r.get("reference")][0]
    assert level == row["drift"]["top1_agreement"] and 0.85 < level <= 1.0 and source == verify_report
    with pytest.raises(UserError, match="no measured agreement"):
        expected_agreement(runs["good"])                  # this INT8 manifest has no calibrate drift record
    with pytest.raises(UserError, match="no FP32/FP16 reference"):
        find_reference(os.path.join(os.path.dirname(runs["good"]), "model.onnx"))


def test_engine_reference_is_the_fp16_engine_beside_it(runs, tmp_path):
    """engines/<target>/<model>/int8[-frame-WxH]/model.engine -> the fp16 (else fp32) engine beside it."""
    onnx_path = runs["good"]
    parent = mf.read(onnx_path)
    for precision in ("int8-frame-640x480", "fp16-frame-640x480", "fp32-frame-640x480", "int8", "fp32"):
        folder = tmp_path / "engines" / "rtx" / "m" / precision
        folder.mkdir(parents=True)
        (folder / "model.engine").write_bytes(precision.encode())
        mf.write(mf.derive(parent, onnx_path, "engine", {"summary": precision}), str(folder / "model.engine"))
    base = tmp_path / "engines" / "rtx" / "m"
    assert find_reference(str(base / "int8-frame-640x480" / "model.engine")) == str(base / "fp16-frame-640x480" /
                                                                                    "model.engine")
    assert find_reference(str(base / "int8" / "model.engine")) == str(base / "fp32" / "model.engine")


def _watch(deployed_path, level, frames, **settings):
    alarms = []
    with Classifier.load(deployed_path, threads=1) as clf:
        ref = Classifier.load(find_reference(deployed_path), threads=1)
        monitor = ShadowMonitor(ref, level, ShadowSettings(**settings), on_alarm=alarms.append)
        monitor.owns_reference = True
        first_alarm = None
        with monitor:
            for i, frame in enumerate(frames):
                monitor.observe(frame, clf.logits(clf.preprocess(frame)[None])[0])
                if monitor.alarm and first_alarm is None:
                    first_alarm = monitor.comparisons
            return monitor.stats(), first_alarm, alarms


def test_planted_bad_int8_model_raises_the_alarm_within_bounded_frames(runs, verify_report, frames):
    level, _ = expected_agreement(runs["good"], verify_report)
    stats, first, alarms = _watch(runs["bad"], level, frames, every=1, background=False)
    print("\nbad INT8: expected %.4f, first alarm at comparison %s, agreement %.4f over %d" % (
        level, first, stats["top1_agreement"], stats["comparisons"]))
    assert first is not None and first <= 40, (first, stats)         # 30 comparisons minimum, then at once
    assert len(alarms) == 1 and alarms[0]["alarm"] and stats["top1_agreement"] < 0.7
    assert stats["agreement_upper_bound"] < stats["limit"] == pytest.approx(level - 0.02)


def test_good_int8_model_stays_quiet(runs, verify_report, frames):
    level, _ = expected_agreement(runs["good"], verify_report)
    stats, first, alarms = _watch(runs["good"], level, frames, every=1, background=False)
    print("\ngood INT8: expected %.4f, agreement %.4f over %d, KL %.4f, top-5 overlap %.3f" % (
        level, stats["top1_agreement"], stats["comparisons"], stats["mean_kl"], stats["top5_overlap"]))
    assert first is None and alarms == [] and stats["comparisons"] == len(frames)
    assert stats["top1_agreement"] > 0.85 and stats["mean_kl"] < 0.1 and stats["top5_overlap"] > 0.8


def test_json_lines_budget_and_background_thread(runs, verify_report, frames, tmp_path):
    """Background reference within a 5 % budget: records arrive as JSON lines, the duty cycle stays
    within the budget, and close() ends the thread."""
    log = str(tmp_path / "shadow.jsonl")
    with Classifier.load(runs["good"], threads=1) as clf:
        monitor = attach(clf, expect=verify_report, settings=ShadowSettings(budget=0.05), log=log)
        assert monitor.reference_path.endswith("model.onnx") and monitor.settings.background
        for frame in frames * 2:
            monitor.observe(frame, clf.logits(clf.preprocess(frame)[None])[0])
        monitor.wait_idle()
        stats = monitor.stats()
        monitor.close()
    assert not [t for t in threading.enumerate() if t.name == "shadow-reference"]
    assert 1 <= monitor.comparisons < len(frames) and stats["duty_cycle"] <= 0.05 * 1.5
    with open(log) as f:
        records = [json.loads(line) for line in f]
    assert len(records) == monitor.comparisons
    assert {"frame", "agree", "kl", "top5_overlap", "reference_ms", "window", "expected_agreement", "alarm"} <= set(records[0])
    assert records[-1]["window"]["comparisons"] == monitor.comparisons
    assert [r["frame"] for r in records] == sorted(r["frame"] for r in records)


def test_monitor_refuses_bad_settings_and_a_reference_with_other_labels(runs, tmp_path, verify_report):
    for bad in ({"budget": 0.0}, {"budget": 2.0}, {"every": -1}, {"confidence": 1.0}, {"window": 0}):
        with pytest.raises(UserError):
            ShadowSettings(**bad)
    other = str(tmp_path / "model.onnx")
    for suffix in ("", ".json"):
        shutil.copy(os.path.join(os.path.dirname(runs["good"]), "model.onnx" + suffix), other + suffix)
    m = mf.read(other)
    m.model.label_names = list(reversed(m.model.label_names))
    mf.write(m, other)
    with Classifier.load(runs["good"], threads=1) as clf, pytest.raises(UserError, match="other labels"):
        attach(clf, reference=other, expect="0.9")


def test_example_with_shadow_monitor_prints_its_figures(runs, verify_report, frames, tmp_path):
    import cv2
    import subprocess
    import sys

    from test_runtime_example import EXAMPLE, NO_TORCH

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames[:40]):
        cv2.imwrite(str(folder / ("%03d.png" % i)), frame)
    log = str(tmp_path / "shadow.jsonl")
    res = subprocess.run([sys.executable, "-c", NO_TORCH, EXAMPLE, runs["bad"], "--source", str(folder), "--headless",
                          "--json", "--threads", "1", "--shadow", "--shadow-every", "1", "--shadow-inline", "--shadow-expect",
                          verify_report, "--shadow-log", log], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, DISPLAY=""))
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 40 and lines[-1]["shadow"]["comparisons"] >= 30
    assert set(lines[0]["profile_ms"]) == {"capture", "preprocess", "inference", "post"}
    assert "shadow monitor: deployed model agrees with its reference" in res.stderr      # the alarm, once
    assert res.stderr.count("shadow monitor:") == 1 and os.path.getsize(log) > 0
