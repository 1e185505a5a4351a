#!/usr/bin/env bash
# GPU path check: on a machine with an NVIDIA GPU, install what the GPU path needs
# and print the detector's and embedder's throughput at batch 1-32 and how many
# 10 fps cameras one GPU would carry (inference only: `crosscam bench models`).
#
#   deploy/gpu-check.sh            # CUDA provider
#   deploy/gpu-check.sh tensorrt   # also try ONNX Runtime's TensorRT provider (needs TensorRT libs)
#
# It builds its own virtualenv (.venv-gpu) with onnxruntime-gpu and the CUDA/cuDNN
# runtime wheels from PyPI (no system CUDA toolkit needed, only the NVIDIA driver),
# so the CPU virtualenv (.venv) is left as it is. Results go to runs/gpu-check/.
# Models and video come from CROSSCAM_SHARED (default: ../shared beside the repo).
# Exit codes: 0 done, 2 no GPU / the GPU provider did not load.
set -euo pipefail
cd "$(dirname "$0")/.."

PROVIDERS=(cuda "$@")
VENV=.venv-gpu
OUT=runs/gpu-check
PYTHON=${PYTHON:-python3}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi found none)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -U pip
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
# The CPU build and the GPU build both provide the `onnxruntime` module: keep only the GPU one.
"$VENV/bin/pip" uninstall -q -y onnxruntime || true
"$VENV/bin/pip" install -q --disable-pip-version-check 'onnxruntime-gpu[cuda,cudnn]>=1.21'
if [[ " ${PROVIDERS[*]} " == *" tensorrt "* ]]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check tensorrt-cu12 || \
    echo "gpu-check: TensorRT wheels did not install; the tensorrt run will fail" >&2
fi
"$VENV/bin/python" -c 'import onnxruntime as o; o.preload_dlls(); print("onnxruntime", o.__version__, o.get_available_providers())'

mkdir -p "$OUT"
status=0
for provider in "${PROVIDERS[@]}"; do
  echo "== $provider: detector and embedder, batch 1-32 =="
  if "$VENV/bin/python" -m crosscam.cli bench models --provider "$provider" \
      --batches 1 2 4 8 16 32 --seconds 30 --json --out "$OUT/$provider.json" >/dev/null; then
    "$VENV/bin/python" - "$OUT/$provider.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'model':28} {'runtime':32} {'batch':>5} {'ms/item':>9} {'items/s':>9}")
for x in r["rows"]:
    print(f"{x['model']:28} {x['candidate']:32} {x['batch']:>5} {x['ms_per_item_median']:>9} {x['items_per_s']:>9}")
print(f"crops per frame (PETS09): {r['crops_per_frame']}")
print(f"inference per frame: {r['inference_ms_per_frame']} ms -> "
      f"{r['cameras_at_10fps']} cameras at 10 fps on one GPU (inference only; "
      "JPEG decode and crops stay on the CPU: size those with `crosscam bench detector`)")
print(f"load average: {r['load_average']}")
PY
  else
    echo "gpu-check: the $provider run failed (see above)" >&2
    status=2
  fi
done
echo "results: $OUT/"
exit $status
