"""Export stage: every model source, parity on real images, manifests, atomic failure."""
import json
import os

import numpy as np
import onnx
import pytest
import torch

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.cli import main as cli
from inception_deploy.pipeline.datasets import open_image_folder, select
from inception_deploy.pipeline.errors import CheckFailed, UserError
from inception_deploy.pipeline.export import ParityTolerance, run_export
from inception_deploy.pipeline.onnx_io import ort_session
from inception_deploy.pipeline.models.batchnorm import reestimate_batchnorm
from inception_deploy.pipeline.models.sources import resolve_model


def test_test_model_export_manifest_and_metadata(test_model_onnx, test_model):
    m = mf.read(test_model_onnx, expect_kind="onnx")
    assert m.model.architecture == "tiny_inception" and m.model.num_classes == 200
    assert m.model.label_names[0] == "n01443537" and m.model.label_descriptions["n01443537"].startswith("goldfish")
    assert m.model.weights_sha256 == test_model.weights_sha256
    assert m.stage["opset"] == 17 and m.stage["exporter"] == "torchscript"
    assert m.stage["parity"]["passed"] and m.stage["parity"]["top1_agreement"] == 1.0
    assert m.stage["parity"]["max_abs_error"] < 1e-3
    assert set(m.stage["versions"]) == {"torch", "timm", "onnx", "onnxruntime"}
    proto = onnx.load(test_model_onnx)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["inception_deploy.preprocessing"]) == m.preprocessing
    assert json.loads(meta["inception_deploy.labels"])["label_names"] == m.model.label_names
    assert not [n for n in proto.graph.node if n.op_type == "Identity"]


def test_onnx_runtime_matches_pytorch_accuracy_on_val_subset(test_model_onnx, test_model, val_dir):
    """The full 5,000-image comparison is in the closing note; here 1,000 class-balanced images."""
    ds = open_image_folder(val_dir, test_model.label_names, require_labels=True)
    ds = ds.subset(select(ds.samples, 1000, seed=0))
    sess = ort_session(test_model_onnx)
    torch_top1 = ort_top1 = agree = n = 0
    for batch in ds.batches(test_model.preprocessing, 250):
        with torch.no_grad():
            ref = test_model.module(torch.from_numpy(batch.images)).numpy()
        got = sess.run(["logits"], {"input": batch.images})[0]
        torch_top1 += int((ref.argmax(1) == batch.labels).sum())
        ort_top1 += int((got.argmax(1) == batch.labels).sum())
        agree += int((ref.argmax(1) == got.argmax(1)).sum())
        n += len(batch.labels)
    assert n == 1000 and agree == n and torch_top1 == ort_top1
    assert torch_top1 / n > 0.15, "the test model is trained: well above chance (0.5 %)"


def test_dynamic_batch(test_model_onnx):
    sess = ort_session(test_model_onnx)
    for b in (1, 3, 8):
        assert sess.run(["logits"], {"input": np.zeros((b, 3, 56, 56), np.float32)})[0].shape == (b, 200)


@pytest.mark.parametrize("arch", ["inception_v4", "inception_resnet_v2", "inception_v3", "inception_resnet_v1"])
def test_full_size_architectures_export_with_meaningful_parity(arch, tmp_path, val_dir):
    """Random init is degenerate: re-estimate BatchNorm on 8 real images so outputs depend on input."""
    loaded = resolve_model(arch, num_classes=200)
    ds = open_image_folder(val_dir)
    sub = ds.subset(select(ds.samples, 8, seed=1))
    reestimate_batchnorm(loaded.module, (b.images for b in sub.batches(loaded.preprocessing, 8)))
    m = run_export(loaded, str(tmp_path), val_dir, parity_count=4)
    p = m.stage["parity"]
    assert p["passed"] and p["images"] == 4
    sess = ort_session(str(tmp_path / "model.onnx"))
    batch = next(sub.batches(loaded.preprocessing, 4)).images
    out = sess.run(["logits"], {"input": batch})[0]
    assert out.shape == (4, 200) and out.std(axis=0).mean() > 1e-3, "outputs must differ between images"


def test_aux_head_is_accepted_reported_and_not_exported(tmp_path, val_dir):
    from inception_deploy.pipeline.models.timm_compat import import_timm
    from safetensors.torch import save_file

    timm = import_timm()
    torch.manual_seed(3)
    with_aux = timm.create_model("inception_v3", num_classes=10, aux_logits=True)
    state = with_aux.state_dict()
    assert any(k.startswith("AuxLogits.") for k in state)
    ckpt = tmp_path / "v3_aux.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
    loaded = resolve_model(str(ckpt), arch="inception_v3", num_classes=10)
    assert any("AuxLogits" in n and "not part of the exported graph" in n for n in loaded.notes)
    m = run_export(loaded, str(tmp_path / "out"), val_dir, parity_count=2)
    proto = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert len(proto.graph.output) == 1
    assert not [i.name for i in proto.graph.initializer if "AuxLogits" in i.name]
    assert any("AuxLogits" in n for n in m.stage["notes"])
    # the exported graph is the main head of the aux-trained model
    with_aux.eval()
    x = torch.rand(2, 3, 299, 299)
    with torch.no_grad():
        ref = with_aux(x)
    ref = ref[0] if isinstance(ref, tuple) else ref
    got = ort_session(str(tmp_path / "out" / "model.onnx")).run(["logits"], {"input": x.numpy()})[0]
    ref = ref.numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))


def test_checkpoint_sources_and_mismatch_message(tmp_path, test_model):
    sd = test_model.module.state_dict()
    pth = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd}, str(pth))
    again = resolve_model(str(pth), arch="tiny_inception", num_classes=200)
    assert again.weights_sha256 == test_model.weights_sha256
    with pytest.raises(UserError, match=r"missing keys: .*last_linear.*unexpected keys: .*extra_head"):
        bad = dict(sd)
        bad.pop("last_linear.weight")
        bad["extra_head.weight"] = torch.zeros(1)
        torch.save(bad, str(pth))
        resolve_model(str(pth), arch="tiny_inception", num_classes=200)
    with pytest.raises(UserError, match="shape mismatches"):
        torch.save(sd, str(pth))
        resolve_model(str(pth), arch="tiny_inception", num_classes=100)
    with pytest.raises(UserError, match="needs --arch"):
        resolve_model(str(pth))


def test_local_dir_fp32_and_fp16_weights_give_the_same_model(tmp_path, test_model):
    from inception_deploy.pipeline.models.model_folder import save_model_folder

    save_model_folder(test_model.module, str(tmp_path / "fp32"), "tiny_inception", test_model.pretrained_cfg,
                      test_model.label_names, test_model.label_descriptions, dtype=torch.float32)
    loaded = resolve_model(f"local-dir:{tmp_path / 'fp32'}")
    assert loaded.weights_sha256 == test_model.weights_sha256      # committed fp16 upcast == fp32 copy
    assert loaded.preprocessing == test_model.preprocessing and loaded.label_names == test_model.label_names


def test_pretrained_offline_names_the_alternatives(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = cli(["export", "--model", "inception_v4", "--pretrained", "--out", "/nonexistent/never"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --pretrained could not download") and "local-dir:PATH" in err
    assert "Traceback" not in err and not os.path.exists("/nonexistent/never")


def test_unknown_architecture_is_one_line(capsys):
    rc = cli(["info", "--model", "inception_v9"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown architecture 'inception_v9'" in err


def test_failed_parity_leaves_nothing_at_the_output_path(tmp_path, test_model, val_dir):
    out = tmp_path / "out"
    with pytest.raises(CheckFailed, match="parity check failed"):
        run_export(test_model, str(out), val_dir, parity_count=4,
                   tolerance=ParityTolerance(atol=0.0, rtol=0.0, min_top1_agreement=1.01))
    assert not out.exists()                       # not even the folder its run lock created


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_an_opset_the_exporter_cannot_write_is_one_line_before_any_export(tmp_path, capsys, exporter):
    out = tmp_path / "out"
    rc = cli(["export", "--model", "local-dir:" + paths.TEST_MODEL, "--opset", "99",
              "--exporter", exporter, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: --opset 99 is not one the " + exporter), err
    assert not out.exists()


def test_changed_artifact_is_refused_by_its_manifest(tmp_path, test_model_onnx):
    import shutil

    copy = tmp_path / "model.onnx"
    shutil.copy(test_model_onnx, copy)
    shutil.copy(test_model_onnx + ".json", str(copy) + ".json")
    assert mf.read(str(copy)).kind == "onnx"
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="does not match its manifest"):
        mf.read(str(copy))


def test_info_cli_prints_the_stage_table(capsys):
    assert cli(["info", "--model", "inception_resnet_v1"]) == 0
    out = capsys.readouterr().out
    assert "ReductionA" in out and "896x17x17" in out and "1792x8x8" in out and "GMACs" in out
