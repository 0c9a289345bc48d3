"""inception-deploy: the export stage and the pieces every stage shares.

Device-safe modules (no torch, Python 3.8): errors, atomic, labels, preprocess, datasets,
manifest, progress, paths. Build-side (torch/timm): ``pipeline.models``, ``pipeline.export``.
"""
__version__ = "0.1.0"
