"""PyTorch reference for the backend benchmark: one training step of a ResNet-18 U-Net.

Same model as emseg's (DESIGN.md section 7): torchvision-layout ResNet-18 with a 1-channel stem,
smp-style U-Net decoder 256/128/64/32/16, 1-channel logits, focal (gamma 2) + dice loss, Adam.
Prints one JSON object: {"framework": "pytorch", "results": [{"size", "batch", "msPerStep", ...}]}.
Usage: python torch_unet.py --sizes 128,256 --batch 4 --steps 5 --warmup 2
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18Encoder(nn.Module):
    def __init__(self, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin, layers = [64, 128, 256, 512], 64, []
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x):
        f2 = F.relu(self.bn1(self.conv1(x)))
        f4 = self.layer1(self.maxpool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [f2, f4, f8, f16, f32]


def conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.conv1 = conv_bn_relu(cin + cskip, cout)
        self.conv2 = conv_bn_relu(cout, cout)

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNet(nn.Module):
    def __init__(self, decoder=(256, 128, 64, 32, 16)):
        super().__init__()
        self.encoder = ResNet18Encoder(1)
        ins = [512] + list(decoder[:-1])
        skips = [256, 128, 64, 64, 0]
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder))
        self.head = nn.Conv2d(decoder[-1], 1, 3, 1, 1)

    def forward(self, x):
        f2, f4, f8, f16, f32 = self.encoder(x)
        x = f32
        for block, skip in zip(self.blocks, [f16, f8, f4, f2, None]):
            x = block(x, skip)
        return self.head(x)


def focal_dice_loss(logits, target, gamma=2.0, lam=1.0, eps=1e-7):
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = torch.exp(-bce)
    focal = ((1 - pt) ** gamma * bce).mean()
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + eps) / (p.sum() + target.sum() + eps)
    return focal + lam * dice


def bench(size, batch, steps, warmup):
    torch.manual_seed(0)
    model = UNet()
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
