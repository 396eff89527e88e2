"""Make stand-ins for the two released CEM ResNet-50 checkpoints, laid out as cem-dataset's
pretraining scripts save them, and the eval-mode features of the encoder they hold.

    python cem_checkpoints.py OUT_DIR --layout mocov2|swav [--size 64 64] [--batch 1] [--seed 0]
        [--queue 65536] [--legacy-format]

--layout mocov2   cem500k_mocov2_resnet50_200ep.pth.tar (pretraining/mocov2/train_mocov2.py):
                  {"epoch", "arch", "state_dict", "optimizer", "norms": [mean, std]}; the state_dict
                  is the DDP-wrapped MoCo model: module.encoder_q.* (the query ResNet-50, 1 input
                  channel, fc = 2-layer MLP head fc.0 / fc.2), module.encoder_k.* (the key encoder,
                  complete, with other weights), module.queue [128, K], module.queue_ptr (int64).
--layout swav     cem1.5m_swav_resnet50_200ep_balanced.pth.tar (pretraining/swav/train_swav.py):
                  {"epoch", "state_dict", "optimizer", "run_id", "norms": [mean, std], "scaler"};
                  the state_dict is the DDP-wrapped SwAV ResNet-50: module.conv1 ... module.layer4
                  (no fc), module.projection_head.{0,1,3}.* (Linear, BatchNorm1d, Linear) and
                  module.prototypes.weight [3000, 128].

The weights are random (BN statistics far from the identity, as in reference_features.py); the
norms are the values of the released configs. The reference features are those of the encoder the
importer must pick: the query encoder for MoCo; for SwAV computed as SwAV's own forward does it
(zero-pad 1, then conv1 with padding 2), which equals torchvision's padding 3. Writes
OUT_DIR/<release file name>, input.bin and features.json + feature_<i>.bin (see reference_features.py).
--legacy-format saves with torch's pre-1.6 (non-zip) serialisation; --queue sets the MoCo queue length.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_features import randomize_batch_norms, write_reference  # noqa: E402
from torch_resnet import ResNet  # noqa: E402

FILES = {"mocov2": "cem500k_mocov2_resnet50_200ep.pth.tar", "swav": "cem1.5m_swav_resnet50_200ep_balanced.pth.tar"}
# The norms of pretraining/mocov2/mocov2_config.yaml and pretraining/swav/swav_config.yaml.
NORMS = {"mocov2": [0.57287007, 0.12740536], "swav": [0.575710, 0.127650]}


def backbone(generator: torch.Generator) -> ResNet:
    model = ResNet(50, in_channels=1)
    randomize_batch_norms(model, generator)
    return model.eval()


def sgd_state(params: list[nn.Parameter], **hyper) -> dict:
    """An SGD state_dict as torch.save'd mid-training: param groups plus one momentum buffer."""
    optimizer = torch.optim.SGD(params, **hyper)
    state = optimizer.state_dict()
    state["state"][0] = {"momentum_buffer": torch.zeros_like(params[0])}
    return state


def mocov2(generator: torch.Generator, queue: int) -> tuple[dict, ResNet]:
    query, key = backbone(generator), backbone(generator)
    for encoder in (query, key):
        encoder.fc = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))
    state_dict = OrderedDict()
    for name, encoder in (("encoder_q", query), ("encoder_k", key)):
        state_dict.update({f"module.{name}.{k}": v for k, v in encoder.state_dict().items()})
    state_dict["module.queue"] = F.normalize(torch.randn(128, queue, generator=generator), dim=0)
    state_dict["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    params = list(query.parameters()) + list(key.parameters())
    checkpoint = {
        "epoch": 200,
        "arch": "resnet50",
        "state_dict": state_dict,
        "optimizer": sgd_state(params, lr=0.015, momentum=0.9, weight_decay=1e-4),
        "norms": NORMS["mocov2"],
    }
    return checkpoint, query


def swav(generator: torch.Generator) -> tuple[dict, ResNet]:
    model = backbone(generator)
    del model.fc
    projection_head = nn.Sequential(nn.Linear(2048, 2048), nn.BatchNorm1d(2048), nn.ReLU(), nn.Linear(2048, 128))
    prototypes = nn.Linear(128, 3000, bias=False)
    state_dict = OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    state_dict.update((f"module.projection_head.{k}", v) for k, v in projection_head.state_dict().items())
    state_dict.update((f"module.prototypes.{k}", v) for k, v in prototypes.state_dict().items())
    params = list(model.parameters()) + list(projection_head.parameters()) + list(prototypes.parameters())
    checkpoint = {
        "epoch": 200,
        "state_dict": state_dict,
        "optimizer": sgd_state(params, lr=0.6, momentum=0.9, weight_decay=1e-6),
        "run_id": "0123456789abcdef0123456789abcdef",
        "norms": NORMS["swav"],
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0},
    }
    return checkpoint, model


def swav_features(model: ResNet, x: torch.Tensor) -> list[torch.Tensor]:
    """model.features(x) with SwAV's stem: ConstantPad2d(1) and then conv1 with padding 2."""
    conv = model.conv1
    x = model.relu(model.bn1(F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, stride=conv.stride, padding=2)))
    out = [x]
    x = model.maxpool(x)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        out.append(x)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--layout", choices=sorted(FILES), required=True)
    p.add_argument("--size", type=int, nargs=2, default=[64, 64])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queue", type=int, default=65536)
    p.add_argument("--legacy-format", action="store_true")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint, encoder = mocov2(generator, args.queue) if args.layout == "mocov2" else swav(generator)
    os.makedirs(args.out_dir, exist_ok=True)
    torch.save(checkpoint, os.path.join(args.out_dir, FILES[args.layout]), _use_new_zipfile_serialization=not args.legacy_format)

    x = torch.rand(args.batch, 1, *args.size, generator=generator)
    with torch.no_grad():
        maps = encoder.features(x) if args.layout == "mocov2" else swav_features(encoder, x)
    write_reference(args.out_dir, x, maps)


if __name__ == "__main__":
    main()
