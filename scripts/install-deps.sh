#!/usr/bin/env bash
# Installs every Debian 12 package vdm needs to build, test and run its quickstart.
# Idempotent and non-interactive: packages already present are skipped by apt itself.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libtorch-dev
  # An optimised BLAS for LibTorch's matrix products (linear layers, attention): installing it
  # makes it the system's libblas.so.3, which Debian's LibTorch otherwise finds as the reference
  # BLAS, several times slower. The OpenMP build shares LibTorch's thread pool.
  libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libturbojpeg0-dev libpng-dev libzip-dev zlib1g-dev
  dataset-fashion-mnist
  python3-pil python3-numpy
  # TensorBoard event files (RUN/tb/): protoc compiles proto/tensorboard_event.proto for vdm, and
  # for the Python reader of tests/integration/tensorboard.sh.
  libprotobuf-dev protobuf-compiler python3-protobuf
  # The local one-node cluster of tests/integration/slurm_cluster.sh (slurm/local-cluster.sh).
  slurmctld slurmd slurm-client munge
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
