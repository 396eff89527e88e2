#!/usr/bin/env bash
# GPU device check (issue 13): on a machine with an NVIDIA GPU, in one run of at most ~8 minutes,
#   1. provisions the GPU backend (`npm run setup -- --gpu`: tfjs-node-gpu against the PyPI
#      `tensorflow` wheel, the CUDA 12 / cuDNN 9 wheels) and, in parallel, PyTorch with CUDA
#      (torch at the version of tools/setup/requirements.txt, in CACHE/torch-cuda-<v>/),
#   2. builds the workspace and runs `vitest --project models --project pretrain --project tf` on
#      the GPU backend (tf includes gpu-build.test.ts, with EMSEG_REQUIRE_GPU=1),
#   3. benchmarks ours vs PyTorch CUDA on the same GPU with tools/bench/*:
#      MoCo v2 images/s (ResNet-50 224 px batch 128 K 65536; ResNet-18 64 px batch 32),
#      U-Net training step (ResNet-50, 512 px, batch 4) and 9958 x 9959 tiled inference (ResNet-50),
# and prints ONE JSON object on stdout (logs go to files under $EMSEG_GPU_CHECK_DIR, tails of failed
# stages to stderr). A failed or timed-out stage leaves its fields null and sets `error`; the
# exit status is 0 only when every stage passed.
#
#   tools/device/gpu-check.sh              the real check (needs a GPU, PyPI and the npm registry,
#                                          or EMSEG_WHEELHOUSE / a warm EMSEG_CACHE_DIR)
#   tools/device/gpu-check.sh --cpu-smoke  the same pipeline with tiny sizes on CPU, with the GPU
#                                          build forced (EMSEG_TF_PACKAGE) and CPU PyTorch (.venv):
#                                          proves the stages and the JSON assembly anywhere
#
# Environment: EMSEG_GPU_CHECK_BUDGET_S (default 480) total seconds; EMSEG_TORCH_PYTHON a python
# with CUDA PyTorch to use instead of installing one; EMSEG_TORCH_INDEX_URL a pip index for it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
MODE=gpu
case "${1:-}" in
  '') ;;
  --cpu-smoke) MODE=cpu-smoke ;;
  *) echo "usage: $0 [--cpu-smoke]" >&2; exit 2 ;;
esac

BUDGET="${EMSEG_GPU_CHECK_BUDGET_S:-480}"
START=$SECONDS
OUT="${EMSEG_GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/emseg-gpu-check.XXXXXX")}"
mkdir -p "$OUT"
: > "$OUT/stages.tsv"
CACHE="${EMSEG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/emseg}"
TORCH_VERSION="$(sed -n 's/^torch==\([^ ]*\).*/\1/p' tools/setup/requirements.txt | head -1)"

# TensorFlow takes (almost) all GPU memory up front unless told otherwise; PyTorch runs next to it.
export TF_FORCE_GPU_ALLOW_GROWTH=true
export EMSEG_REQUIRE_GPU=1
if [[ $MODE == cpu-smoke ]]; then
  unset EMSEG_REQUIRE_GPU
  export EMSEG_TF_PACKAGE=@tensorflow/tfjs-node-gpu
  export CUDA_VISIBLE_DEVICES=-1
fi

log() { echo "[gpu-check +$((SECONDS - START))s] $*" >&2; }

# stage NAME LIMIT_S COMMAND...: runs COMMAND with stdout to $OUT/NAME.out and stderr to
# $OUT/NAME.log, under min(LIMIT_S, what is left of the budget); records "NAME rc seconds".
# Never aborts the script.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - (SECONDS - START) - 15))
  if ((left < 10)); then
    log "$name: skipped, out of time budget"
    printf '%s\t%s\t%s\n' "$name" budget 0 >> "$OUT/stages.tsv"
    return 0
  fi
  ((limit > left)) && limit=$left
  log "$name: start (limit ${limit}s)"
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.log" || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT/stages.tsv"
  if ((rc != 0)); then
    log "$name: FAILED (exit $rc$( ((rc == 124 || rc == 137)) && echo ', timed out')); last lines of $OUT/$name.log:"
    tail -n 25 "$OUT/$name.log" >&2 || true
  else
    log "$name: ok ($((SECONDS - t0))s)"
  fi
  return 0
}
ok() { awk -F'\t' -v n="$1" '$1 == n { rc = $2 } END { exit !(rc == "0") }' "$OUT/stages.tsv"; }
skip() { printf '%s\t%s\t%s\n' "$1" "skipped:$2" 0 >> "$OUT/stages.tsv"; log "$1: skipped ($2)"; }

# PyTorch with CUDA for the reference side, cached outside the repository (~4 GB with its CUDA wheels).
torch_env() {
  set -euo pipefail
  local venv="$CACHE/torch-cuda-$TORCH_VERSION"
  if [[ ! -f $venv/.emseg-complete ]]; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check --no-cache-dir -q ${EMSEG_TORCH_INDEX_URL:+--index-url "$EMSEG_TORCH_INDEX_URL"} "torch==$TORCH_VERSION" numpy
    touch "$venv/.emseg-complete"
  fi
  echo "$venv/bin/python" > "$OUT/torch-python"
  "$venv/bin/python" -c 'import torch, sys; ok = torch.cuda.is_available(); print(torch.__version__, torch.version.cuda, ok); sys.exit(0 if ok else "PyTorch sees no CUDA device")'
}
export -f torch_env
export CACHE TORCH_VERSION OUT

# -- 0. what machine ---------------------------------------------------------------------------
if [[ $MODE == gpu ]]; then
  stage nvidia-smi 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
else
  skip nvidia-smi cpu-smoke
fi

# -- 1. provisioning (GPU backend | PyTorch CUDA, in parallel) -------------------------------------
if [[ $MODE == gpu ]]; then
  if [[ -n ${EMSEG_TORCH_PYTHON:-} ]]; then
    echo "$EMSEG_TORCH_PYTHON" > "$OUT/torch-python"
    stage torch-env 60 "$EMSEG_TORCH_PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA")' &
  else
    stage torch-env 270 bash -c torch_env &
  fi
  TORCH_PID=$!
  stage setup 270 npm run setup -- --gpu
  wait "$TORCH_PID" || true
  TORCH_DEVICE=cuda
else
  stage setup 270 npm run setup -- --gpu
  echo "$ROOT/.venv/bin/python" > "$OUT/torch-python"
  skip torch-env "cpu-smoke: the project's CPU PyTorch (.venv)"
  TORCH_DEVICE=cpu
fi
TORCH_PY="$(cat "$OUT/torch-python" 2> /dev/null || echo "$ROOT/.venv/bin/python")"

# -- 2. build + tests on the GPU backend -----------------------------------------------------------
if ok setup; then
  stage build 120 npx tsc -b
else
  skip build 'setup failed'
fi
if ok build; then
  if [[ $MODE == gpu ]]; then
    stage tests 200 npx vitest run --project models --project pretrain --project tf --reporter=default --reporter=json --outputFile.json="$OUT/vitest.json"
  else
    stage tests 120 npx vitest run --project tf libs/tf/test/gpu-build.test.ts --reporter=default --reporter=json --outputFile.json="$OUT/vitest.json"
  fi
else
  skip tests 'build failed'
fi

# -- 3. benchmarks, ours vs PyTorch on the same device ---------------------------------------------
if [[ $MODE == gpu ]]; then
  MOCO=(--cases 50:224:128,18:64:32 --queue 65536 --steps 5 --warmup 2)
  UNET=(--archs resnet50 --sizes 512 --batch 4 --steps 5 --warmup 2 --infer-arch resnet50 --image 9958x9959 --tile 1024 --overlap 128)
else
  MOCO=(--cases 18:32:4 --queue 64 --steps 1 --warmup 1)
  UNET=(--archs resnet18 --sizes 64 --batch 1 --steps 1 --warmup 1 --infer-arch resnet18 --image 300x280 --tile 128 --overlap 32)
fi
if ok build; then
  stage moco 150 node tools/bench/pretrain/bench-moco.mjs "${MOCO[@]}" --torch-device "$TORCH_DEVICE" --torch-python "$TORCH_PY"
  stage finetune 200 node tools/bench/finetune/bench-finetune.mjs "${UNET[@]}" --torch-device "$TORCH_DEVICE" --torch-python "$TORCH_PY"
else
  skip moco 'build failed'
  skip finetune 'build failed'
fi

# -- 4. one JSON object ----------------------------------------------------------------------------
rc=0
node tools/device/gpu-check-report.mjs "$OUT" "$MODE" "$((SECONDS - START))" "$BUDGET" || rc=$?
exit "$rc"
