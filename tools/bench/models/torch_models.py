"""PyTorch reference for tools/bench/models/bench-models.mjs: the same models as libs/models.

ResNet-18/50 (torchvision layout, tools/import-torch/torch_resnet.py) with a 1-channel stem, the smp
U-Net decoder 256/128/64/32/16 with one logit channel, focal (gamma 2) + dice (smooth 1) loss.
Measures (1) forward + backward of the U-Net in training mode (gradients only, no optimizer step),
(2) eval-mode encoder features without gradients. Prints one JSON object.

    python torch_models.py --unet 18:128:4,18:256:4 --encoder 18:512:1,50:512:1 --steps 5 --warmup 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_reference import UNet, encoder, focal_dice_loss as focal_dice  # noqa: E402


def timed(fn, steps: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def bench_unet(depth: int, size: int, batch: int, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = UNet(depth).train()
    x = torch.randn(batch, 1, size, size)
    y = (torch.rand(batch, 1, size, size) < 0.1).float()

    def step():
        model.zero_grad(set_to_none=True)
        loss = focal_dice(model(x), y)
        loss.backward()
        loss.item()

    times = timed(step, steps, warmup)
    return {"depth": depth, "size": size, "batch": batch, "msMedian": statistics.median(times), "ms": times,
            "params": sum(p.numel() for p in model.parameters())}


def bench_encoder(depth: int, size: int, batch: int, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = encoder(depth).eval()
    x = torch.randn(batch, 1, size, size)

    def forward():
        with torch.no_grad():
            out = model.features(x)
        out[-1].sum().item()

    times = timed(forward, steps, warmup)
    return {"depth": depth, "size": size, "batch": batch, "msMedian": statistics.median(times), "ms": times}


def specs(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in s.split(":")) for s in text.split(",") if s]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unet", default="18:128:4,18:256:4")
    ap.add_argument("--encoder", default="18:512:1,50:512:1")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    print(json.dumps({
        "framework": "pytorch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "unet": [bench_unet(d, s, b, a.steps, a.warmup) for d, s, b in specs(a.unet)],
        "encoder": [bench_encoder(d, s, b, a.steps, a.warmup) for d, s, b in specs(a.encoder)],
    }))


if __name__ == "__main__":
    main()
