"""Make a PyTorch reference for checking the importer: a random torchvision-layout ResNet with
non-trivial BN statistics, saved as a checkpoint, and its eval-mode features on a random input.

    python reference_features.py OUT_DIR --depth 18 [--in-channels 1] [--size 64 64] [--batch 2]
        [--seed 0] [--moco]      # keys as a MoCo checkpoint: module.encoder_q.*, module.encoder_k.*
                                 # (stem only, to stay small), module.queue, a projection MLP in fc, "norms"
        [--grey]                 # one grey input channel, repeated for the model's in-channels
    python reference_features.py --list-keys   # {"18": {key: shape}, "34": ..., "50": ...} as JSON

Writes OUT_DIR/checkpoint.pth, OUT_DIR/input.bin (float32, NHWC) and OUT_DIR/features.json:
{"input": [b, h, w, c], "features": [{"file": "feature_0.bin", "shape": [b, h, w, c]}, ...]}
with the five feature maps (strides 2..32) as float32 NHWC. With --grey, input.bin has one channel:
the model saw it repeated, which a 1-channel encoder with the summed conv1 must reproduce.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet import ResNet  # noqa: E402


def randomize_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters far from the identity, so a wrong mapping shows."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
                m.num_batches_tracked.fill_(123)


def write_nhwc(tensor: torch.Tensor, path: str) -> list[int]:
    nhwc = tensor.detach().permute(0, 2, 3, 1).contiguous()
    with open(path, "wb") as f:
        f.write(nhwc.numpy().astype("<f4").tobytes())
    return list(nhwc.shape)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir", nargs="?")
    p.add_argument("--depth", type=int, choices=[18, 34, 50], default=18)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--size", type=int, nargs=2, default=[64, 64])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--moco", action="store_true")
    p.add_argument("--grey", action="store_true")
    p.add_argument("--list-keys", action="store_true")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    if args.list_keys:
        keys = {d: {k: list(v.shape) for k, v in ResNet(d).state_dict().items()} for d in (18, 34, 50)}
        print(json.dumps(keys))
        return
    model = ResNet(args.depth, in_channels=args.in_channels)
    if not args.out_dir:
        p.error("OUT_DIR is required unless --list-keys")
    generator = torch.Generator().manual_seed(args.seed)
    randomize_batch_norms(model, generator)
    model.eval()
    os.makedirs(args.out_dir, exist_ok=True)

    if args.moco:
        dim = model.fc.in_features
        model.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 128))
        # A second ResNet stem under encoder_k is enough to make prefix detection choose.
        key_encoder = {k: v + 1.0 if v.is_floating_point() else v for k, v in model.state_dict().items() if k.startswith(("conv1.", "bn1."))}
        state_dict = {f"module.encoder_q.{k}": v for k, v in model.state_dict().items()}
        state_dict.update({f"module.encoder_k.{k}": v for k, v in key_encoder.items()})
        state_dict["module.queue"] = torch.randn(128, 16)
        state_dict["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
        checkpoint = {"epoch": 200, "arch": f"resnet{args.depth}", "state_dict": state_dict, "norms": [0.58, 0.13]}
    else:
        checkpoint = model.state_dict()
    torch.save(checkpoint, os.path.join(args.out_dir, "checkpoint.pth"))

    h, w = args.size
    x = torch.rand(args.batch, 1 if args.grey else args.in_channels, h, w, generator=generator)
    with torch.no_grad():
        maps = model.features(x.repeat(1, args.in_channels, 1, 1) if args.grey else x)
    write_reference(args.out_dir, x, maps)


def write_reference(out_dir: str, x: torch.Tensor, maps: list[torch.Tensor]) -> None:
    """input.bin, feature_<i>.bin and features.json (the format described above) in OUT_DIR."""
    input_shape = write_nhwc(x, os.path.join(out_dir, "input.bin"))
    features = []
    for i, f in enumerate(maps):
        name = f"feature_{i}.bin"
        features.append({"file": name, "shape": write_nhwc(f, os.path.join(out_dir, name))})
    with open(os.path.join(out_dir, "features.json"), "w") as f:
        json.dump({"input": input_shape, "features": features}, f)


if __name__ == "__main__":
    main()
