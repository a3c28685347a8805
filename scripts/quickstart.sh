#!/usr/bin/env bash
# Installs, builds and runs the quickstart. Until the trainer lands (training issue) it shows
# what the quickstart's objective computes: its weighting and proposal over lambda.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${VDM_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVDM_BUILD_TESTS=OFF
ninja -C "$BUILD" vdm
mkdir -p runs/quickstart
"$BUILD"/vdm inspect objective configs/quickstart.yaml --points 21 \
  --plot runs/quickstart/objective.svg
echo "not yet: training lands with the training issue; the objective's plot is in runs/quickstart/objective.svg"
