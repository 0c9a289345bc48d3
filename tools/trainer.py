"""A small, fast classifier trainer shared by the CPU test model and the GPU reference models.

Images live as one uint8 tensor (N, 3, h, w) on the training device, decoded once. Each batch
is augmented on that device in one batched ``grid_sample`` (random resized crop + horizontal
flip + resize to the network input), normalised, and run with bf16 autocast on CUDA. One-cycle
schedule, SGD with Nesterov momentum, label smoothing; checkpoints to resume between commands.
"""
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from inception_deploy.pipeline.datasets import open_image_folder
from inception_deploy.pipeline.preprocess import to_rgb


@dataclass
class Recipe:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.2                  # one-cycle peak, for batch_size
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    scale: Tuple[float, float] = (0.35, 1.0)   # random-resized-crop area range
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    seed: int = 0
    warmup_frac: float = 0.15


def load_uint8(root: str, label_names: Sequence[str], limit_per_class: Optional[int] = None,
               size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Decode a class-per-folder tree once into (N, 3, size, size) uint8 + int64 labels."""
    from PIL import Image

    ds = open_image_folder(root, label_names, require_labels=True)
    samples = ds.samples
    if limit_per_class:
        seen: Dict[int, int] = {}
        keep = []
        for s in samples:
            if seen.get(s.label, 0) < limit_per_class:
                seen[s.label] = seen.get(s.label, 0) + 1
                keep.append(s)
        samples = keep
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    labels = np.empty((len(samples),), dtype=np.int64)
    n = 0
    for s in samples:
        img = ds.load(s)
        if img is None:
            continue
        img = to_rgb(img)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        images[n] = np.asarray(img)
        labels[n] = s.label
        n += 1
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} unreadable images in {root}")
    return np.ascontiguousarray(images[:n].transpose(0, 3, 1, 2)), labels[:n]


def augment(batch: torch.Tensor, out_size: int, recipe: Recipe, gen: torch.Generator,
            mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> normalised float (B, 3, out, out): RRC + flip in one grid_sample."""
    b = batch.shape[0]
    dev = batch.device
    area = torch.empty(b, device=dev).uniform_(recipe.scale[0], recipe.scale[1], generator=gen)
    log_r = torch.empty(b, device=dev).uniform_(math.log(recipe.ratio[0]), math.log(recipe.ratio[1]),
                                                generator=gen)
    ratio = torch.exp(log_r)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, device=dev, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, device=dev, generator=gen) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, device=dev, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    x = batch.float().div_(255.0)
    grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return (x - mean) / std


def center(batch: torch.Tensor, out_size: int, crop_pct: float, mean: torch.Tensor,
           std: torch.Tensor) -> torch.Tensor:
    """Eval view used only for progress lines (the reported numbers use the project's evaluation)."""
    x = batch.float().div_(255.0)
    scale = int(math.floor(out_size / crop_pct))
    if x.shape[-1] != scale:
        x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False, antialias=True)
    top = int(round((scale - out_size) / 2.0))
    x = x[:, :, top:top + out_size, top:top + out_size]
    return (x - mean) / std


def _param_groups(model: torch.nn.Module, wd: float) -> List[Dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, input_size: int,
          mean: Sequence[float], std: Sequence[float], recipe: Recipe,
          checkpoint: Optional[str] = None, time_budget_s: Optional[float] = None,
          on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None) -> Dict[str, float]:
    """Train in place; resume from ``checkpoint`` if it exists, save it after every epoch.

    Returns the last epoch's figures; ``done`` is 1.0 once all epochs are finished (a run
    stopped by ``time_budget_s`` returns 0.0 and resumes from the checkpoint next time).
    """
    dev = images.device
    cuda = dev.type == "cuda"
    torch.manual_seed(recipe.seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(recipe.seed)
    mean_t = torch.tensor(mean, device=dev).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=dev).view(1, 3, 1, 1)
    model = model.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(_param_groups(model, recipe.weight_decay), lr=recipe.lr, momentum=0.9,
                          nesterov=True)
    steps_per_epoch = len(images) // recipe.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, epochs=recipe.epochs,
                                                steps_per_epoch=steps_per_epoch,
                                                pct_start=recipe.warmup_frac, div_factor=20,
                                                final_div_factor=200)
    start_epoch = 0
    if checkpoint and os.path.isfile(checkpoint):
        state = torch.load(checkpoint, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"].to(gen.get_state().device) if not cuda else state["gen"].cpu())
        start_epoch = int(state["epoch"])
        print(f"resumed from {checkpoint} at epoch {start_epoch}")
    t0 = time.perf_counter()
    figures: Dict[str, float] = {"done": 0.0}
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        perm = torch.randperm(len(images), device=dev, generator=gen)
        seen, loss_sum, correct, t_epoch = 0, 0.0, 0, time.perf_counter()
        for step in range(steps_per_epoch):
            idx = perm[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            x = augment(images[idx], input_size, recipe, gen, mean_t, std_t)
            x = x.contiguous(memory_format=torch.channels_last)
            y = labels[idx]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            if step % 20 == 0 or step == steps_per_epoch - 1:
                loss_sum = float(loss.detach())
                correct = int((logits.argmax(1) == y).sum())
        dt = time.perf_counter() - t_epoch
        figures = {"epoch": epoch + 1, "loss": loss_sum, "train_batch_top1": 100.0 * correct / len(idx),
                   "images_per_s": seen / dt, "epoch_s": dt, "lr": sched.get_last_lr()[0], "done": 0.0}
        print("epoch %d/%d: loss %.3f, last-batch train top-1 %.1f %%, %.0f images/s, %.1f s" % (
            epoch + 1, recipe.epochs, loss_sum, figures["train_batch_top1"], figures["images_per_s"], dt),
            flush=True)
        if checkpoint:
            tmp = checkpoint + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "gen": gen.get_state(), "epoch": epoch + 1, "recipe": asdict(recipe)}, tmp)
            os.replace(tmp, checkpoint)
        if on_epoch:
            on_epoch(epoch + 1, figures)
        if time_budget_s is not None and time.perf_counter() - t0 + dt > time_budget_s and epoch + 1 < recipe.epochs:
            print(f"time budget reached after epoch {epoch + 1}; resume from {checkpoint}")
            return figures
    figures["done"] = 1.0
    return figures


@torch.no_grad()
def quick_eval(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, input_size: int,
               crop_pct: float, mean: Sequence[float], std: Sequence[float], batch: int = 256) -> Tuple[float, float]:
    """Top-1/top-5 (percent) on uint8 images with a center crop; for progress lines."""
    model.eval()
    dev = images.device
    mean_t = torch.tensor(mean, device=dev).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=dev).view(1, 3, 1, 1)
    top1 = top5 = 0
    for i in range(0, len(images), batch):
        x = center(images[i:i + batch], input_size, crop_pct, mean_t, std_t)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        t5 = logits.topk(5, 1).indices
        y = labels[i:i + batch]
        top1 += int((t5[:, 0] == y).sum())
        top5 += int((t5 == y[:, None]).any(1).sum())
    return 100.0 * top1 / len(images), 100.0 * top5 / len(images)
