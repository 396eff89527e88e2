#!/usr/bin/env python
"""Reference timings for tools/bench/evaluation/bench.mjs (prints JSON).

    python reference.py DIR WIDTH HEIGHT   # DIR holds gt.u8 and pred.u8, 1 = membrane

- uriscF1: the competition script's NumPy operations on the inverted 8-bit images.
- vRandVInfo: scikit-image at one threshold: skeletonize the proposal boundary, label cells
  (connectivity=1), contingency_table restricted to ground-truth cells, then adapted_rand_error and
  variation_of_information from that table (their definitions, not Fiji's singleton variant).
- assd: SciPy binary_erosion surfaces and distance_transform_edt in both directions.
- edt: one distance_transform_edt.
"""
import json
import sys
import time

import numpy as np
from scipy import ndimage
from skimage.measure import label
from skimage.metrics import adapted_rand_error, contingency_table, variation_of_information
from skimage.morphology import skeletonize


def timed(fn):
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as err:  # report what failed and keep the other timings
        return None, {"error": f"{type(err).__name__}: {err}"}
    return round((time.perf_counter() - t0) * 1000), result


def urisc_f1(pred_grey, gt_grey):
    pred = 255 - pred_grey
    gt = 255 - gt_grey
    values = np.unique(pred)
    assert len(values) <= 2
    white = len(np.where(pred == 255)[0])
    black = len(np.where(pred == 0)[0])
    assert black / white >= 5
    n_fg, n_gt = np.sum(pred), np.sum(gt)
    precision = np.sum(pred * (gt != 0)) / float(n_fg)
    recall = np.sum(gt * (pred != 0)) / float(n_gt)
    return float(2 * precision * recall / (precision + recall))


def isbi(pred, gt):
    boundary = skeletonize(pred.astype(bool))
    prop = label(~boundary, connectivity=1)
    truth = label(gt == 0, connectivity=1)
    table = contingency_table(truth, prop, ignore_labels=[0], sparse_type="array")
    are, _, _ = adapted_rand_error(table=table)
    # scikit-image 0.26 still shape-checks the images when given a table, so pass them too
    splits, merges = variation_of_information(truth, prop, table=table / table.sum())
    return {"adaptedRandError": float(are), "viSplits": float(splits), "viMerges": float(merges)}


def assd(pred, gt):
    p, g = pred.astype(bool), gt.astype(bool)
    sp = p & ~ndimage.binary_erosion(p)
    sg = g & ~ndimage.binary_erosion(g)
    a = ndimage.distance_transform_edt(~sg)[sp]
    b = ndimage.distance_transform_edt(~sp)[sg]
    return float((a.sum() + b.sum()) / (a.size + b.size))


def main():
    d, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    gt = np.fromfile(f"{d}/gt.u8", np.uint8).reshape(h, w)
    pred = np.fromfile(f"{d}/pred.u8", np.uint8).reshape(h, w)
    pred_grey = np.where(pred == 1, 0, 255).astype(np.uint8)
    gt_grey = np.where(gt == 1, 0, 255).astype(np.uint8)
    out = {"numpy": np.__version__}
    import skimage, scipy
    out["skimage"], out["scipy"] = skimage.__version__, scipy.__version__
    ms, f1 = timed(lambda: urisc_f1(pred_grey, gt_grey))
    out["uriscF1"] = {"ms": ms, "f1": f1} if ms is not None else f1
    del pred_grey, gt_grey
    ms, a = timed(lambda: assd(pred, gt))
    out["assd"] = {"ms": ms, "assdPx": a} if ms is not None else a
    ms, _ = timed(lambda: ndimage.distance_transform_edt(gt == 0))
    out["edt"] = {"ms": ms}
    ms, r = timed(lambda: isbi(pred, gt))
    out["vRandVInfo"] = {"ms": ms, **r}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
