"""Import timm on a CPU-only torch.

The only torchvision on the registry is a CUDA build; importing it on the CPU torch fails while
``torchvision._meta_registrations`` registers meta kernels for compiled ops (``torchvision::nms``
does not exist). timm needs none of those ops, so an empty module is put in that slot first.
"""
import sys
import types


def import_timm():
    """Return the ``timm`` module, with the project's architectures registered."""
    name = "torchvision._meta_registrations"
    if name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
    import timm  # noqa: E402  (after the workaround)

    # Registering is a side effect of importing these modules (timm's @register_model).
    from inception_deploy.pipeline.models import inception_resnet_v1, inception_v3_tf2015, tiny_inception  # noqa: F401

    return timm
