"""PyTorch twin of emseg's fine-tuning recipe, for the training-quality benchmark (bench-quality.mjs).

It trains tools/bench/torch_reference.py's U-Net (ResNet encoder, smp-style decoder) with its
focal + dice loss, following a resolved emseg fine-tuning config (the same JSON that emseg's
`finetune urisc` runs with) as closely as it can:

- the batches are emseg's own: libs/data's sfc32 generator, seed derivation, random patch planning
  with foreground oversampling (images drawn by area, a forced foreground pixel placed uniformly in
  the patch) and the URISC augmentation (one affine map: rotation, zoom, translation, flips,
  90-degree turns; bilinear image / nearest mask with reflect borders; brightness, contrast,
  gamma) are ported number for number, so step s trains on the same patches (`parity` checks it
  against batches that emseg dumped);
- initialisation as emseg's: encoder convs He normal fan-out truncated at 2 sd (tfjs
  varianceScaling 'normal' is a truncated normal), decoder convs He uniform fan-in, head Glorot
  uniform with zero bias, BN gamma 1 / beta 0, momentum 0.1, eps 1e-5;
- Adam (0.9, 0.999, 1e-8) at the config's constant lr, input (x - mean) / std;
- validation every `validation.every` steps and at the end, by full-image tiled inference
  (reflect padding overlap / 2, Gaussian blending sigma = tile / 8), binarised at
  `inference.threshold` and at each of `validation.thresholds` (membrane where p >= t), scored
  with the official U-RISC F1 (with its 5x background rule) and a threshold sweep; the chosen
  threshold is the one with the best mean official F1 (ties: nearest inference.threshold, then the
  lower), and the best model is the highest official F1 at its chosen threshold, ties broken by the
  sweep F1, exactly as libs/segmentation/src/finetune.ts and evaluate.ts select them;
- the best model predicts the test images at its chosen threshold into binary submissions (foreground black 0 on white
  255) that the benchmark scores with emseg's scorer.

  python torch_quality.py train --config cfg.json --data ROOT --seed 0 --pred-out DIR [--threads 2]
  python torch_quality.py parity --config cfg.json --data ROOT --seed 0 --dump DIR
  python torch_quality.py mito-data --out DIR [--seed 7] [--size 512] [--train 6 --val 2 --test 2]

Each command prints one JSON object on stdout; progress goes to stderr.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_reference import UNet, blend_weights, focal_dice_loss, grid_offsets  # noqa: E402

M32 = 0xFFFFFFFF


def log(msg):
    sys.stderr.write(f"{msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# libs/data/src/random.ts: fmix32, deriveSeed, sfc32 Rng (bit-exact)
# --------------------------------------------------------------------------------------------


def imul(a, b):
    return (a * b) & M32


def fmix32(h):
    h &= M32
    h ^= h >> 16
    h = imul(h, 0x85EBCA6B)
    h ^= h >> 13
    h = imul(h, 0xC2B2AE35)
    h ^= h >> 16
    return h


def derive_seed(*parts):
    h = 0x9E3779B9
    for part in parts:
        p = math.trunc(part)
        lo = p & M32
        hi = math.floor(p / 4294967296) & M32
        h = fmix32(imul(h ^ fmix32(lo), 0x27D4EB2F) ^ fmix32(hi + 0x165667B1))
    return h


class Rng:
    def __init__(self, seed):
        s = derive_seed(seed)
        self.a = s
        self.b = fmix32(s ^ 0x85EBCA6B)
        self.c = fmix32(s ^ 0xC2B2AE35)
        self.d = 1
        for _ in range(12):
            self.next_u32()

    def next_u32(self):
        t = (self.a + self.b + self.d) & M32
        self.d = (self.d + 1) & M32
        self.a = self.b ^ (self.b >> 9)
        self.b = (self.c + (self.c << 3)) & M32
        self.c = ((self.c << 21) | (self.c >> 11)) & M32
        self.c = (self.c + t) & M32
        return t

    def next(self):
        return self.next_u32() / 4294967296

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.next()

    def int(self, n):
        return math.floor(self.next() * n)

    def chance(self, p):
        return self.next() < p

    def nextU32(self):  # noqa: N802 (the TypeScript name)
        return self.next_u32()


# --------------------------------------------------------------------------------------------
# libs/data: patch planning (labeled-patches.ts, patches.ts) and augmentation (augment.ts,
# affine.ts, warp.ts, filters.ts)
# --------------------------------------------------------------------------------------------


def place_axis(length, size, rng, must_contain):
    if length <= size:
        return -((size - length) // 2)
    max_start = length - size
    if must_contain is None:
        return rng.int(max_start + 1)
    lo = max(0, must_contain - size + 1)
    hi = min(max_start, must_contain)
    return lo + rng.int(hi - lo + 1)


class Sample:
    def __init__(self, name, image, mask):
        self.name = name
        self.image = image  # uint8 [h, w]
        self.mask = mask  # uint8 0/1 [h, w]
        self._fg = None

    @property
    def height(self):
        return self.image.shape[0]

    @property
    def width(self):
        return self.image.shape[1]

    def foreground(self):
        if self._fg is None:
            self._fg = np.flatnonzero(self.mask.ravel())
        return self._fg


def plan_random_patches(samples, size, seed, epoch, count, fg_prob):
    rng = Rng(derive_seed(seed, epoch, 0x9A7C4))
    areas = [s.width * s.height for s in samples]
    total = sum(areas)
    plan = []
    for _ in range(count):
        pick = rng.uniform(0, total)
        k = 0
        while k < len(samples) - 1 and pick >= areas[k]:
            pick -= areas[k]
            k += 1
        s = samples[k]
        pixel = None
        if fg_prob > 0 and rng.chance(fg_prob):
            fg = s.foreground()
            if len(fg) > 0:
                i = int(fg[rng.int(len(fg))])
                pixel = (i % s.width, i // s.width)
        x = place_axis(s.width, size, rng, None if pixel is None else pixel[0])
        y = place_axis(s.height, size, rng, None if pixel is None else pixel[1])
        plan.append((k, x, y))
    return plan


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def compose(*maps):
    m = IDENTITY
    for n in maps:
        m = (
            m[0] * n[0] + m[1] * n[3],
            m[0] * n[1] + m[1] * n[4],
            m[0] * n[2] + m[1] * n[5] + m[2],
            m[3] * n[0] + m[4] * n[3],
            m[3] * n[1] + m[4] * n[4],
            m[3] * n[2] + m[4] * n[5] + m[5],
        )
    return tuple(v + 0.0 for v in m)


def translation(tx, ty):
    return (1.0, 0.0, float(tx), 0.0, 1.0, float(ty))


def scaling(sx, sy):
    return (float(sx), 0.0, 0.0, 0.0, float(sy), 0.0)


def js_round(v):
    return math.floor(v + 0.5)


def rotation_about(radians, cx, cy):
    cos, sin = math.cos(radians), math.sin(radians)
    c = 0.0 if abs(cos) < 1e-12 else js_round(cos * 1e12) / 1e12
    s = 0.0 if abs(sin) < 1e-12 else js_round(sin * 1e12) / 1e12
    return compose(translation(cx, cy), (c, -s, 0.0, s, c, 0.0), translation(-cx, -cy))


def sample_urisc_augmentation(rng, spec, region, width, height):
    """augment.ts sampleAugmentation for the fields the URISC spec uses, in its draw order."""
    rx, ry, rw, rh = region
    rot = spec.get("rotation")
    theta = (rng.uniform(-1, 1) * rot["maxDegrees"] * math.pi) / 180 if rot and rng.chance(rot["p"]) else 0
    box = [0.0, 0.0, float(rw), float(rh)]
    if spec.get("zoom"):
        lo, hi = spec["zoom"]
        z = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        box = [(rw - rw / z) / 2, (rh - rh / z) / 2, rw / z, rh / z]
    if spec.get("translate"):
        t = spec["translate"]
        box[0] += rng.uniform(-t, t) * box[2]
        box[1] += rng.uniform(-t, t) * box[3]
    hflip = rng.chance(spec["horizontalFlip"]) if spec.get("horizontalFlip") else False
    vflip = rng.chance(spec["verticalFlip"]) if spec.get("verticalFlip") else False
    quarter = (rng.int(4) if width == height else 2 * rng.int(2)) if spec.get("rotate90") else 0
    flips = (-1.0 if hflip else 1.0, 0.0, float(width) if hflip else 0.0, 0.0, -1.0 if vflip else 1.0, float(height) if vflip else 0.0)
    transform = compose(
        translation(rx, ry),
        translation(0, 0) if theta == 0 else rotation_about(theta, rw / 2, rh / 2),
        translation(box[0], box[1]),
        scaling(box[2] / width, box[3] / height),
        translation(0, 0) if quarter == 0 else rotation_about((quarter * math.pi) / 2, width / 2, height / 2),
        flips,
    )

    def jitter(strength):
        return rng.uniform(max(0, 1 - strength), 1 + strength) if strength else 1

    brightness = jitter(spec.get("brightness"))
    contrast = jitter(spec.get("contrast"))
    gamma = math.exp(rng.uniform(math.log(spec["gamma"][0]), math.log(spec["gamma"][1]))) if spec.get("gamma") else 1
    rng.next_u32()  # noiseSeed (no blur / noise in the URISC spec)
    return transform, brightness, contrast, gamma


URISC_AUGMENTATION = {
    "horizontalFlip": 0.5,
    "verticalFlip": 0.5,
    "rotate90": True,
    "rotation": {"maxDegrees": 45, "p": 0.3},
    "zoom": [0.8, 1.25],
    "translate": 0.1,
    "brightness": 0.2,
    "contrast": 0.2,
    "gamma": [0.8, 1.25],
}


def reflect_index(i, n):
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    m = np.mod(i, period)
    return np.where(m < n, m, period - m)


def _positions(m, out_w, out_h, offset):
    """Source coordinates of every output pixel, accumulated along rows as warp.ts does (x += a)."""
    a, b, c, d, e, f = m
    vy = np.arange(out_h, dtype=np.float64) + 0.5
    x0 = a * 0.5 + b * vy + c - offset
    y0 = d * 0.5 + e * vy + f - offset
    xs = np.empty((out_h, out_w), dtype=np.float64)
    ys = np.empty((out_h, out_w), dtype=np.float64)
    xs[:, 0], xs[:, 1:] = x0, a
    ys[:, 0], ys[:, 1:] = y0, d
    return np.add.accumulate(xs, axis=1), np.add.accumulate(ys, axis=1)


def warp_bilinear(src, m, out_w, out_h, scale):
    h, w = src.shape
    x, y = _positions(m, out_w, out_h, 0.5)
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    xa, xb = reflect_index(x0, w), reflect_index(x0 + 1, w)
    ya, yb = reflect_index(y0, h), reflect_index(y0 + 1, h)
    s = src.astype(np.float64)
    v00, v01, v10, v11 = s[ya, xa], s[ya, xb], s[yb, xa], s[yb, xb]
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    return (scale * (top + fy * (bottom - top))).astype(np.float32)


def warp_nearest(src, m, out_w, out_h):
    h, w = src.shape
    x, y = _positions(m, out_w, out_h, 0.0)
    xi = reflect_index(np.floor(x).astype(np.int64), w)
    yi = reflect_index(np.floor(y).astype(np.int64), h)
    return src[yi, xi]


def photometric(img, brightness, contrast, gamma):
    """filters.ts adjustBrightnessContrast then adjustGamma (float32 storage between steps)."""
    if not (brightness == 1 and contrast == 1):
        v = np.clip(img.astype(np.float64) * brightness, 0, 1)
        total = np.add.accumulate(v.ravel())[-1]  # sequential, as the TypeScript loop sums
        img = v.astype(np.float32)
        if contrast != 1:
            offset = (1 - contrast) * (total / img.size)
            img = np.clip(contrast * img.astype(np.float64) + offset, 0, 1).astype(np.float32)
    if gamma != 1:
        img = np.power(np.maximum(img.astype(np.float64), 0), gamma).astype(np.float32)
    return img


def epoch_batches(samples, cfg, epoch, batch_size, per_epoch):
    p = cfg["patches"]
    size = p["size"]
    seed = cfg["train"]["seed"]
    plan = plan_random_patches(samples, size, seed, epoch, per_epoch * batch_size, p["foregroundProbability"])
    end = len(plan) - len(plan) % batch_size
    for start in range(0, end, batch_size):
        images, masks = [], []
        for k, (i, x, y) in enumerate(plan[start : start + batch_size]):
            s = samples[i]
            if p["augmentation"] == "urisc":
                tr, br, co, ga = sample_urisc_augmentation(Rng(derive_seed(seed, epoch, start + k)), URISC_AUGMENTATION, (x, y, size, size), size, size)
                images.append(photometric(warp_bilinear(s.image, tr, size, size, 1 / 255), br, co, ga))
                masks.append(warp_nearest(s.mask, tr, size, size))
            else:
                ys = reflect_index(np.arange(y, y + size), s.height)
                xs = reflect_index(np.arange(x, x + size), s.width)
                images.append((s.image[np.ix_(ys, xs)] * (1 / 255)).astype(np.float32))
                masks.append(s.mask[np.ix_(ys, xs)])
        yield np.stack(images), np.stack(masks)


def batches_per_epoch(samples, p, batch_size):
    def grid(n):
        if n <= p["size"]:
            return 1
        return len(range(0, n - p["size"], p["stride"])) + 1

    patches = sum(grid(s.width) * grid(s.height) for s in samples)
    if p["sampling"] == "random" and p["perEpoch"] is not None:
        patches = p["perEpoch"]
    return patches // batch_size


# --------------------------------------------------------------------------------------------
# Data on disk (U-RISC layout), as apps/finetune/src/urisc-data.ts opens it
# --------------------------------------------------------------------------------------------

IMAGE_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def list_stems(folder):
    out = {}
    for f in os.listdir(folder):
        stem, ext = os.path.splitext(f)
        if ext.lower() in IMAGE_EXT:
            out[stem] = os.path.join(folder, f)
    return out


def read_grey8(path):
    im = Image.open(path)
    a = np.array(im)
    if a.ndim == 3:
        a = np.array(im.convert("L"))
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    return a.astype(np.uint8)


def open_split(root, split, cfg):
    d = cfg["data"]
    track = d.get("track", "Track1")  # a `segment` config has no track: the U-RISC layout's one track
    imgs = list_stems(os.path.join(root, "imgs", track, split))
    labels = list_stems(os.path.join(root, "label", track, split))
    black = d["polarity"] == "black-foreground"
    out = []
    for stem in sorted(imgs):
        label = read_grey8(labels[stem])
        mask = ((label < d["labelThreshold"]) == black).astype(np.uint8)
        out.append(Sample(stem, read_grey8(imgs[stem]), mask))
        out[-1].label = label
        out[-1].path = imgs[stem]
    return out


# --------------------------------------------------------------------------------------------
# Model: torch_reference.UNet with emseg's initialisation
# --------------------------------------------------------------------------------------------


def emseg_init(model):
    for m in model.encoder.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            std = math.sqrt(2.0 / fan_out)
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
    for m in model.blocks.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.momentum = 0.1
            m.eps = 1e-5
    nn.init.xavier_uniform_(model.head.weight)
    nn.init.zeros_(model.head.bias)


# --------------------------------------------------------------------------------------------
# Inference (libs/data tiling.ts) and validation (apps/finetune/src/evaluate.ts)
# --------------------------------------------------------------------------------------------


def axis_offsets(length, tile, stride, padding):
    if length + 2 * padding <= tile:
        return [-((tile - length) // 2)]
    return [o - padding for o in grid_offsets(length + 2 * padding, tile, stride)]


@torch.no_grad()
def predict_image(model, image, inf, norm):
    """Blended-tile probabilities of a uint8 image, as predictTiled / TileStitcher compute them."""
    h, w = image.shape
    tile, overlap = inf["tileSize"], inf["overlap"]
    pad = overlap // 2
    stride = tile - overlap
    xs = axis_offsets(w, tile, stride, pad)
    ys = axis_offsets(h, tile, stride, pad)
    wt = blend_weights(tile, overlap, inf["window"]).astype(np.float64)
    acc = np.zeros((h, w), dtype=np.float64)
    model.eval()
    tiles = [(y, x) for y in ys for x in xs]
    bs = inf["batchSize"]
    for k in range(0, len(tiles), bs):
        group = tiles[k : k + bs]
        batch = []
        for y, x in group:
            ri = reflect_index(np.arange(y, y + tile), h)
            ci = reflect_index(np.arange(x, x + tile), w)
            batch.append(image[np.ix_(ri, ci)].astype(np.float32) / 255.0)
        t = torch.from_numpy(np.stack(batch)[:, None])
        p = torch.sigmoid(model((t - norm[0]) / norm[1]))[:, 0].numpy().astype(np.float64)
        for (y, x), pt in zip(group, p):
            r0, r1 = max(0, -y), min(tile, h - y)
            c0, c1 = max(0, -x), min(tile, w - x)
            acc[y + r0 : y + r1, x + c0 : x + c1] += pt[r0:r1, c0:c1] * np.outer(wt[r0:r1], wt[c0:c1])
    ny = np.zeros(h)
    nx = np.zeros(w)
    for o in ys:
        lo, hi = max(0, -o), min(tile, h - o)
        ny[o + lo : o + hi] += wt[lo:hi]
    for o in xs:
        lo, hi = max(0, -o), min(tile, w - o)
        nx[o + lo : o + hi] += wt[lo:hi]
    return (acc / np.outer(ny, nx)).astype(np.float32)


def urisc_prf(pred_match, pred_sum, gt_match, gt_sum):
    if pred_sum == 0 and gt_sum > 0:
        p, r = 1.0, 0.0
    elif pred_sum > 0 and gt_sum == 0:
        p, r = 0.0, 1.0
    elif pred_sum == 0 and gt_sum == 0:
        p, r = 1.0, 1.0
    else:
        p, r = pred_match / pred_sum, gt_match / gt_sum
    return p, r, (0.0 if p + r == 0 else 2 * p * r / (p + r))


def pixel_prf(pred, truth):
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return urisc_prf(tp, tp + fp, tp, tp + fn)  # the same empty-case conventions as scoresFromCounts


THRESHOLDS = [(k + 1) / 20 for k in range(19)]


def official_prf(pred, s, white):
    """Official U-RISC (P, R, F1, rejected) of a binary prediction; format rule: background >= 5x membrane."""
    membrane = int(np.count_nonzero(pred))
    background = pred.size - membrane
    if membrane > 0 and background / membrane < 5:
        p, r, _ = pixel_prf(pred, s.mask.astype(bool))
        return p, r, 0.0, True
    # competition convention: label read membrane-black (white-foreground labels inverted first), then v' = 255 - v
    gt_inv = s.label.astype(np.float64) if white else 255.0 - s.label.astype(np.float64)
    pred_match = 255.0 * float(np.count_nonzero(pred & (gt_inv != 0)))
    p, r, f1 = urisc_prf(pred_match, 255.0 * membrane, float(gt_inv[pred].sum()), float(gt_inv.sum()))
    return p, r, f1, False


def choose_threshold(scores, preferred):
    """Best mean task score; ties: nearest `preferred` (1e-9 slack), then the lower threshold (scores ascending)."""
    best = scores[0]
    for sc in scores[1:]:
        nearer = abs(sc["threshold"] - preferred) < abs(best["threshold"] - preferred) - 1e-9
        if sc["score"] > best["score"] or (sc["score"] == best["score"] and nearer):
            best = sc
    return best


def task_metric(cfg):
    """What selection compares, as emseg's command does: `segment` configs (a "metric" key) pixel IoU, `urisc` the official F1."""
    return cfg.get("metric", "f1")


def evaluate(model, samples, cfg, norm):
    """The task score (official U-RISC F1, or pixel IoU for `segment`) at the threshold and the candidates (chosen: the best) + sweep F1, per image means."""
    inf = cfg["inference"]
    metric = task_metric(cfg)
    if metric not in ("f1", "iou"):
        raise SystemExit(f"torch_quality.py: metric {metric!r} is not ported (f1, iou)")
    white = cfg["data"]["polarity"] == "white-foreground"
    tried = sorted(set([inf["threshold"], *cfg["validation"].get("thresholds", [(k + 1) / 10 for k in range(9)])]))
    sums = {t: np.zeros(4) for t in tried}
    t0 = time.perf_counter()
    rows = []
    curve = np.zeros(len(THRESHOLDS))
    for s in samples:
        prob = predict_image(model, s.image, inf, norm)
        pred = prob >= inf["threshold"]
        membrane = int(np.count_nonzero(pred))
        truth_mask = s.mask.astype(bool)

        def task_prf(binary):
            """(score, P, R, F1, rejected): the official U-RISC F1, or pixel IoU with pixel P/R/F1."""
            if metric == "iou":
                pp, rr, ff = pixel_prf(binary, truth_mask)
                return ff / (2 - ff), pp, rr, ff, False  # IoU = F1 / (2 - F1) per image, as emseg's pixel scores
            pp, rr, ff, rej = official_prf(binary, s, white)
            return ff, pp, rr, ff, rej

        score, p, r, f1, rejected = task_prf(pred)
        for t in tried:
            tsc, tp_, tr_, tf1, _ = task_prf(prob >= t)
            sums[t] += (tsc, tf1, tp_, tr_)
        p64 = prob.astype(np.float64)
        for k, t in enumerate(THRESHOLDS):
            curve[k] += pixel_prf(p64 >= t, truth_mask)[2]
        rows.append({"name": s.name, "score": score, "f1": f1, "precision": p, "recall": r, "rejected": bool(rejected), "predictedMembrane": membrane / pred.size})
    best = int(np.argmax(curve))  # first maximum, as evaluate.ts
    n = max(1, len(rows))
    by_threshold = [
        {"threshold": t, "score": float(v[0] / n), "f1": float(v[1] / n), "precision": float(v[2] / n), "recall": float(v[3] / n)} for t, v in sums.items()
    ]
    return {
        "chosen": choose_threshold(by_threshold, inf["threshold"]),
        "metric": metric,
        "score": sum(r["score"] for r in rows) / n,
        "f1": sum(r["f1"] for r in rows) / n,
        "precision": sum(r["precision"] for r in rows) / n,
        "recall": sum(r["recall"] for r in rows) / n,
        "bestF1": float(curve[best] / n),
        "bestThreshold": THRESHOLDS[best],
        "images": rows,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def check_recipe(cfg):
    """Refuse config values this twin does not implement (rather than silently training something else)."""
    problems = []
    want = {
        ("patches", "sampling"): ["random"],
        ("patches", "augmentation"): ["urisc", "none"],
        ("loss", "kind"): ["focal-dice"],
        ("loss", "alpha"): [None],
        ("optimizer", "kind"): ["adam"],
        ("optimizer", "schedule"): ["constant"],
        ("optimizer", "warmupSteps"): [0],
        ("model", "freezeEncoder"): ["none"],
        ("inference", "flipTta"): [False],
    }
    for (sec, key), ok in want.items():
        if cfg[sec][key] not in ok:
            problems.append(f"{sec}.{key} = {cfg[sec][key]!r} (supported: {ok})")
    if cfg["model"]["architecture"] not in ("resnet18", "resnet34", "resnet50"):
        problems.append(f"model.architecture = {cfg['model']['architecture']!r}")
    if problems:
        raise SystemExit("torch_quality.py: the twin does not implement " + "; ".join(problems))


def load_data(a, cfg):
    train = open_split(a.data, "train", cfg)
    val = open_split(a.data, "val", cfg)
    if not val:
        raise SystemExit("torch_quality.py: needs a val split (imgs/<track>/val); emseg's random hold-out is not ported")
    return train, val


def cmd_train(a):
    cfg = json.load(open(a.config))
    check_recipe(cfg)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    train, val = load_data(a, cfg)
    test_dir = os.path.join(a.data, "imgs", cfg["data"].get("track", "Track1"), "test")
    norm = (cfg["model"]["normalization"]["mean"], cfg["model"]["normalization"]["std"])
    model = UNet(cfg["model"]["architecture"], tuple(cfg["model"]["decoderChannels"]))
    emseg_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optimizer"]["lr"], betas=(0.9, 0.999), eps=1e-8)
    bs = cfg["train"]["batchSize"]
    steps = cfg["train"]["steps"]
    every = cfg["validation"]["every"]
    per_epoch = batches_per_epoch(train, cfg["patches"], bs)
    loss_cfg = cfg["loss"]
    log(f"torch: {len(train)} train, {len(val)} val images; {steps} steps of {bs} x {cfg['patches']['size']} px, {per_epoch} batches/epoch, seed {a.seed}, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    history, best, best_state, last_eval, losses = [], None, None, None, []
    train_seconds = 0.0
    step = 0
    epoch = 0

    def validate():
        nonlocal best, best_state, last_eval
        e = evaluate(model, val, cfg, norm)
        c = e["chosen"]
        better = best is None or c["score"] > best["score"] or (c["score"] == best["score"] and e["bestF1"] > best["bestF1"])
        if better:
            best = {"step": step, "score": c["score"], "f1": c["f1"], "bestF1": e["bestF1"], "threshold": c["threshold"]}
            best_state = copy.deepcopy(model.state_dict())
        last_eval = {"step": step, **{k: e[k] for k in ("metric", "score", "f1", "precision", "recall", "bestF1", "bestThreshold", "chosen")}}
        history.append({**last_eval, "best": bool(better), "seconds": round(e["seconds"], 2)})
        name = {"f1": "F1", "iou": "IoU"}[e["metric"]]
        log(
            f"torch step {step}: validation {name} {e['score']:.4f} (F1 {e['f1']:.4f}, P {e['precision']:.3f}, R {e['recall']:.3f}; best-threshold F1 {e['bestF1']:.4f} at {e['bestThreshold']}); chosen threshold {c['threshold']}: {name} {c['score']:.4f}{' - best so far' if better else ''}"
        )
        model.train()

    model.train()
    while step < steps:
        for images, masks in epoch_batches(train, cfg, epoch, bs, per_epoch):
            ts = time.perf_counter()
            x = (torch.from_numpy(images[:, None]) - norm[0]) / norm[1]
            y = torch.from_numpy(masks[:, None].astype(np.float32))
            opt.zero_grad(set_to_none=True)
            loss = focal_dice_loss(model(x), y, gamma=loss_cfg["gamma"], lam=loss_cfg["lambda"])
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
            train_seconds += time.perf_counter() - ts
            step += 1
            if not math.isfinite(losses[-1]):
                raise SystemExit(f"torch_quality.py: loss became {losses[-1]} at step {step}")
            if step % 10 == 0 or step == 1:
                log(f"torch step {step}/{steps} loss {losses[-1]:.4f}")
            if every > 0 and step % every == 0:
                validate()
            if step >= steps:
                break
        epoch += 1
    if last_eval is None or last_eval["step"] != step:
        validate()
    final_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    os.makedirs(a.pred_out, exist_ok=True)
    tp = time.perf_counter()
    predicted = []
    for stem, path in sorted(list_stems(test_dir).items()):
        image = read_grey8(path)
        prob = predict_image(model, image, cfg["inference"], norm)
        sub = np.where(prob >= best["threshold"], 0, 255).astype(np.uint8)
        Image.fromarray(sub).save(os.path.join(a.pred_out, f"{stem}.png"))
        predicted.append(stem)
    if a.save_model:
        torch.save({"best": best_state, "final": final_state}, a.save_model)
    print(
        json.dumps(
            {
                "framework": "pytorch",
                "version": torch.__version__,
                "threads": torch.get_num_threads(),
                "seed": a.seed,
                "steps": step,
                "lastLoss": losses[-1],
                "meanLossLast10": sum(losses[-10:]) / len(losses[-10:]),
                "validation": history,
                "best": best,
                "last": last_eval,
                "trainSeconds": round(train_seconds, 2),
                "msPerStep": round(1000 * train_seconds / max(1, step), 1),
                "predictSeconds": round(time.perf_counter() - tp, 2),
                "wallSeconds": round(time.perf_counter() - t0, 2),
                "testImages": predicted,
            }
        )
    )


def cmd_parity(a):
    """Compares this port's batches with the ones emseg dumped (dump/manifest.json + raw files)."""
    cfg = json.load(open(a.config))
    train, _ = load_data(a, cfg)
    man = json.load(open(os.path.join(a.dump, "manifest.json")))
    bs = cfg["train"]["batchSize"]
    size = cfg["patches"]["size"]
    per_epoch = batches_per_epoch(train, cfg["patches"], bs)
    if per_epoch != man["batchesPerEpoch"]:
        raise SystemExit(f"batches per epoch differ: torch {per_epoch}, emseg {man['batchesPerEpoch']}")
    worst_img, mean_img, mask_diff, mask_total, compared = 0.0, 0.0, 0, 0, []
    for entry in man["batches"]:
        step = entry["step"]
        epoch, pos = divmod(step, per_epoch)
        for k, (images, masks) in enumerate(epoch_batches(train, cfg, epoch, bs, per_epoch)):
            if k == pos:
                break
        ref_img = np.fromfile(os.path.join(a.dump, entry["images"]), dtype="<f4").reshape(images.shape)
        ref_mask = np.fromfile(os.path.join(a.dump, entry["masks"]), dtype=np.uint8).reshape(masks.shape)
        d = np.abs(ref_img.astype(np.float64) - images)
        worst_img = max(worst_img, float(d.max()))
        mean_img += float(d.mean())
        mask_diff += int(np.count_nonzero(ref_mask != masks))
        mask_total += masks.size
        compared.append(step)
    print(
        json.dumps(
            {
                "stepsCompared": compared,
                "maxAbsImageDiff": worst_img,
                "meanAbsImageDiff": mean_img / max(1, len(compared)),
                "maskMismatchFraction": mask_diff / max(1, mask_total),
            }
        )
    )


def value_noise(rng, h, w, cell):
    """Smooth noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    gh, gw = h // cell + 2, w // cell + 2
    g = rng.random((gh, gw))
    ys = np.arange(h) / cell
    xs = np.arange(w) / cell
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    a = g[np.ix_(y0, x0)]
    b = g[np.ix_(y0, x0 + 1)]
    c = g[np.ix_(y0 + 1, x0)]
    d = g[np.ix_(y0 + 1, x0 + 1)]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def box_blur(img, r):
    """Separable box blur of radius r (reflect borders), twice: close to a Gaussian."""
    for _ in range(2):
        for axis in (0, 1):
            p = np.pad(img, [(r, r) if ax == axis else (0, 0) for ax in (0, 1)], mode="reflect")
            c = np.cumsum(p, axis=axis, dtype=np.float64)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
            n = img.shape[axis]
            img = (np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis) - np.take(c, np.arange(0, n), axis=axis)) / (2 * r + 1)
    return img


def mito_image(rng, size, target_fraction):
    """An EM-like textured background with bright elliptical blobs (mitochondria-like) covering ~target_fraction."""
    h = w = size
    bg = 0.50 + 0.10 * (value_noise(rng, h, w, 64) - 0.5) + 0.08 * (value_noise(rng, h, w, 16) - 0.5) + 0.06 * (value_noise(rng, h, w, 4) - 0.5)
    # dark membrane-like curves and vesicles as distractors
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(60, 220)
        ring = np.abs(np.hypot(xx - cx, yy - cy) - r)
        bg -= 0.18 * np.exp(-ring * ring / (2 * 1.5**2))
    for _ in range(25):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 7)
        bg -= 0.12 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    mask = np.zeros((h, w), dtype=bool)
    interior = np.zeros((h, w))
    tries = 0
    while mask.mean() < target_fraction and tries < 500:
        tries += 1
        cx, cy = rng.uniform(20, w - 20), rng.uniform(20, h - 20)
        a_ax, b_ax = rng.uniform(14, 34), rng.uniform(8, 16)
        th = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
        v = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
        rho = np.sqrt((u / a_ax) ** 2 + (v / b_ax) ** 2)
        blob = rho <= 1
        if np.count_nonzero(blob & mask) > 0.1 * np.count_nonzero(blob):
            continue
        mask |= blob
        # bright body with dark cristae stripes and a darker rim
        cristae = 0.5 + 0.5 * np.cos(2 * math.pi * v / rng.uniform(5, 8) + rng.uniform(0, 6.3))
        body = np.where(blob, 0.24 - 0.14 * cristae * (rho < 0.8) - 0.10 * np.clip((rho - 0.8) / 0.2, 0, 1), 0)
        interior += body
    # unlabelled bright distractors: small round granules, brighter than the mitochondria
    for _ in range(14):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 6)
        interior += 0.28 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) ** 2)
    img = bg + interior
    img = box_blur(img, 1)
    img += rng.normal(0, 0.08, size=(h, w))
    img = np.clip(img, 0, 1)
    return (img * 255 + 0.5).astype(np.uint8), mask


def cmd_mito_data(a):
    rng = np.random.default_rng(a.seed)
    counts = {"train": a.train, "val": a.val, "test": a.test}
    fractions = {}
    for split, n in counts.items():
        di = os.path.join(a.out, "imgs", a.track, split)
        dl = os.path.join(a.out, "label", a.track, split)
        db = os.path.join(a.out, "label-black", split)
        for d in (di, dl, db):
            os.makedirs(d, exist_ok=True)
        for i in range(n):
            img, mask = mito_image(rng, a.size, a.fraction)
            name = f"{split}-{i:03d}"
            Image.fromarray(img).save(os.path.join(di, f"{name}.png"))
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(os.path.join(dl, f"{name}.png"))
            # the same label in the scorer's convention (foreground black 0 on white 255)
            Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)).save(os.path.join(db, f"{name}.png"))
            fractions[name] = float(mask.mean())
    print(json.dumps({"root": a.out, "track": a.track, "size": a.size, "seed": a.seed, "counts": counts, "foregroundFraction": fractions}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train, validate, keep the best model, predict the test images")
    t.add_argument("--config", required=True, help="resolved emseg fine-tuning config (JSON)")
    t.add_argument("--data", required=True, help="U-RISC-layout root (imgs/<track>/{train,val,test}, label/<track>/...)")
    t.add_argument("--seed", type=int, default=0, help="torch init seed (the batches follow the config's train.seed)")
    t.add_argument("--pred-out", required=True, help="folder for the test submissions (<stem>.png)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--save-model", default="", help="also save the best and final state_dicts here")
    p = sub.add_parser("parity", help="compare the ported batches with batches emseg dumped")
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--dump", required=True)
    m = sub.add_parser("mito-data", help="write the synthetic mitochondria task in the U-RISC layout")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--size", type=int, default=512)
    m.add_argument("--train", type=int, default=6)
    m.add_argument("--val", type=int, default=2)
    m.add_argument("--test", type=int, default=2)
    m.add_argument("--fraction", type=float, default=0.08)
    m.add_argument("--track", default="Track1")
    a = ap.parse_args()
    {"train": cmd_train, "parity": cmd_parity, "mito-data": cmd_mito_data}[a.cmd](a)


if __name__ == "__main__":
    main()
