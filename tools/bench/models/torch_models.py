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
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "import-torch"))
from torch_resnet import ResNet  # noqa: E402


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = conv_bn_relu(cin + cskip, cout)
        self.conv2 = conv_bn_relu(cout, cout)

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNet(nn.Module):
    def __init__(self, depth: int, decoder=(256, 128, 64, 32, 16)):
        super().__init__()
        self.encoder = ResNet(depth, in_channels=1)
        self.encoder.fc = nn.Identity()  # unused; keeps the parameter count comparable
        ch = [64, 64, 128, 256, 512] if depth != 50 else [64, 256, 512, 1024, 2048]
        ins = [ch[4]] + list(decoder[:-1])
        skips = [ch[3], ch[2], ch[1], ch[0], 0]
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder))
        self.head = nn.Conv2d(decoder[-1], 1, 3, padding=1)

    def forward(self, x):
        f2, f4, f8, f16, f32 = self.encoder.features(x)
        x = f32
        for block, skip in zip(self.blocks, [f16, f8, f4, f2, None]):
            x = block(x, skip)
        return self.head(x)


def focal_dice(logits, target, gamma=2.0, smooth=1.0):
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    wrong = target * (1 - p) + (1 - target) * p
    focal = (wrong**gamma * bce).mean()
    dice = 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)
    return focal + dice


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
    model = ResNet(depth, in_channels=1).eval()
    model.fc = nn.Identity()
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
