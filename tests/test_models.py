"""Architectures against the paper's and the seed tables' shapes and parameter counts."""
import pytest
import torch

from inception_deploy.pipeline.models.info import model_info
from inception_deploy.pipeline.models.timm_compat import import_timm

timm = import_timm()


def _info(arch, **kw):
    model = timm.create_model(arch, **kw)
    size = model.pretrained_cfg["input_size"]
    return model_info(model, tuple(size))


def test_inception_v4_stage_shapes_and_parameters():
    info = _info("inception_v4")
    assert info.stage("Mixed5a").output_shape == (384, 35, 35)           # stem
    assert info.stage("InceptionA x4").output_shape == (384, 35, 35)
    assert info.stage("ReductionA").output_shape == (1024, 17, 17)
    assert info.stage("InceptionB x7").output_shape == (1024, 17, 17)
    assert info.stage("ReductionB").output_shape == (1536, 8, 8)
    assert info.stage("InceptionC x3").output_shape == (1536, 8, 8)
    assert info.stage("SelectAdaptivePool2d").output_shape == (1536,)
    assert round(info.params / 1e6, 1) == 42.7
    assert 12.0e9 < info.macs < 12.5e9      # 12.25 GMACs at 299x299


def test_inception_resnet_v2_stage_shapes_and_parameters():
    info = _info("inception_resnet_v2")
    assert info.stage("Mixed_5b").output_shape == (320, 35, 35)
    assert info.stage("Mixed_6a").output_shape == (1088, 17, 17)
    assert info.stage("Mixed_7a").output_shape == (2080, 8, 8)
    assert info.stage("SelectAdaptivePool2d").output_shape == (1536,)
    assert round(info.params / 1e6, 1) == 55.8


def test_inception_resnet_v1_follows_the_paper():
    info = _info("inception_resnet_v1")
    assert info.stage("Stem").output_shape == (256, 35, 35)
    assert info.stage("BlockA x5").output_shape == (256, 35, 35)
    assert info.stage("ReductionA").output_shape == (896, 17, 17)
    assert info.stage("BlockB x10").output_shape == (896, 17, 17)
    assert info.stage("ReductionB").output_shape == (1792, 8, 8)
    assert info.stage("BlockC x5").output_shape == (1792, 8, 8)
    assert info.stage("SelectAdaptivePool2d").output_shape == (1792,)


def test_inception_resnet_v1_residual_scale_is_configurable_and_applied():
    model = timm.create_model("inception_resnet_v1", scale_a=0.3, scale_b=0.2, scale_c=0.1)
    assert {b.scale for b in model.repeat_a} == {0.3} and {b.scale for b in model.repeat_c} == {0.1}
    block = model.repeat_c[0].eval()
    x = torch.rand(1, 1792, 8, 8)
    with torch.no_grad():
        mixed = torch.cat([block.branch0(x), block.branch1(x)], 1)
        assert torch.allclose(block(x), torch.relu(x + 0.1 * block.up(mixed)))
    with pytest.raises(ValueError, match="0.1-0.3"):
        timm.create_model("inception_resnet_v1", scale_a=1.5)


def test_inception_v3_default_has_no_aux_head_and_registry_lists_ours():
    assert timm.create_model("inception_v3").AuxLogits is None
    assert {"inception_resnet_v1", "tiny_inception"} <= set(timm.list_models("*incep*"))


def test_tiny_inception_is_inception_shaped_and_small():
    info = _info("tiny_inception")
    kinds = [r.name for r in info.stages]
    assert kinds[:7] == ["ConvBnRelu x2", "MaxPool2d", "InceptionA x2", "ReductionA", "InceptionB x2",
                         "ReductionB", "InceptionC"]
    assert info.stage("InceptionC").output_shape == (384, 4, 4)
    assert info.params < 1.2e6 and info.macs < 60e6


def test_project_architectures_speak_timms_classifier_api():
    for arch, feats, size in (("tiny_inception", 384, 56), ("inception_resnet_v1", 1792, 75)):
        model = timm.create_model(arch, num_classes=7).eval()
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            assert model(x).shape == (2, 7)
            assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, feats)
            model.reset_classifier(3)
            assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3


def _hand_counted_macs(model, input_shape):
    """The table's previous figures: each Conv2d's and Linear's multiply-accumulates counted by
    hand from its output shape, summed per stage (what torch.utils.flop_counter now does)."""
    from torch import nn

    from inception_deploy.pipeline.models.info import _top_blocks

    totals = {}
    hooks = []
    for path, block in _top_blocks(model):
        def count(m, i, o, path=path):
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                n = o.numel() // o.shape[0] * (m.in_channels // m.groups) * kh * kw
            elif isinstance(m, nn.Linear):
                n = o.numel() // o.shape[0] * m.in_features
            else:
                return
            totals[path] = totals.get(path, 0) + n
        hooks += [layer.register_forward_hook(count) for layer in block.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros((1,) + tuple(input_shape)))
    for h in hooks:
        h.remove()
    return totals


@pytest.mark.parametrize("arch,size", [("tiny_inception", (3, 56, 56)), ("inception_v4", (3, 107, 107))])
def test_flop_counter_macs_equal_the_hand_counted_table(arch, size):
    """Every block's MACs from torch.utils.flop_counter equal the hand count, and so the total
    (inception_v4 at 107x107 to keep it fast: the count is per layer, the size does not matter)."""
    from inception_deploy.pipeline.models.info import _block_macs, _top_blocks

    model = timm.create_model(arch, num_classes=200)
    blocks = _top_blocks(model)
    with torch.no_grad():
        counted = _block_macs(model.eval(), blocks, size, {})
    hand = _hand_counted_macs(model, size)
    assert counted == {idx: hand.get(path, 0) for idx, (path, _) in enumerate(blocks)}
    assert model_info(model, size).macs == sum(hand.values()) > 0
