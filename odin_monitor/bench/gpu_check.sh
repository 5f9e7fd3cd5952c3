#!/usr/bin/env bash
# One-shot GPU speed check (issue 6): ODIN vs a plain forward, the paper's per-image loop and
# pytorch-ood, for ResNet-20 and ResNet-56 at batch 256 and 1024, fp32 and bf16 autocast.
#
# Needs python3 with torch (CUDA), numpy, pandas, scikit-learn, matplotlib; NOT mlflow/evidently
# (only odin_monitor's core and odin_monitor.bench are imported, from the working tree).
#
# Data folder (default .gpu_data/, or GPU_DATA=...):
#   cifar10_test.npz  cifar10_resnet20.pt  cifar10_resnet56.pt
#   optional: pytorch_ood-0.4.0-py3-none-any.whl  (pure python; unpacked here, not installed;
#             it imports torchvision, so without torchvision its rows are skipped)
#   optional: ood_tinyimagenet_crop.npz           (OOD side of the calibration timing; else noise)
# Results: $OUT/ (default ./gpu_out): speed_gpu.md, speed_gpu.json, speed_gpu.log, nvidia_smi.txt
#
# Usage:
#   bash odin_monitor/bench/gpu_check.sh                       # the real run, on CUDA (about 2-4 min)
#   bash odin_monitor/bench/gpu_check.sh --device cpu --quick  # tiny CPU run of the same path
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root

DEVICE=cuda
QUICK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "unknown argument: $1 (expected --device DEV, --quick)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
DATA=${GPU_DATA:-.gpu_data}
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

for f in cifar10_test.npz cifar10_resnet20.pt cifar10_resnet56.pt; do
  if [[ ! -f "$DATA/$f" ]]; then
    echo "missing $DATA/$f: copy it from shared/data (see the header of this script)" >&2
    exit 2
  fi
done

shopt -s nullglob
wheels=("$DATA"/pytorch_ood-*.whl)
if [[ ${#wheels[@]} -gt 0 ]]; then
  "$PY" -m zipfile -e "${wheels[0]}" "$DATA/pylib"
  export PYTHONPATH="$PYTHONPATH:$DATA/pylib"
fi

{ nvidia-smi -L 2>&1 || echo "nvidia-smi not available"; } | tee "$OUT/nvidia_smi.txt"
"$PY" - <<'EOF' | tee "$OUT/versions.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
try:
    import pytorch_ood
    print("pytorch_ood importable from", pytorch_ood.__file__)
except ImportError:
    print("pytorch_ood not importable: its rows will be skipped")
EOF

if [[ $QUICK -eq 1 ]]; then
  ARGS=(--depths 20 56 --batch-sizes 8 16 --precisions fp32 amp --n-batches 1
        --n-per-image 2 --repeats 1 --calib-n 8 --no-memory --threads 1)
else
  ARGS=(--depths 20 56 --batch-sizes 256 1024 --precisions fp32 amp --n-batches 4
        --n-per-image 64 --repeats 10 --calib-n 256)
fi

start=$(date +%s)
timeout 270 "$PY" -m odin_monitor.bench.speed --data-dir "$DATA" --device "$DEVICE" "${ARGS[@]}" \
  --markdown "$OUT/speed_gpu.md" --json "$OUT/speed_gpu.json" 2> >(tee "$OUT/speed_gpu.log" >&2)
echo "speed bench finished in $(( $(date +%s) - start )) s; results in $OUT/speed_gpu.md"
