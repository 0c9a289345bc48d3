"""Streaming histograms and the range methods, against exact numpy answers on known data."""
import numpy as np
import pytest

from inception_deploy.calibration import methods
from inception_deploy.calibration.stats import BINS, TensorHistogram
from inception_deploy.pipeline.errors import UserError


def _stream(batches):
    h = TensorHistogram.empty()
    for b in batches:
        h.add(b.astype(np.float32))
    return h


@pytest.fixture(scope="module")
def relu_like():
    """Post-ReLU-like activations with a few large outliers, in batches whose range grows."""
    rng = np.random.default_rng(0)
    batches = [np.maximum(rng.normal(0, 1 + i * 0.3, size=(8, 16, 14, 14)), 0) for i in range(6)]
    batches[3].flat[:3] = [40.0, 55.0, 70.0]
    return batches


def test_streaming_histogram_is_exact_whatever_the_batch_order(relu_like):
    forward, backward = _stream(relu_like), _stream(relu_like[::-1])
    assert forward.range_max == backward.range_max == 128.0          # power of two >= 70
    assert np.array_equal(forward.counts, backward.counts)            # pair-merging loses nothing
    values = np.abs(np.concatenate([b.ravel() for b in relu_like]))
    exact, _ = np.histogram(values, bins=BINS, range=(0, forward.range_max))
    assert np.abs(forward.counts - exact).sum() <= 2                  # float32 edge rounding only
    assert forward.amax == pytest.approx(70.0) and forward.elements == values.size and forward.min == 0.0


def test_max_is_the_exact_largest_value(relu_like):
    assert methods.Method.parse("max").amax(_stream(relu_like)) == pytest.approx(70.0)


@pytest.mark.parametrize("p", [99.9, 99.99, 99.999])
def test_percentile_matches_numpy_within_a_bin(relu_like, p):
    h = _stream(relu_like)
    values = np.abs(np.concatenate([b.ravel() for b in relu_like]))
    got = methods.Method.parse("percentile-%s" % p).amax(h)
    # the order statistic at p (no interpolation between samples), located to within its bin
    assert abs(got - np.percentile(values, p, method="inverted_cdf")) <= h.bin_width


def test_entropy_clips_rare_outliers_but_not_the_bulk(relu_like):
    h = _stream(relu_like)
    values = np.abs(np.concatenate([b.ravel() for b in relu_like]))
    amax = methods.Method.parse("entropy").amax(h)
    assert np.percentile(values, 99.0) < amax < 30.0      # the three outliers (40, 55, 70) are clipped


def test_mse_clips_a_long_tail():
    rng = np.random.default_rng(4)
    h = _stream([rng.laplace(0, 1, 400000)])              # max ~13: the tail costs more rounding than clipping
    assert 4.0 < methods.Method.parse("mse").amax(h) < 0.8 * h.amax


def test_mse_keeps_the_range_of_uniform_data():
    rng = np.random.default_rng(1)
    h = _stream([rng.uniform(-3, 3, size=50000)])
    assert methods.Method.parse("mse").amax(h) > 0.97 * h.amax


def test_mse_amax_minimises_the_real_quantization_error():
    """The analytic objective agrees with brute-force quantize-dequantize on the data."""
    rng = np.random.default_rng(2)
    data = np.abs(rng.laplace(0, 1, size=200000)).astype(np.float32)
    h = _stream([data])
    amax = methods.mse_amax(h)

    def qerr(a):
        s = a / 127.0
        return float(np.mean((np.clip(np.round(data / s), -127, 127) * s - data) ** 2))

    assert qerr(amax) <= 1.02 * min(qerr(a) for a in np.linspace(0.3, 1.0, 60) * h.amax)


def test_merged_histogram_equals_histogram_of_all_values(relu_like):
    a, b = _stream(relu_like[:2]), _stream(relu_like[2:])
    merged = a.merged([b])
    assert np.array_equal(merged.counts, _stream(relu_like).counts)
    assert merged.amax == pytest.approx(70.0)


def test_concat_group_members_share_one_range():
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Relu", ["c"], ["d"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 4])])
    groups = methods.concat_groups(helper.make_model(graph))
    assert groups == [{"a", "b", "c"}]
    rng = np.random.default_rng(3)
    hists = {"a": _stream([rng.uniform(0, 1, 1000)]), "b": _stream([rng.uniform(0, 8, 1000)]),
             "c": _stream([rng.uniform(0, 8, 2000)]), "d": _stream([rng.uniform(0, 2, 100)])}
    amax = methods.compute_amax(methods.Method.parse("percentile-99.9"), hists, groups)
    assert amax["a"] == amax["b"] == amax["c"] > 7.0
    assert amax["d"] < 2.0
    assert onnx.checker.check_model(helper.make_model(graph)) is None


@pytest.mark.parametrize("text", ["minmax", "percentile-20", "percentile-abc", ""])
def test_unknown_methods_are_refused(text):
    with pytest.raises(UserError):
        methods.Method.parse(text)


def test_method_names_parse():
    assert methods.Method.parse("Percentile-99.99") == methods.Method("percentile-99.99", 99.99)
    assert [methods.Method.parse(m).name for m in methods.METHODS] == list(methods.METHODS)


def test_all_zero_tensor_gets_no_range_and_a_usable_scale():
    from inception_deploy.calibration.qdq import scales_from_amax

    h = _stream([np.zeros((4, 4))])
    assert all(methods.Method.parse(m).amax(h) == 0.0 for m in methods.METHODS)
    assert scales_from_amax({"t": 0.0})["t"] > 0.0


def test_histogram_pass_records_every_batch_of_the_graph_input_and_outputs(test_model_onnx):
    """Later batches reuse bound output buffers; the graph input must come from the batch itself
    (bound as an output, ONNX Runtime never writes it: the buffer stayed uninitialised)."""
    import onnx

    from inception_deploy.calibration import stats as cstats
    from inception_deploy.pipeline.onnx_io import ort_session

    tensors = cstats.float_activation_tensors(onnx.load(test_model_onnx))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 3, 56, 56)).astype(np.float32) * (i + 1) for i in range(5)]
    st = cstats.collect(test_model_onnx, tensors, iter(batches), "input", "k", 20, progress_label=None)
    h = st.tensors["input"]
    assert h.elements == 5 * 4 * 3 * 56 * 56
    assert h.max == max(float(b.max()) for b in batches) and h.min == min(float(b.min()) for b in batches)
    logits = [ort_session(test_model_onnx).run(["logits"], {"input": b})[0] for b in batches]
    assert st.tensors["logits"].max == max(float(x.max()) for x in logits)


def test_derived_concat_histograms_equal_recorded_ones(test_model_onnx):
    """Concat outputs are not recorded but merged from their inputs: the same counts, range and
    extremes as recording them (here: recorded because their inputs are not in the list)."""
    import onnx

    from inception_deploy.calibration import stats as cstats

    model = onnx.load(test_model_onnx)
    tensors = cstats.float_activation_tensors(model)
    derived = cstats.derived_tensors(model, tensors)
    concats = [t for t in derived if len(derived[t]) > 1]
    assert len(concats) >= 6                                   # one per Inception block at least
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((4, 3, 56, 56)).astype(np.float32) for _ in range(3)]
    merged = cstats.collect(test_model_onnx, tensors, iter(batches), "input", "k", 12, progress_label=None)
    direct = cstats.collect(test_model_onnx, ["input"] + concats, iter(batches), "input", "k", 12,
                            progress_label=None)
    for t in concats:
        a, b = merged.tensors[t], direct.tensors[t]
        assert (a.range_max, a.amax, a.min, a.max, a.elements) == (b.range_max, b.amax, b.min, b.max, b.elements)
        assert np.abs(a.counts - b.counts).sum() <= 2          # float32 bin-edge rounding only


def test_channel_means_of_a_concat_are_its_inputs_means_in_order(test_model_onnx):
    import onnx

    from inception_deploy.calibration import stats as cstats

    model = onnx.load(test_model_onnx)
    tensors = cstats.float_activation_tensors(model)
    derived = cstats.derived_tensors(model, tensors)
    concat = next(t for t in derived if len(derived[t]) > 1)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((4, 3, 56, 56)).astype(np.float32) for _ in range(2)]
    merged = cstats.collect(test_model_onnx, tensors, iter(batches), "input", "k", 8, progress_label=None)
    direct = cstats.collect(test_model_onnx, ["input", concat], iter(batches), "input", "k", 8, progress_label=None)
    assert np.allclose(merged.channel_means[concat], direct.channel_means[concat], rtol=1e-5, atol=1e-7)
    x = np.concatenate(batches)
    assert np.allclose(merged.channel_means["input"], x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mean,std,expected", [
    ((128 / 255,) * 3, (128 / 255,) * 3, 127 / 128),            # TensorFlow Inception: (p - 128) / 128, exact
    ((128 / 255,) * 3, (0.25,) * 3, 127 / (255 * 0.25)),
    ((0.5,) * 3, (0.5,) * 3, None),                             # (p - 127.5) / 127.5: half steps, no exact scale
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None),       # ImageNet per-channel
])
def test_exact_input_scale_only_where_the_pixels_land_on_the_int8_grid(mean, std, expected):
    from inception_deploy.calibration.ranges import lossless_input_amax

    got = lossless_input_amax({"mean": list(mean), "std": list(std)})
    assert got == (None if expected is None else pytest.approx(expected))
    if expected is not None:                                   # every 8-bit pixel is an integer multiple of the scale
        scale = got / 127.0
        pixels = (np.arange(256) / 255.0 - mean[0]) / std[0]
        steps = pixels / scale
        assert np.allclose(steps, np.round(steps), atol=1e-6) and steps.min() >= -128 and steps.max() <= 127


def test_bias_correction_removes_the_mean_error_of_int8_weights(tmp_path):
    """One Conv whose INT8 weights are all rounded the same way: its output mean moves, and the
    corrected bias moves it back (the uncorrected error is large, the corrected one ~0)."""
    from onnx import TensorProto, helper, numpy_helper

    from inception_deploy.calibration.qdq import correct_bias
    from inception_deploy.pipeline.onnx_io import ort_session

    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32)
    scale = (np.abs(w).max(axis=(1, 2, 3)) / 127).astype(np.float32)
    w8 = np.clip(np.round(w / scale[:, None, None, None] + 0.45), -128, 127).astype(np.int8)   # biased rounding
    bias = rng.normal(0, 1, 8).astype(np.float32)
    mean = np.array([2.0, 0.5, 1.0, 3.0])

    def model(weights_int8: bool):
        inits = [numpy_helper.from_array(bias, "b"), numpy_helper.from_array(np.float32(0.05), "xs"),
                 numpy_helper.from_array(np.int8(0), "xz")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"])]
        if weights_int8:
            inits += [numpy_helper.from_array(w8, "w"), numpy_helper.from_array(scale, "ws"),
                      numpy_helper.from_array(np.zeros(8, np.int8), "wz")]
            nodes.append(helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0))
            nodes.append(helper.make_node("Conv", ["xd", "wd", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]))
        else:
            inits.append(numpy_helper.from_array(w, "w"))
            nodes.append(helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 16, 16])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8, 16, 16])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])

    fp32, int8 = model(False), model(True)
    x = (rng.normal(0, 0.3, (16, 4, 16, 16)) + mean[None, :, None, None]).astype(np.float32)

    def mean_error(m):
        out = ort_session(m.SerializeToString()).run(["y"], {"x": x})[0]
        ref = ort_session(fp32.SerializeToString()).run(["y"], {"x": x})[0]
        return np.abs((out - ref)[:, :, 1:-1, 1:-1].mean(axis=(0, 2, 3))).max()   # away from the zero padding

    before = mean_error(int8)
    assert correct_bias(int8, fp32, {"x": mean}) == ["conv"]
    after = mean_error(int8)
    assert before > 0.05 and after < 0.1 * before
