#!/usr/bin/env bash
# The Fashion-MNIST weighting ablation of docs/results.md, end to end on one box: trains the shared
# FID feature network once, runs configs/sweeps/fashion_mnist_weighting.yaml point after point,
# and writes the report (runs/fashion_mnist_weighting/report.{md,csv,html}). Needs build/vdm
# (scripts/quickstart.sh builds it); VDM=path/to/vdm picks another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
VDM=${VDM:-build/vdm}
[ -x "$VDM" ] || { echo "weighting-sweep: $VDM not found; build it first (bash scripts/quickstart.sh, or ninja -C build vdm)" >&2; exit 2; }
FEATURES=runs/fid_features_fashion_mnist_16px.pt
mkdir -p runs
[ -f "$FEATURES" ] || "$VDM" fid-features train configs/quickstart.yaml --out "$FEATURES"
start=$(date +%s)
"$VDM" sweep configs/sweeps/fashion_mnist_weighting.yaml --local "$@"
"$VDM" report runs/fashion_mnist_weighting
echo "weighting-sweep: $(( $(date +%s) - start )) s; report in runs/fashion_mnist_weighting/"
