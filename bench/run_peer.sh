#!/usr/bin/env bash
# vdm against its Python peer (bench/peer/train_peer.py: the same step in PyTorch DDP, on Debian's
# python3-torch, the LibTorch that vdm links), alternately A B A B so that drift in the machine's
# speed falls on both, at 1 rank x 2 threads and 2 ranks x 1 thread. Prints each run's img/s,
# then per layout the medians, min-max and the ratio vdm/peer of the medians.
#
#   bench/run_peer.sh PRESET [--pairs N] [--steps S] [--warmup W] [--batch B] [--layouts "1x2 2x1"]
#     PRESET: quickstart (Fashion-MNIST at 16 px, batch 64) or cifar10_vdm (random 32 px images,
#     since CIFAR-10 is not on the box; --batch 4 is the issue's size)
# Run it on an idle machine: nothing else compiling or running.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:?usage: bench/run_peer.sh PRESET [--pairs N] [--steps S] [--warmup W] [--batch B]}
shift
PAIRS=3 STEPS="" WARMUP="" BATCH="" LAYOUTS="1x2 2x1"
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --layouts) LAYOUTS=$2; shift 2 ;;
    *) echo "run_peer.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
BUILD=${VDM_BUILD_DIR:-build}
VDM=$BUILD/vdm
PY=/usr/bin/python3  # Debian's, with python3-torch (a pyenv python on PATH would lack it)
[ -x "$VDM" ] || { echo "run_peer.sh: $VDM not built (ninja -C $BUILD vdm)" >&2; exit 2; }
if ! $PY -c "import torch" 2>/dev/null; then  # the peer's only dependency beyond scripts/install-deps.sh
  echo "run_peer.sh: installing python3-torch (Debian's, the LibTorch that vdm links) for the peer"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch > /dev/null
  $PY -c "import torch" || { echo "run_peer.sh: python3-torch did not install" >&2; exit 2; }
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
WORK=$(mktemp -d /tmp/vdm-run-peer.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

case "$PRESET" in
  quickstart)
    CONFIG=configs/quickstart.yaml
    : "${STEPS:=40}" "${WARMUP:=10}" "${BATCH:=64}"
    DATA_ARGS=()
    ;;
  cifar10_vdm)
    CONFIG=configs/cifar10_vdm.yaml
    : "${STEPS:=6}" "${WARMUP:=2}" "${BATCH:=4}"
    # A packed set of random 32 px images in the layout of configs/cifar10_vdm.yaml.
    $PY - "$WORK/images" <<'PYEOF'
import os, sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for c in range(2):
    d = os.path.join(sys.argv[1], "train", f"class{c}")
    os.makedirs(d)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(d, f"{i}.png"))
PYEOF
    "$VDM" pack "$WORK/images" --resolution 32 --out "$WORK/packed" > /dev/null 2>&1
    DATA_ARGS=(data.path="$WORK/packed" data.eval_split=train)
    ;;
  *) echo "run_peer.sh: PRESET must be quickstart or cifar10_vdm" >&2; exit 2 ;;
esac

vdm_params=$("$VDM" inspect model "$CONFIG" 2>/dev/null | awk '/^parameters:/ {print $2}')
peer_params=$($PY bench/peer/train_peer.py "$PRESET" --count-parameters)
if [ "$vdm_params" != "$peer_params" ]; then
  echo "run_peer.sh: the peer's U-Net has $peer_params parameters, vdm's $vdm_params: not the same model" >&2
  exit 1
fi
echo "run_peer.sh: $PRESET, $vdm_params parameters in both; batch $BATCH per rank, $STEPS steps of which $WARMUP warm-up; $PAIRS pairs"

# img/s of a vdm run: its metrics windows after the warm-up one, as total images over total time.
vdm_rate() {
  $PY - "$1" "$WARMUP" <<'PYEOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
prev = int(sys.argv[2])
steps = secs = 0.0
for r in recs:  # windows of any length: steps over the time they took (images per step cancel)
    if r["step"] <= prev:
        continue
    n = r["step"] - prev
    prev = r["step"]
    steps += n
    secs += n / r["img_per_s"]
print(f"{steps / secs:.4g}")  # 4 digits: cifar10_vdm runs at ~1 img/s
PYEOF
}

run_vdm() {  # ranks threads -> img/s
  local ranks=$1 threads=$2 dir=$WORK/vdm-run
  rm -rf "$dir"
  mpirun -np "$ranks" --bind-to none "$VDM" train "$CONFIG" --run-dir "$dir" --resume none \
    train.device=cpu train.channels_last=true train.threads="$threads" train.batch_size="$BATCH" train.steps="$STEPS" \
    train.log_every="$WARMUP" data.workers=1 checkpoint.every=0 eval.every=0 eval.final=false \
    "${DATA_ARGS[@]}" > "$dir.log" 2>&1 || { echo "vdm failed:" >&2; tail -20 "$dir.log" >&2; exit 1; }
  vdm_rate "$dir/metrics.jsonl"
}

run_peer() {
  local ranks=$1 threads=$2
  mpirun -np "$ranks" --bind-to none $PY bench/peer/train_peer.py "$PRESET" --threads "$threads" \
    --batch-size "$BATCH" --steps "$STEPS" --warmup "$WARMUP" > "$WORK/peer.log" 2>&1 ||
    { echo "peer failed:" >&2; tail -20 "$WORK/peer.log" >&2; exit 1; }
  awk '/img\/s over/ {print $2}' "$WORK/peer.log"
}

summary=()
for layout in $LAYOUTS; do
  ranks=${layout%x*} threads=${layout#*x}
  v=() p=()
  for i in $(seq "$PAIRS"); do
    v+=("$(run_vdm "$ranks" "$threads")")
    p+=("$(run_peer "$ranks" "$threads")")
    echo "  $layout pair $i: vdm ${v[-1]} img/s, peer ${p[-1]} img/s"
  done
  summary+=("$($PY - "$layout" "${v[*]}" "${p[*]}" <<'PYEOF'
import statistics, sys
v = [float(x) for x in sys.argv[2].split()]
p = [float(x) for x in sys.argv[3].split()]
mv, mp = statistics.median(v), statistics.median(p)
print(f"{sys.argv[1]:>4}  vdm {mv:8.4g} img/s ({min(v):.4g}-{max(v):.4g})   peer {mp:8.4g} img/s "
      f"({min(p):.4g}-{max(p):.4g})   vdm/peer {mv / mp:.3f}")
PYEOF
)")
done
echo "run_peer.sh: $PRESET, medians of $PAIRS runs (min-max), ranks x threads:"
printf '%s\n' "${summary[@]}"
