"""PyTorch twins of emseg's models, shared by the benchmarks' reference sides.

- ResNet-18/34/50 in torchvision's layout with a 1-channel stem (tools/import-torch/torch_resnet.py,
  the same file the state_dict import is tested against), no classifier;
- the smp-style U-Net decoder 256/128/64/32/16 with one logit channel, as libs/models `unet`;
- focal (gamma 2) + lambda * dice (smooth 1) on logits, as libs/models `focalDiceLoss`.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "import-torch"))
from torch_resnet import ResNet  # noqa: E402

FEATURE_CHANNELS = {18: [64, 64, 128, 256, 512], 34: [64, 64, 128, 256, 512], 50: [64, 256, 512, 1024, 2048]}


def depth_of(arch) -> int:
    """18, "18" or "resnet18" -> 18."""
    return int(str(arch).replace("resnet", ""))


def encoder(arch) -> ResNet:
    """A 1-channel ResNet whose `features(x)` gives the maps at strides 2..32 (its fc is unused)."""
    net = ResNet(depth_of(arch), in_channels=1)
    net.fc = nn.Identity()
    return net


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
    """smp.Unet over a 1-channel ResNet: [b, 1, h, w] -> logits [b, 1, h, w]."""

    def __init__(self, arch=18, decoder=(256, 128, 64, 32, 16)):
        super().__init__()
        self.encoder = encoder(arch)
        ch = FEATURE_CHANNELS[depth_of(arch)]
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


def focal_dice_loss(logits, target, gamma=2.0, lam=1.0, smooth=1.0):
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    wrong = target * (1 - p) + (1 - target) * p
    focal = (wrong**gamma * bce).mean()
    dice = 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)
    return focal + lam * dice


def grid_offsets(length, size, stride):
    """Tile offsets along one axis, as libs/data's tilePlan: every `stride`, the last flush with the end."""
    if length <= size:
        return [0]
    out, o = [], 0
    while o + size < length:
        out.append(o)
        o += stride
    out.append(length - size)
    return out


def blend_weights(size, overlap, window):
    """The 1-D blending window of libs/data's TileStitcher: gaussian (sigma = size / 8), linear or uniform."""
    i = np.arange(size, dtype=np.float64)
    if window == "uniform":
        w = np.ones(size)
    elif window == "linear":
        w = np.minimum(1, (np.minimum(i, size - 1 - i) + 1) / (overlap + 1))
    else:
        sigma = size / 8
        d = i + 0.5 - size / 2
        w = np.maximum(np.exp(-d * d / (2 * sigma * sigma)), 1e-6)
    return w.astype(np.float32)
