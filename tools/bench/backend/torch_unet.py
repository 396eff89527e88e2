"""PyTorch reference for the backend benchmark: one training step of a ResNet-18 U-Net.

Same model as emseg's (DESIGN.md section 7): torchvision-layout ResNet-18 with a 1-channel stem,
smp-style U-Net decoder 256/128/64/32/16, 1-channel logits, focal (gamma 2) + dice loss, Adam.
Prints one JSON object: {"framework": "pytorch", "results": [{"size", "batch", "msPerStep", ...}]}.
Usage: python torch_unet.py --sizes 128,256 --batch 4 --steps 5 --warmup 2
"""
import argparse
import json
import os
import sys
import statistics
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_reference import UNet, focal_dice_loss  # noqa: E402


def bench(size, batch, steps, warmup):
    torch.manual_seed(0)
    model = UNet(18)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, size, size)
    y = (torch.rand(batch, 1, size, size) < 0.1).float()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = focal_dice_loss(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    params = sum(p.numel() for p in model.parameters())
    return {"size": size, "batch": batch, "msPerStep": statistics.median(times), "stepsMs": times, "params": params}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("EMSEG_BENCH_THREADS", os.cpu_count())))
    results = [bench(int(s), a.batch, a.steps, a.warmup) for s in a.sizes.split(",")]
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
