"""engines: TensorRT engines per deployment target (TensorRT 8.5/8.6, 10.x, 11.x, TensorRT-RTX).

Device-side (stdlib + numpy, Python 3.8): ``targets`` (the target files), ``trt_api`` (import and
feature detection), ``builder`` (one builder), ``layers`` (the builder log's layer listing),
``compat`` (refuse an engine the running TensorRT/GPU cannot load), ``bundle`` (deploy bundles).
"""
