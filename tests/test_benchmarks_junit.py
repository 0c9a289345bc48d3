"""The gate's JUnit XML against the real schemas CI servers read, baseline rows a host cannot run
(no GPU) reported as skipped with the reason, never as failures, and the device clocks a report records."""
import os
import re
import xml.etree.ElementTree as ET

import pytest
import xmlschema

from inception_deploy.benchmarks import gate
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.datasets import FINGERPRINT_METHOD

JENKINS_XSD = os.path.join(paths.REPO_ROOT, ".venv", "test-refs", "junit-10.xsd")
ANT_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$")


def _row(rid, top1, drift=None, latency=None):
    return {"id": rid, "accuracy": {"top1": top1, "top5": top1 + 20, "images": 100}, "drift": drift,
            "latency": latency or [], "reference": drift is None}


def _report_and_baseline():
    ident = {"model": {"weights_sha256": "a" * 64, "name": "m"},
             "images": {"fingerprint": "f" * 64, "count": 100, "fingerprint_method": FINGERPRINT_METHOD},
             "preprocessing": {"sha256": "p" * 64}}
    drift = {"top1_drop": 0.2, "top5_drop": 0.1, "mcnemar_p": 0.5}
    report = {"identity": ident, "calibration_overlap": {"images": 0},
              "rows": [_row("fp32/onnxruntime", 40.0), _row("int8/onnxruntime", 39.8, drift)],
              "skipped": [{"id": "int8/tensorrt:jetson-orin", "artifact": "model.engine",
                           "reason": "cannot run TensorRT engine model.engine: no usable NVIDIA driver/GPU here"}]}
    baseline = {"identity": ident, "limits": dict(gate.DEFAULT_LIMITS),
                "rows": {"fp32/onnxruntime": {"top1": 40.0, "top5": 60.0},
                         "int8/onnxruntime": {"top1": 39.9, "top5": 59.9},
                         "int8/tensorrt:jetson-orin": {"top1": 39.7, "top5": 59.7},
                         "fp16/onnxruntime": {"top1": 40.0, "top5": 60.0}}}
    return report, baseline


def _ant_checks(xml: str) -> None:
    """What the Ant JUnit.xsd (windyroad) requires beyond Jenkins' schema, checked element by element:
    ``testsuites`` without attributes; each ``testsuite`` with name, timestamp (no zone), hostname,
    tests, failures, errors, time, package and id, then ``properties``, the test cases, ``system-out``
    and ``system-err`` in that order; each ``testcase`` with name, classname and time and at most one
    of skipped / error / failure, where error and failure carry a ``type``."""
    root = ET.fromstring(xml)
    assert root.tag == "testsuites" and not root.attrib
    for suite in root:
        for attr in ("name", "timestamp", "hostname", "tests", "failures", "errors", "time", "package", "id"):
            assert suite.get(attr), attr
        assert ANT_TIMESTAMP.match(suite.get("timestamp")) and int(suite.get("id")) == 0
        float(suite.get("time"))
        tags = [child.tag for child in suite]
        assert tags[0] == "properties" and tags[-2:] == ["system-out", "system-err"]
        assert set(tags[1:-2]) <= {"testcase"}
        for prop in suite.find("properties"):
            assert prop.tag == "property" and prop.get("name") and prop.get("value") is not None
        for case in suite.findall("testcase"):
            assert case.get("name") and case.get("classname") and float(case.get("time")) >= 0
            outcome = [c for c in case if c.tag in ("skipped", "error", "failure")]
            assert len(outcome) <= 1 and len(list(case)) == len(outcome)
            if outcome and outcome[0].tag != "skipped":
                assert outcome[0].get("type")


@pytest.fixture(scope="module")
def jenkins():
    assert os.path.isfile(JENKINS_XSD), "run make setup (tools/fetch_test_refs.py fetches Jenkins' junit-10.xsd)"
    return xmlschema.XMLSchema(JENKINS_XSD)


def test_a_row_the_host_cannot_run_is_skipped_with_its_reason_and_a_silent_gap_fails():
    report, baseline = _report_and_baseline()
    res = gate.evaluate(report, baseline)
    by_row = {c.row: c for c in res.checks if c.name == "present in report"}
    assert by_row["int8/tensorrt:jetson-orin"].skipped.endswith("no usable NVIDIA driver/GPU here")
    assert by_row["int8/tensorrt:jetson-orin"].passed
    assert not by_row["fp16/onnxruntime"].passed and by_row["fp16/onnxruntime"].skipped is None
    assert [c.row for c in res.failures] == ["fp16/onnxruntime"]
    del baseline["rows"]["fp16/onnxruntime"]
    res = gate.evaluate(report, baseline)
    assert res.passed and len(res.skips) == 1
    text = gate.screen(res)
    assert "PASSED" in text and "1 skipped (cannot run on this host)" in text and "no usable NVIDIA driver" in text


@pytest.mark.parametrize("case", ["passed", "failed", "error"])
def test_junit_is_valid_for_jenkins_xunit_and_ant(jenkins, case):
    report, baseline = _report_and_baseline()
    if case == "error":
        xml = gate.junit_xml(None, "report and baseline measure different things: image set differs")
    else:
        if case == "passed":
            del baseline["rows"]["fp16/onnxruntime"]
        xml = gate.junit_xml(gate.evaluate(report, baseline))
    jenkins.validate(xml)                               # raises with the offending element when invalid
    _ant_checks(xml)
    suite = ET.fromstring(xml).find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases)
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
    assert int(suite.get("errors")) == sum(c.find("error") is not None for c in cases)
    assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
    if case != "error":
        skipped = [c for c in cases if c.find("skipped") is not None]
        assert len(skipped) == 1 and "no usable NVIDIA driver" in skipped[0].find("skipped").get("message")
        assert suite.find("system-out").text.startswith("gate: ")
    if case == "failed":
        failure = next(c.find("failure") for c in cases if c.find("failure") is not None)
        assert failure.get("type") == "GateRegression" and "fp16/onnxruntime" in failure.get("message")
    if case == "error":
        assert suite.get("errors") == "1" and cases[0].find("error").get("type") == "UserError"


def test_the_old_junit_shape_is_what_the_schemas_rejected(jenkins):
    """The schema check has teeth: the previous output (no timestamp/hostname/time, no type on failures,
    no properties/system-out/system-err) fails the Ant requirements."""
    old = ('<testsuites><testsuite name="inception-deploy gate" tests="1" failures="1" errors="0">'
           '<testcase classname="gate.x" name="y"><failure message="m">t</failure></testcase>'
           '</testsuite></testsuites>')
    jenkins.validate(old)           # Jenkins' schema accepts it ...
    with pytest.raises(AssertionError):
        _ant_checks(old)            # ... the Ant schema does not


def test_jetson_clocks_are_read_from_devfreq(tmp_path):
    """verify_on_device's environment record carries the Jetson's clocks where sysfs exposes them."""
    from inception_deploy.benchmarks.environment import devfreq_clocks

    gpu = tmp_path / "sys" / "class" / "devfreq" / "17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("918000000\n")
    (gpu / "max_freq").write_text("1300500000\n")
    (gpu / "min_freq").write_text("garbage\n")
    assert devfreq_clocks(str(tmp_path)) == {"17000000.ga10b": {"cur_freq_hz": 918000000, "max_freq_hz": 1300500000}}
    assert devfreq_clocks(str(tmp_path / "none")) == {}
