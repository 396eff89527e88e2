"""Export the floating-point tensors of a PyTorch checkpoint for emseg's importer.

    python export_state_dict.py CHECKPOINT OUT_DIR [--trust-pickle]

Reads CHECKPOINT with torch.load (weights_only unless --trust-pickle), finds the state_dict in it
(the checkpoint itself, or its "state_dict" / "model_state_dict" / "model" / "net" entry, or the
state_dict() of a pickled module), and writes:

    OUT_DIR/manifest.json  {"format": "emseg-torch-state-dict", "version": 1, "source", "sha256",
                            "container", "norms": {"mean": [...], "std": [...]} | null,
                            "tensors": [{"name", "shape", "offset"}], "skipped": [{"name", "dtype"}]}
    OUT_DIR/tensors.bin    the tensors as little-endian float32, C order, at their byte offsets

`norms` is the input normalisation when the checkpoint carries one (the CEM500K MoCoV2 and CEM1.5M SwAV
checkpoints have "norms": [mean, std], empanada's {"mean", "std"}). Non-floating tensors (num_batches_tracked) are
listed under "skipped". Keys are written unchanged; prefixes are handled by the importer.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Mapping

import torch

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def fail(message: str) -> None:
    print(f"export_state_dict: {message}", file=sys.stderr)
    sys.exit(2)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def find_state_dict(obj: object) -> tuple[Mapping, str]:
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict(), "module"
    if is_state_dict(obj):
        return obj, "root"
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            value = obj.get(key)
            if isinstance(value, torch.nn.Module):
                return value.state_dict(), key
            if is_state_dict(value):
                return value, key
        fail(f"no state_dict found: top-level keys are {sorted(map(str, obj.keys()))}; expected tensors or one of {CONTAINER_KEYS}")
    fail(f"no state_dict found: the checkpoint is a {type(obj).__name__}")


def as_floats(value: object, what: str) -> list[float]:
    if torch.is_tensor(value):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    fail(f"norms {what} is {value!r}; expected a number or a list of numbers")


def find_norms(obj: object) -> dict | None:
    norms = obj.get("norms") if isinstance(obj, Mapping) else None
    if norms is None:
        return None
    if isinstance(norms, Mapping):
        return {"mean": as_floats(norms.get("mean"), "mean"), "std": as_floats(norms.get("std"), "std")}
    if isinstance(norms, (list, tuple)) and len(norms) == 2:
        return {"mean": as_floats(norms[0], "mean"), "std": as_floats(norms[1], "std")}
    fail(f"norms is {norms!r}; expected [mean, std] or {{'mean': ..., 'std': ...}}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--trust-pickle", action="store_true", help="allow arbitrary pickled objects (only for trusted files)")
    args = parser.parse_args()

    if not os.path.isfile(args.checkpoint):
        fail(f"checkpoint {args.checkpoint} does not exist")
    try:
        obj = torch.load(args.checkpoint, map_location="cpu", weights_only=not args.trust_pickle)
    except Exception as err:  # noqa: BLE001 - report any unpickling failure clearly
        hint = "" if args.trust_pickle else " (if the file is from a trusted source and holds non-tensor objects, retry with --trust-pickle)"
        fail(f"cannot read {args.checkpoint}: {str(err).splitlines()[0]}{hint}")
    state_dict, container = find_state_dict(obj)

    os.makedirs(args.out_dir, exist_ok=True)
    tensors, skipped, offset = [], [], 0
    with open(os.path.join(args.out_dir, "tensors.bin"), "wb") as out:
        for name, value in state_dict.items():
            if not value.is_floating_point():
                skipped.append({"name": name, "dtype": str(value.dtype).replace("torch.", "")})
                continue
            data = value.detach().to(torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes()
            tensors.append({"name": name, "shape": list(value.shape), "offset": offset})
            out.write(data)
            offset += len(data)
    manifest = {
        "format": "emseg-torch-state-dict",
        "version": 1,
        "source": os.path.abspath(args.checkpoint),
        "sha256": sha256(args.checkpoint),
        "container": container,
        "norms": find_norms(obj),
        "tensors": tensors,
        "skipped": skipped,
    }
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f)


if __name__ == "__main__":
    main()
