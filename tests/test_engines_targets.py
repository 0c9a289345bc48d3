"""Targets are data: the shipped target files, aliases, precision/DLA/opset checks, `targets` CLI."""
import os
import subprocess
import sys

import pytest

from engines import targets, toml_lite
from engines.targets import BatchProfile, resolve_target
from pipeline import paths
from pipeline.errors import UserError

REQUIRED = {"jetson-orin": ("8.7",), "jetson-orin-nano": ("8.7",), "jetson-xavier": ("7.2",),
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


def test_subset_reader_equals_tomllib_on_every_target_file():
    """Python 3.8 (JetPack 5) has no tomllib; the fallback reader must read the files identically."""
    import tomllib

    folder = targets.TARGETS_DIR
    files = sorted(f for f in os.listdir(folder) if f.endswith(".toml"))
    assert len(files) >= 7
    for name in files:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            text = f.read()
        assert toml_lite.loads_subset(text) == tomllib.loads(text), name


def test_subset_reader_rejects_what_it_does_not_understand():
    with pytest.raises(toml_lite.TomlError, match="line 2"):
        toml_lite.loads_subset('a = 1\nb = {x = 1}\n')
    with pytest.raises(toml_lite.TomlError, match="defined twice"):
        toml_lite.loads_subset('a = 1\na = 2\n')
    assert toml_lite.loads_subset('x = "a # b"  # c\n[t]\ny = [1, 2.5, "z", true]\n') == {
        "x": "a # b", "t": {"y": [1, 2.5, "z", True]}}


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
    res = subprocess.run([sys.executable, "-m", "pipeline", "targets"], capture_output=True, text=True,
                         cwd=paths.REPO_ROOT)
    assert res.returncode == 0, res.stderr
    for name in REQUIRED:
        assert name in res.stdout
    assert "jetson,orin" in res.stdout and "JetPack 6.1" in res.stdout
    assert "installed: TensorRT-RTX" in res.stdout
