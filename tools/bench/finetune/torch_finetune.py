"""PyTorch reference for the fine-tuning benchmark (tools/bench/finetune/bench-finetune.mjs).

The same model as emseg's finetune app: torchvision-layout ResNet-18/50 with a 1-channel stem, the
smp-style U-Net decoder 256/128/64/32/16 and a 1-channel head; focal (gamma 2) + dice, Adam.

  python torch_finetune.py train --arch resnet50 --size 512 --batch 4 --steps 3 --warmup 1
  python torch_finetune.py infer --arch resnet18 --width 9958 --height 9959 --tile 1024 --overlap 128

`infer` predicts a whole image in overlapping tiles with reflect padding (overlap / 2) and
Gaussian blending (sigma = tile / 8), as libs/data's tilePlan/TileStitcher do. Prints one JSON
object; peakRssMB is the process's peak resident set size (VmHWM).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_reference import UNet, blend_weights, focal_dice_loss, grid_offsets  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train(a):
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = UNet(a.arch).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(a.batch, 1, a.size, a.size, device=dev)
    y = (torch.rand(a.batch, 1, a.size, a.size, device=dev) < 0.08).float()
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = focal_dice_loss(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        sync(dev)
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return {"arch": a.arch, "size": a.size, "batch": a.batch, "msPerStep": statistics.median(times), "stepsMs": times}


def peak_rss_mb():
    """VmHWM of this process (ru_maxrss would include the parent's peak inherited at fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def infer(a):
    dev = torch.device(a.device)
    model = UNet(a.arch).to(dev).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(a.height, a.width), dtype=np.uint8)
    t0 = time.perf_counter()
    tile, pad = a.tile, a.overlap // 2
    stride = tile - a.overlap
    padded = np.pad(image, pad, mode="reflect")
    ys = grid_offsets(a.height + 2 * pad, tile, stride)
    xs = grid_offsets(a.width + 2 * pad, tile, stride)
    w = blend_weights(tile, a.overlap, "gaussian")
    acc = np.zeros((a.height + 2 * pad, a.width + 2 * pad), dtype=np.float32)
    norm_y = np.zeros(a.height + 2 * pad, dtype=np.float64)
    norm_x = np.zeros(a.width + 2 * pad, dtype=np.float64)
    for y in ys:
        norm_y[y : y + tile] += w
    for x in xs:
        norm_x[x : x + tile] += w
    ww = np.outer(w, w)
    for y in ys:
        for x in xs:
            t = torch.from_numpy(padded[y : y + tile, x : x + tile].astype(np.float32) / 255.0)[None, None].to(dev)
            p = torch.sigmoid(model((t - 0.573) / 0.127))[0, 0].cpu().numpy()
            acc[y : y + tile, x : x + tile] += p * ww
    out = acc[pad : pad + a.height, pad : pad + a.width] / np.outer(norm_y[pad : pad + a.height], norm_x[pad : pad + a.width]).astype(np.float32)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    return {"arch": a.arch, "width": a.width, "height": a.height, "tile": tile, "overlap": a.overlap, "tiles": len(xs) * len(ys), "seconds": seconds, "peakRssMB": peak, "mean": float(out.mean())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "infer"])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--width", type=int, default=9958)
    ap.add_argument("--height", type=int, default=9959)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("EMSEG_BENCH_THREADS", os.cpu_count())))
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # TensorFlow autotunes its convolutions too
    result = train(a) if a.mode == "train" else infer(a)
    gpu = torch.cuda.get_device_name(torch.device(a.device)) if a.device.startswith("cuda") else None
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "device": a.device, "gpu": gpu, **result}))


if __name__ == "__main__":
    main()
