"""Targets are data: the shipped target files, aliases, precision/DLA/opset checks, `targets` CLI."""
import os
import subprocess
import sys

import pytest

from inception_deploy.engines import targets
from inception_deploy.engines.targets import BatchProfile, resolve_target
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import UserError

REQUIRED = {"jetson-orin": ("8.7",), "jetson-orin-nano": ("8.7",), "jetson-orin-nx-8gb": ("8.7",), "jetson-xavier": ("7.2",),
            "datacenter-hopper": ("9.0",), "datacenter-ampere": ("8.0", "8.6"), "datacenter-ada": ("8.9",),
            "rtx": ("8.6", "8.9", "12.0")}


def test_required_targets_exist_with_their_compute_capabilities():
    table = targets.load_targets()
    for name, ccs in REQUIRED.items():
        assert table[name].compute_capabilities == ccs, name
    assert table["jetson-orin"].dla.cores == 2 and table["jetson-xavier"].dla.cores == 2
    assert not table["jetson-orin-nano"].has_dla and not table["datacenter-hopper"].has_dla
    assert table["rtx"].flavour == "tensorrt_rtx"
    assert all(t.flavour == "tensorrt" for n, t in table.items() if n != "rtx")


def test_every_target_states_what_a_deployment_needs():
    for t in targets.load_targets().values():
        assert t.default_precision in t.precisions and t.batch.min <= t.batch.opt <= t.batch.max
        assert t.workspace_mib > 0 and 0 <= t.optimization_level <= 5 and t.max_opset >= 17
        if t.is_jetson:
            assert "JetPack" in t.jetpack and t.batch.max <= 4, t.name   # Jetson defaults stay small
        if t.has_dla:
            assert t.dla.gpu_fallback and t.dla.core == -1


def _without_tomllib(monkeypatch):
    """Python < 3.11 as far as the target reader can tell: no tomllib (tomli is what it reads with there)."""
    monkeypatch.setitem(sys.modules, "tomllib", None)


def test_tomli_reads_every_target_file_as_tomllib_does(monkeypatch):
    """Python 3.8/3.10 (JetPack 5/6) have no tomllib; the backport tomli must give the same targets."""
    first = targets.load_targets()
    _without_tomllib(monkeypatch)
    import tomli  # noqa: F401  (a dependency for Python < 3.11; installed here by the dev extra)
    assert targets.load_targets() == first and len(first) >= 9


def test_non_ascii_text_survives_the_reader(tmp_path, monkeypatch):
    """The old hand-written reader decoded strings with unicode_escape and mangled UTF-8 text."""
    good = open(os.path.join(targets.TARGETS_DIR, "rtx.toml"), encoding="utf-8").read()
    text = good.replace('description = "', 'description = "Grafikkarte für Überwachung, 東京 \\u00e9 – ', 1)
    (tmp_path / "rtx.toml").write_text(text, encoding="utf-8")
    _without_tomllib(monkeypatch)
    t = targets.load_targets(str(tmp_path))["rtx"]
    assert t.description.startswith("Grafikkarte für Überwachung, 東京 é – ")


def test_without_tomllib_and_tomli_the_error_says_what_to_install(tmp_path, monkeypatch):
    _without_tomllib(monkeypatch)
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(UserError) as e:
        targets.load_targets()
    assert "pip install tomli" in str(e.value) and "JSON" in str(e.value)


def test_a_bundle_carries_its_target_as_json_that_needs_no_toml_reader(tmp_path, monkeypatch):
    orin = resolve_target("jetson-orin")
    path = targets.write_target_json(orin, str(tmp_path))
    _without_tomllib(monkeypatch)
    monkeypatch.setitem(sys.modules, "tomli", None)
    assert targets.load_targets(str(tmp_path)) == {"jetson-orin": orin}
    assert resolve_target("orin", str(tmp_path)) == orin and path.endswith("jetson-orin.json")


def test_the_orin_nx_8gb_has_one_dla_core_and_dla_int8_comes_from_the_calibration_cache():
    nx8, orin = resolve_target("orin-nx-8gb"), resolve_target("jetson-orin-nx-16gb")
    assert nx8.dla.cores == 1 and orin.name == "jetson-orin" and orin.dla.cores == 2
    nx8.check_precision("int8", dla_core=0)
    with pytest.raises(UserError, match="DLA cores 0..0, not 1"):
        nx8.check_precision("int8", dla_core=1)
    for t in targets.load_targets().values():
        if t.has_dla:   # TensorRT 8.5/10.3 take DLA INT8 scales from a calibration cache, not from Q/DQ nodes
            assert t.dla.int8_mode == "implicit" and t.onnx_for("int8", dla_core=0) == "model.onnx", t.name
            assert t.int8_mode_for(0) == "implicit"
    assert orin.onnx_for("int8") == "model.int8.onnx"          # on the GPU: the Q/DQ ONNX


@pytest.mark.parametrize("alias,name", [("jetson", "jetson-orin"), ("JETSON", "jetson-orin"),
                                        ("orin-nano", "jetson-orin-nano"), ("xavier", "jetson-xavier"),
                                        ("h100", "datacenter-hopper"), ("rtx", "rtx")])
def test_alias_resolution(alias, name):
    assert resolve_target(alias).name == name


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(UserError) as e:
        resolve_target("jetson-tx9")
    assert "jetson-orin" in str(e.value) and "datacenter-hopper" in str(e.value) and "jetson" in str(e.value)


def test_precision_and_dla_checks():
    orin, nano = resolve_target("jetson-orin"), resolve_target("jetson-orin-nano")
    orin.check_precision("fp32")
    orin.check_precision("int8", dla_core=1)
    with pytest.raises(UserError, match="no DLA"):
        nano.check_precision("fp16", dla_core=0)
    with pytest.raises(UserError, match="DLA cores 0..1"):
        orin.check_precision("fp16", dla_core=2)
    with pytest.raises(UserError, match="not one of"):
        orin.check_precision("bf16")
    assert orin.batch_for(0) == BatchProfile(1, 1, 1) and orin.batch_for(-1) == orin.batch


def test_opset_ceiling_and_where_int8_comes_from():
    jp5, orin = resolve_target("jetson-orin-jp5"), resolve_target("jetson-orin")
    assert jp5.onnx_for("int8") == "model.onnx" and orin.onnx_for("int8") == "model.int8.onnx"
    assert orin.onnx_for("fp16") == "model.fp16.onnx"
    orin.check_opset(19, "model.int8.onnx")
    with pytest.raises(UserError) as e:
        resolve_target("jetson-orin-jp5").check_opset(19, "model.int8.onnx")
    assert "opset 19" in str(e.value) and "JetPack 5.1" in str(e.value) and "implicit" in str(e.value)


def test_a_bad_target_file_is_refused_with_its_path(tmp_path):
    good = open(os.path.join(targets.TARGETS_DIR, "rtx.toml"), encoding="utf-8").read()
    (tmp_path / "rtx.toml").write_text(good.replace('int8_mode = "qdq"', 'int8_mode = "magic"'))
    with pytest.raises(UserError, match="rtx.toml: int8_mode"):
        targets.load_targets(str(tmp_path))
    (tmp_path / "rtx.toml").write_text(good.replace('name = "rtx"', 'name = "other"'))
    with pytest.raises(UserError, match="must match the file name"):
        targets.load_targets(str(tmp_path))


def test_batch_profile_parsing():
    assert BatchProfile.parse("1,4,16") == BatchProfile(1, 4, 16) and BatchProfile.parse("8") == BatchProfile(8, 8, 8)
    with pytest.raises(UserError):
        BatchProfile.parse("4,2,8")
    with pytest.raises(UserError):
        BatchProfile.parse("x")


def test_targets_command_lists_every_target_and_alias():
    res = subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", "targets"], capture_output=True, text=True,
                         cwd=paths.REPO_ROOT)
    assert res.returncode == 0, res.stderr
    for name in REQUIRED:
        assert name in res.stdout
    assert "jetson,orin" in res.stdout and "JetPack 6.1" in res.stdout
    assert "installed: TensorRT-RTX" in res.stdout
