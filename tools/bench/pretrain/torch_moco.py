"""PyTorch reference for the pretraining benchmark: one MoCo v2 step, as emseg's MocoV2 method does it.

momentum update of the key network, keys with shuffle-BN emulated in sub-batches, query forward +
InfoNCE (queue K) + backward, SGD (momentum 0.9, wd 1e-4), enqueue. torchvision-layout ResNet from
tools/import-torch/torch_resnet.py with a 1-channel stem and a 2-layer MLP head.
Prints JSON: {"framework": "pytorch", "results": [{"arch", "size", "batch", "msPerStep", "imagesPerSec", "phasesMs"}]},
phasesMs: the median per phase, each timed to a sync, as tools/bench/pretrain/profile-moco.mjs cuts emseg's step.
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "import-torch"))
from torch_resnet import ResNet  # noqa: E402


class Branch(nn.Module):
    def __init__(self, depth, dim=128):
        super().__init__()
        self.encoder = ResNet(depth, in_channels=1)
        feat = self.encoder.fc.in_features
        self.encoder.fc = nn.Identity()
        self.head = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(inplace=True), nn.Linear(feat, dim))

    def forward(self, x):
        return F.normalize(self.head(self.encoder(x)), dim=1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(depth, size, batch, steps, warmup, queue_size=4096, groups=2, m=0.99, t=0.2, device=torch.device("cpu")):
    torch.manual_seed(0)
    q_net = Branch(depth).to(device)
    k_net = copy.deepcopy(q_net)
    for p in k_net.parameters():
        p.requires_grad = False
    opt = torch.optim.SGD(q_net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    queue = F.normalize(torch.randn(queue_size, 128, device=device), dim=1)
    ptr = 0
    xq = torch.randn(batch, 1, size, size, device=device)
    xk = torch.randn(batch, 1, size, size, device=device)
    times = []
    phases = {name: [] for name in ("momentum", "keyForward", "queryForwardBackward", "sgd", "enqueue")}
    for i in range(warmup + steps):
        marks = [time.perf_counter()]

        def mark():
            sync(device)
            marks.append(time.perf_counter())

        with torch.no_grad():
            for pk, pq in zip(k_net.parameters(), q_net.parameters()):
                pk.mul_(m).add_(pq.detach(), alpha=1 - m)
            mark()
            perm = torch.randperm(batch, device=device)
            k = torch.cat([k_net(c) for c in xk[perm].chunk(groups)])[torch.argsort(perm)]
            mark()
        q = q_net(xq)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / t
        loss = F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        opt.step()
        mark()
        queue[ptr : ptr + batch] = k
        ptr = (ptr + batch) % queue_size
        loss.item()
        mark()
        if i >= warmup:
            times.append((marks[-1] - marks[0]) * 1000)
            for j, name in enumerate(phases):
                phases[name].append((marks[j + 1] - marks[j]) * 1000)
    ms = statistics.median(times)
    return {"arch": f"resnet{depth}", "size": size, "batch": batch, "msPerStep": ms, "imagesPerSec": batch * 1000 / ms, "stepsMs": times,
            "phasesMs": {name: statistics.median(v) for name, v in phases.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="18:64:32,18:224:16,50:224:16", help="depth:size:batch,...")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--queue", type=int, default=4096, help="MoCo queue size K")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("EMSEG_BENCH_THREADS", os.cpu_count())))
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # TensorFlow autotunes its convolutions too
    results = []
    for case in a.cases.split(","):
        d, s, b = (int(v) for v in case.split(":"))
        results.append(bench(d, s, b, a.steps, a.warmup, queue_size=a.queue, device=device))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(json.dumps({"framework": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "device": a.device, "gpu": gpu, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None, "results": results}))


if __name__ == "__main__":
    main()
