"""The layer listing of full TensorRT's builder log (the TensorRT-RTX format is checked on real
build logs in test_engines_build.py). Full TensorRT cannot run here: these lines follow the shapes
of NVIDIA's published VERBOSE logs (8.x ``name[Float(1,3,224,224)]``, 10.x ``name (Half[...])``,
``[DlaLayer]``/``[GpuLayer]`` lines of DLA builds)."""
from inception_deploy.engines.layers import parse_layers, parse_layers_log

TRT86_LOG = """[V] [TRT] Layer(Reformat): input_copy, Tactic: 0x00000000000003e8, input[Float(1,3,299,299)] -> q[Int8(1,3,299,299)]
[I] [TRT] Engine Layer Information:
Layer(Reformat): /in/QuantizeLinear, Tactic: 0x00000000000003e8, input[Float(-8,3,299,299)] -> /in/QuantizeLinear_output_0[Int8(-8,3,299,299)]
Layer(CaskConvolution): /b0/conv/Conv + /b0/act/Relu, Tactic: 0x1e1, /in/QuantizeLinear_output_0[Int8(-8,3,299,299)] -> /b0/act/Relu_output_0[Int8(-8,32,149,149)]
Layer(CaskConvolution): /b1/conv/Conv + /b1/act/Relu, Tactic: 0x1e2, /b0/act/Relu_output_0[Int8(-8,32,149,149)] -> /blk/Concat_output_0[Int8(-8,64,147,147)]
Layer(CaskPooling): /b2/MaxPool, Tactic: 0x5, /b0/act/Relu_output_0[Int8(-8,32,149,149)] -> /b2/MaxPool_output_0[Float(-8,32,147,147)]
Layer(Reformat): Reformatting CopyNode for Input Tensor 0 to /blk/Concat, Tactic: 0x3ea, /b2/MaxPool_output_0[Float(-8,32,147,147)] -> /blk/Concat_output_0[Int8(-8,32,147,147)]
Layer(Myelin): {ForeignNode[/head/Gemm]}, Tactic: 0x0, /blk/Concat_output_0[Int8(-8,64,147,147)], (Unnamed Layer* 13) [Shuffle]_output[Float(1,64)] -> logits[Float(-8,200)]
"""

TRT10_DLA_LOG = """[I] [TRT] ---------- Layers Running on DLA ----------
[I] [TRT] [DlaLayer] {ForeignNode[/stem/conv/Conv.../blk/Concat]}
[I] [TRT] ---------- Layers Running on GPU ----------
[I] [TRT] [GpuLayer] SHUFFLE: /head/Flatten
[I] [TRT] [GpuLayer] MATRIX_MULTIPLY: /head/Gemm
[V] [TRT] Engine Layer Information:
Layer(DLA): {ForeignNode[/stem/conv/Conv.../blk/Concat]}, Tactic: 0x0000000000000003, input (Half[1,3,299,299]) -> /blk/Concat_output_0 (Half[1,64,147,147])
Layer(NoOp): /head/Flatten, Tactic: 0x0, /blk/Concat_output_0 (Half[1,64,147,147]) -> /head/Flatten_output_0 (Half[1,1382976])
Layer(CaskGemmMatMul): /head/Gemm, Tactic: 0x1, /head/Flatten_output_0 (Half[1,1382976]) -> logits (Float[1,200])
"""


def test_tensorrt_8_6_format():
    source, layers = parse_layers(TRT86_LOG)
    assert source == "tensorrt-log" and len(layers) == 6   # the stray line before the header is ignored
    conv = layers[1]
    assert conv.type == "CaskConvolution" and conv.name == "/b0/conv/Conv + /b0/act/Relu"
    assert conv.inputs[0].dtype == "Int8" and conv.inputs[0].dims == (-8, 3, 299, 299)
    gemm = layers[-1]
    assert [t.name for t in gemm.inputs] == ["/blk/Concat_output_0", "(Unnamed Layer* 13) [Shuffle]_output"]
    s = parse_layers_log(TRT86_LOG)
    assert s.total == 6 and s.by_type == {"Reformat": 2, "CaskConvolution": 2, "CaskPooling": 1, "Myelin": 1}
    assert s.by_output_precision == {"Int8": 4, "Float": 2}
    assert s.reformat_layers == 2 and s.conv_layers == 2 and s.conv_input_precision == {"Int8": 2}
    assert s.concat_non_int8 == []  # the MaxPool branch is reformatted to Int8 before the Concat
    assert s.dla_layers == 0 and s.gpu_layers == 6


def test_concat_tensors_that_are_not_int8_are_listed():
    log = TRT86_LOG.replace("/blk/Concat_output_0[Int8(-8,32,147,147)]", "/blk/Concat_output_0[Half(-8,32,147,147)]")
    s = parse_layers_log(log)
    assert s.concat_non_int8 == [{"layer": "Reformatting CopyNode for Input Tensor 0 to /blk/Concat",
                                  "tensor": "/blk/Concat_output_0", "dtype": "Half"}]


def test_tensorrt_10_format_with_dla_split():
    s = parse_layers_log(TRT10_DLA_LOG)
    assert s.source == "tensorrt-log" and s.total == 3
    assert s.by_output_precision == {"Half": 2, "Float": 1}
    assert (s.dla_layers, s.gpu_layers) == (1, 2)
    assert s.to_dict()["by_type"]["DLA"] == 1
    assert "1 on DLA / 2 on GPU" in s.line()


def test_no_layer_listing():
    s = parse_layers_log("[I] [TRT] Engine generation completed\n")
    assert s.source == "none" and s.total == 0 and s.weights_bytes is None
