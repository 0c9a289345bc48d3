"""The TensorRT calibration cache: exact round trip, the format other tools read, clear errors."""
import struct

import numpy as np
import pytest

from inception_deploy.pipeline import trt_cache as cache
from inception_deploy.pipeline.errors import UserError

SCALES = {
    "input": 0.020787401124835014,
    "/model/features/features.0/act/Relu_output_0": 0.0406167097389698,
    "/model/features/features.5/Concat_output_0": 0.047053,
    "tensor with spaces: and colon": 1.5e-5,
}


def test_round_trip_is_bit_exact(tmp_path):
    path = str(tmp_path / "model.int8.calib.cache")
    cache.write_cache(path, SCALES, "8601")
    header, back = cache.read_cache_with_header(path)
    assert header == "TRT-8601-EntropyCalibration2"
    assert set(back) == set(SCALES)
    for name, scale in SCALES.items():
        assert back[name] == float(np.float32(scale))      # float32 bits survive unchanged


def test_file_format_matches_tensorrt(tmp_path):
    path = str(tmp_path / "c.cache")
    cache.write_cache(path, {"input": 1.0}, cache.DEFAULT_VERSION)
    lines = open(path).read().splitlines()
    assert lines[0] == "TRT-100000-EntropyCalibration2"
    # TensorRT writes the big-endian IEEE-754 bits of the float32 scale: 1.0 is 3f800000
    assert lines[1] == "input: 3f800000"
    assert cache.header_for("TRT-8502-EntropyCalibration2") == "TRT-8502-EntropyCalibration2"


def test_modelopt_reads_our_cache(tmp_path):
    """modelopt's own TensorRT-cache importer (what the Q/DQ stage relies on) reads the same values."""
    from modelopt.onnx.quantization.calib_utils import import_scales_from_calib_cache

    scales = {k: v for k, v in SCALES.items() if ": " not in k}   # modelopt splits on ': ' naively
    path = str(tmp_path / "c.cache")
    cache.write_cache(path, scales)
    imported = import_scales_from_calib_cache(path)
    assert {k[: -len("_scale")]: v for k, v in imported.items()} == {k: float(np.float32(v)) for k, v in scales.items()}


def test_reads_a_cache_written_by_hand_in_tensorrt_layout(tmp_path):
    path = tmp_path / "trt.cache"
    path.write_text("TRT-8601-EntropyCalibration2\ninput: 3c010a14\n(Unnamed Layer* 3) [Convolution]_output: "
                    "3d1e4a5b\n\n")
    scales = cache.read_cache(str(path))
    assert scales["input"] == struct.unpack(">f", bytes.fromhex("3c010a14"))[0]
    assert "(Unnamed Layer* 3) [Convolution]_output" in scales


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("not a header\ninput: 3f800000\n", "header"),
    ("TRT-8601-EntropyCalibration2\ninput 3f800000\n", "line 2"),
    ("TRT-8601-EntropyCalibration2\ninput: 3f80zz00\n", "line 2"),
    ("TRT-8601-EntropyCalibration2\ninput: 3f800000\nx: 12\n", "line 3"),
])
def test_malformed_cache_is_a_one_line_user_error(tmp_path, text, message):
    path = tmp_path / "bad.cache"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        cache.read_cache(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_cache_names_the_way_out(tmp_path):
    with pytest.raises(UserError, match="inception-deploy calibrate"):
        cache.read_cache(str(tmp_path / "none.cache"))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_unusable_scales_are_refused(tmp_path, bad):
    with pytest.raises(UserError, match="positive finite"):
        cache.write_cache(str(tmp_path / "c.cache"), {"t": bad})
    assert not (tmp_path / "c.cache").exists()


def test_cache_module_stays_device_side():
    """The Jetson-side engine builder imports it: stdlib + pipeline's stdlib helpers only."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cache))
    def top(name):   # the project's packages by their folder name (installed under inception_deploy.)
        return name[len("inception_deploy."):].split(".")[0] if name.startswith("inception_deploy.") else \
            name.split(".")[0]

    imported = {top(a.name) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {top(n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"os", "struct", "typing", "pipeline"}
