"""PyTorch twin of emseg's MoCo v2 pretraining, for the `pretrain` task of bench:quality.

Trains a torchvision-layout ResNet (tools/import-torch/torch_resnet.py, 1-channel stem) with MoCo v2
following a resolved emseg pretraining config (the `config.json` that emseg's `pretrain moco`
writes, K resolved), as apps/pretrain does it (mocov2.ts, moco.ts, pretrain.ts):

- the batches are emseg's own: emseg-views.mjs dumps (before training) the view batches of libs/data's
  `UnlabeledCrops.stream` (run seed, epoch order, CEM500K-style augmentation, normalisation) for
  every step, so step s of both sides trains on the same pixels;
- query network = encoder + projection head Linear(F, hidden) -> ReLU -> Linear(hidden, dim)
  (hidden = moco.mlpHidden or the encoder's feature width), L2-normalised outputs; the key network
  starts as an exact copy and follows by theta_k <- m theta_k + (1 - m) theta_q on the parameters
  (BN running statistics are the key network's own), updated before the keys are computed;
- keys with single-device shuffle-BN: the key batch is permuted by emseg's seeded permutation
  (libs/data Rng(train.seed * 1000003 + step).permutation, ported bit-exactly), normalised in
  moco.shuffleGroups contiguous sub-batches and put back in order;
- InfoNCE logits [q.k+, q.queue^T] / T, cross-entropy with the positive at index 0; the queue of K
  keys starts as L2-normalised Gaussian rows and is overwritten FIFO at a pointer after each step;
- SGD (momentum, weight decay on every parameter, torch semantics as emseg's Sgd) on the query
  network, at emseg's schedule: linear warm-up base * (s + 1) / W for s < W = round(warmupEpochs *
  stepsPerEpoch), then half-cosine to 0 over the remaining steps (libs/training schedules.ts), or
  the step schedule;
- initialisation as emseg's: encoder convs He normal fan-out truncated at 2 sd (tfjs
  varianceScaling 'normal'), BN 1 / 0, momentum 0.1, eps 1e-5; head Linear as torch's default
  (U(+-1/sqrt(fan_in)) for weight and bias, which is what emseg's projectionHead draws).

Writes a checkpoint in the CEM500K layout ({"state_dict": {"module.encoder_q.<torchvision key>": ...},
"norms": [mean, std]}) that tools/import-torch turns into an emseg encoder bundle.

  python torch_moco_train.py --config cfg.json --data CROPS --crops N --out ckpt.pth [--threads 2] [--seed S]
      [--max-steps N --save-init init.pth --keep-views --views FILE]   (the step-parity check, moco-parity.mjs)

Prints one JSON object on stdout; progress goes to stderr.
"""
import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", ".."))
sys.path.insert(0, os.path.join(root, "tools", "import-torch"))
sys.path.insert(0, os.path.join(root, "tools", "bench", "quality"))
from torch_resnet import ResNet  # noqa: E402
from torch_quality import Rng  # noqa: E402  (libs/data's sfc32, bit-exact)

DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}


def log(msg):
    sys.stderr.write(f"{msg}\n")
    sys.stderr.flush()


def js_round(v):
    return math.floor(v + 0.5)


def permutation(n, seed):
    """libs/data Rng.permutation (Fisher-Yates), as moco.ts `permutation`."""
    rng = Rng(seed)
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.int(i + 1)
        p[i], p[j] = p[j], p[i]
    return p


class Branch(nn.Module):
    def __init__(self, depth, hidden, dim):
        super().__init__()
        self.encoder = ResNet(depth, in_channels=1)
        feat = self.encoder.fc.in_features
        del self.encoder.fc
        self.head = nn.Sequential(nn.Linear(feat, hidden if hidden else feat), nn.ReLU(inplace=True), nn.Linear(hidden if hidden else feat, dim))

    def embed(self, x):
        f = self.encoder.features(x)[-1].mean(dim=(2, 3))
        return F.normalize(self.head(f), dim=1, eps=1e-12)


def emseg_init(branch):
    for m in branch.encoder.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            std = math.sqrt(2.0 / fan_out)
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.momentum = 0.1
            m.eps = 1e-5
    for m in branch.head.modules():
        if isinstance(m, nn.Linear):
            bound = 1 / math.sqrt(m.in_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.uniform_(m.bias, -bound, bound)


def lr_schedule(cfg, steps_per_epoch, total_steps):
    o = cfg["optimizer"]
    base = o["lr"]
    warmup = js_round(o["warmupEpochs"] * steps_per_epoch)
    if o["schedule"] == "cosine":

        def after(s):
            t = min(1, (s - warmup) / max(1, total_steps - 1 - warmup))
            return 0.5 * base * (1 + math.cos(math.pi * t))

    else:
        milestones = [js_round(e * steps_per_epoch) for e in o["milestones"]]

        def after(s):
            return base * o["gamma"] ** len([m for m in milestones if s >= m])

    return lambda s: base * (s + 1) / warmup if s < warmup else after(s)


def check_recipe(cfg):
    problems = []
    if cfg.get("method", "mocov2") != "mocov2":
        problems.append(f"method = {cfg.get('method')!r} (supported: mocov2)")
    if cfg["encoder"]["architecture"] not in DEPTHS:
        problems.append(f"encoder.architecture = {cfg['encoder']['architecture']!r} (supported: {sorted(DEPTHS)})")
    if not isinstance(cfg["moco"]["queueSize"], int):
        problems.append(f"moco.queueSize = {cfg['moco']['queueSize']!r} (resolve \"auto\" first)")
    if cfg["encoder"].get("inChannels", 1) != 1:
        problems.append("encoder.inChannels != 1")
    if problems:
        raise SystemExit("torch_moco_train.py: the twin does not implement " + "; ".join(problems))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True, help="the crops folder emseg trains on")
    ap.add_argument("--crops", type=int, required=True, help="how many crops emseg lists in --data (steps per epoch = crops // batch)")
    ap.add_argument("--out", required=True, help="checkpoint (.pth) to write")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None, help="torch.manual_seed (default: train.seed)")
    ap.add_argument("--node", default="node")
    ap.add_argument("--views", default=None, help="where to dump emseg's view batches (default: beside --out)")
    ap.add_argument("--keep-views", action="store_true")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps (the schedule still spans the run): the step-parity check")
    ap.add_argument("--save-init", default=None, help="torch.save the initial query network and queue here (moco-parity.mjs loads them into emseg)")
    a = ap.parse_args()
    cfg = json.load(open(a.config))
    check_recipe(cfg)
    seed = cfg["train"]["seed"] if a.seed is None else a.seed
    torch.set_num_threads(a.threads)
    torch.manual_seed(seed)

    bs = cfg["train"]["batchSize"]
    size = cfg["data"]["cropSize"]
    moco = cfg["moco"]
    crops = a.crops
    steps_per_epoch = crops // bs
    epoch_steps = math.ceil(cfg["train"]["epochs"] * steps_per_epoch)
    max_steps = cfg["train"].get("maxSteps")
    total = epoch_steps if max_steps is None else min(max_steps, epoch_steps)
    lr_at = lr_schedule(cfg, steps_per_epoch, total)
    groups = moco["shuffleGroups"]
    m, T, K = moco["momentum"], moco["temperature"], moco["queueSize"]

    q_net = Branch(DEPTHS[cfg["encoder"]["architecture"]], moco["mlpHidden"], moco["dim"])
    emseg_init(q_net)
    k_net = copy.deepcopy(q_net)
    for p in k_net.parameters():
        p.requires_grad = False
    q_net.train()
    k_net.train()
    o = cfg["optimizer"]
    opt = torch.optim.SGD(q_net.parameters(), lr=o["lr"], momentum=o["momentum"], weight_decay=o["weightDecay"])
    queue = F.normalize(torch.randn(K, moco["dim"]), dim=1)
    ptr = 0
    if a.save_init:
        init = {f"module.encoder_q.{k}": v.clone() for k, v in q_net.encoder.state_dict().items()}
        init.update({f"head.{k}": v.clone() for k, v in q_net.head.state_dict().items()})
        init["queue"] = queue.clone()
        torch.save({"state_dict": init, "norms": [cfg["data"]["mean"], cfg["data"]["std"]]}, a.save_init)
    run_steps = total if a.max_steps is None else min(total, a.max_steps)
    q_params = list(q_net.parameters())
    k_params = list(k_net.parameters())

    # emseg's batches, dumped before training: a loader running beside torch's two OpenMP threads on
    # two cores slows every step several-fold (the threads spin-wait for a preempted peer).
    views_file = a.views or os.path.splitext(os.path.abspath(a.out))[0] + ".views.f32"
    t0 = tv = time.perf_counter()
    with open(views_file, "wb") as f:
        dump = subprocess.run(
            [a.node, os.path.join(here, "emseg-views.mjs"), "--config", a.config, "--data", a.data, "--steps", str(run_steps)],
            stdout=f,
            stderr=subprocess.PIPE,
            cwd=root,
        )
    if dump.returncode != 0:
        raise SystemExit(f"torch_moco_train.py: emseg-views.mjs exited {dump.returncode}: {dump.stderr.decode()[-1500:]}")
    views_seconds = time.perf_counter() - tv
    view_bytes = bs * size * size * 4
    if os.path.getsize(views_file) != run_steps * 2 * view_bytes:
        raise SystemExit(f"torch_moco_train.py: {views_file} has {os.path.getsize(views_file)} bytes, expected {run_steps} steps x {2 * view_bytes}")
    batches = np.memmap(views_file, dtype="<f4", mode="r", shape=(run_steps, 2, bs, 1, size, size))
    log(f"torch: MoCo v2 {cfg['encoder']['architecture']}, {crops} crops, {total} steps of {bs} x {size} px, K {K}, m {m}, T {T}, {torch.get_num_threads()} threads, seed {seed}")
    losses, pos_sims, neg_sims, lrs = [], [], [], []
    train_seconds = 0.0
    for step in range(run_steps):
        arr = batches[step]
        xq = torch.from_numpy(arr[0].copy())
        xk = torch.from_numpy(arr[1].copy())
        ts = time.perf_counter()
        lr = lr_at(step)
        with torch.no_grad():
            for pk, pq in zip(k_params, q_params):
                pk.mul_(m).add_(pq.detach(), alpha=1 - m)
            perm = torch.tensor(permutation(bs, cfg["train"]["seed"] * 1_000_003 + step))
            inverse = torch.argsort(perm)
            k = torch.cat([k_net.embed(c) for c in xk[perm].chunk(groups)])[inverse]
        q = q_net.embed(xq)
        pos = (q * k).sum(1, keepdim=True)
        neg = q @ queue.T
        logits = torch.cat([pos, neg], 1) / T
        loss = F.cross_entropy(logits, torch.zeros(bs, dtype=torch.long))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            queue[ptr : ptr + bs] = k
        ptr = (ptr + bs) % K
        losses.append(float(loss.item()))
        pos_sims.append(float(pos.detach().mean()))
        neg_sims.append(float(neg.detach().mean()))
        lrs.append(lr)
        train_seconds += time.perf_counter() - ts
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"torch_moco_train.py: loss became {losses[-1]} at step {step + 1}")
        if (step + 1) % 20 == 0 or step == 0 or step + 1 == run_steps:
            log(f"torch moco step {step + 1}/{run_steps} loss {losses[-1]:.4f} pos {pos_sims[-1]:.3f} neg {neg_sims[-1]:.3f} lr {lr:.4f}")
    del batches
    if not a.keep_views:
        os.remove(views_file)
    state = {f"module.encoder_q.{k}": v for k, v in q_net.encoder.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.save({"state_dict": state, "norms": [cfg["data"]["mean"], cfg["data"]["std"]], "steps": total}, a.out)
    last = losses[-10:]
    print(
        json.dumps(
            {
                "framework": "pytorch",
                "version": torch.__version__,
                "threads": torch.get_num_threads(),
                "seed": seed,
                "steps": run_steps,
                "totalSteps": total,
                "stepsPerEpoch": steps_per_epoch,
                "lastLoss": losses[-1],
                "meanLossLast10": sum(last) / len(last),
                "posSimLast10": sum(pos_sims[-10:]) / len(last),
                "negSimLast10": sum(neg_sims[-10:]) / len(last),
                "lossEvery10": [round(v, 4) for v in losses[::10]],
                "trainSeconds": round(train_seconds, 2),
                "msPerStep": round(1000 * train_seconds / max(1, run_steps), 1),
                **({"losses": losses, "posSims": pos_sims, "negSims": neg_sims, "lrs": lrs} if a.max_steps is not None else {}),
                "wallSeconds": round(time.perf_counter() - t0, 2),
                "viewsSeconds": round(views_seconds, 2),
                "checkpoint": os.path.abspath(a.out),
            }
        )
    )


if __name__ == "__main__":
    main()
