"""CLI for the export stage: ``export``, ``info`` and the stage ``summary``."""
import argparse
import os
from typing import Any

from inception_deploy.pipeline import paths


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="timm name (inception_v4, inception_resnet_v2, inception_v3, inception_resnet_v1, any timm "
                        "classifier), local-dir:PATH (config.json + model.safetensors), or a .safetensors/.pth/.pt "
                        "checkpoint with --arch (default: the repository's default model)")
    p.add_argument("--arch", help="architecture of a checkpoint file (a timm name)")
    p.add_argument("--num-classes", type=int, help="classes of a checkpoint file (default 1000)")
    p.add_argument("--pretrained", action="store_true", help="download weights through timm (needs a model hub)")


def _load(args: argparse.Namespace) -> Any:
    from inception_deploy.pipeline.models.sources import resolve_model

    return resolve_model(args.model or paths.default_model(), arch=args.arch, num_classes=args.num_classes,
                         pretrained=args.pretrained)


def cmd_export(args: argparse.Namespace) -> int:
    from inception_deploy.pipeline.export import ParityTolerance, run_export

    loaded = _load(args)
    for note in loaded.notes:
        print(f"note: {note}")
    tol = ParityTolerance(atol=args.atol, rtol=args.rtol, min_top1_agreement=args.min_top1_agreement)
    from inception_deploy.pipeline.frame_io import frame_size_name
    from inception_deploy.pipeline.frame_variant import frame_sizes, write_frame_variant

    sizes = frame_sizes(args.frame_input)      # parsed first: a bad size fails before the export
    m = run_export(loaded, args.out, args.parity_images, opset=args.opset, exporter=args.exporter,
                   parity_count=args.parity_count, seed=args.seed, tolerance=tol,
                   frame_inputs=[frame_size_name(s) for s in sizes])
    p = m.stage["parity"]
    print(f"export: {os.path.join(args.out, 'model.onnx')} ({m.artifact['bytes'] / 1e6:.1f} MB, opset "
          f"{m.stage['opset']}, {m.stage['nodes']} nodes) in {m.stage['timings_s']['total']:.1f} s; parity on "
          f"{p['images']} images: max abs error {p['max_abs_error']:.2e}, top-1 agreement "
          f"{100 * p['top1_agreement']:.1f} %")
    for size in sizes:
        variant = write_frame_variant(os.path.join(args.out, "model.onnx"), size, args.parity_images)
        print(f"frame input: {os.path.join(args.out, variant.artifact['file'])}: {variant.stage['summary']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from inception_deploy.pipeline.models.info import model_info

    loaded = _load(args)
    size = loaded.preprocessing.input_size
    info = model_info(loaded.module, (3, size[0], size[1]))
    print(f"{loaded.name} ({loaded.architecture}), {loaded.num_classes} classes")
    print(info.format_table())
    if args.json:
        from inception_deploy.pipeline import atomic
        from dataclasses import asdict
        atomic.write_json(args.json, asdict(info))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from inception_deploy.pipeline.summary import summarize

    print(summarize(args.dir))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="PyTorch -> ONNX with a parity check and a manifest",
                       description="Export a model to <out>/model.onnx + model.onnx.json. Exit codes: 0 ok, "
                                   "1 parity check failed (nothing written), 2 bad input.")
    _add_model_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17: JetPack 5's TensorRT 8.5 parser)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    p.add_argument("--parity-images", default=paths.VAL_DIR, help="real images for the parity check "
                   "(default: the shared Tiny-ImageNet val split)")
    p.add_argument("--parity-count", type=int, default=64, help="images for the parity check (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-3, help="relative to the largest |logit|")
    p.add_argument("--min-top1-agreement", type=float, default=0.99)
    p.add_argument("--frame-input", action="append", metavar="WxH",
                   help="also write model.frame-WxH.onnx: the model with the camera-frame preprocessing in its graph "
                        "(input uint8 N x H x W x 3 BGR), so TensorRT runs it on the GPU; calibrate writes the INT8 / "
                        "FP16 variants too. Repeat or comma-separate sizes, e.g. 1920x1080,1280x720")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="per-stage output shapes, parameters and MACs of a model")
    _add_model_args(p)
    p.add_argument("--json", help="also write the table as JSON here")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("summary", help="one line per stage found under a run folder, and the next command")
    p.add_argument("dir", help="a run folder, e.g. build/demo")
    p.set_defaults(func=cmd_summary)
