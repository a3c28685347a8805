#!/usr/bin/env bash
# The quickstart on a fresh Debian 12 box: installs the packages, builds `vdm` (only), and
# trains configs/quickstart.yaml on Fashion-MNIST. It leaves in runs/quickstart/ the sample
# grid (samples/step_*.png), the test-set bits/dim (eval.jsonl), metrics.jsonl and checkpoints.
# Extra arguments go to `vdm train` (e.g. train.steps=1000, or --resume none).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
BUILD=${VDM_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVDM_BUILD_TESTS=OFF -DVDM_BUILD_BENCH=OFF > /dev/null
ninja -C "$BUILD" vdm
built=$(date +%s)
echo "quickstart: installed and built in $((built - start)) s; training"
"$BUILD"/vdm train configs/quickstart.yaml --run-dir runs/quickstart "$@"
done_at=$(date +%s)
echo "quickstart: trained and evaluated in $((done_at - built)) s ($((done_at - start)) s in all)"
echo "  samples:   $(ls runs/quickstart/samples/*.png | tail -1)"
echo "  bits/dim:  $(tail -1 runs/quickstart/eval.jsonl)"
