#!/usr/bin/env bash
# Installs what vdm needs, builds it, and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${VDM_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
ninja -C "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)"
# Every translation unit must also compile against LibTorch 2.x (Debian trixie's 2.6 headers,
# fetched once into $BUILD/libtorch2), as the CPU build and as a CUDA build with NCCL.
# VDM_CHECK_LIBTORCH2=0 skips it.
if [ "${VDM_CHECK_LIBTORCH2:-1}" != 0 ]; then
  t0=$SECONDS
  rc=0
  VDM_BUILD_DIR="$BUILD" bash scripts/check-libtorch2.sh || rc=$?
  echo "test.sh: check-libtorch2 took $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || exit "$rc"
fi
# The single-process build (-DVDM_WITH_MPI=OFF, for GPU boxes without MPI) must keep building
# and training: build vdm alone and run a few steps. VDM_TEST_NO_MPI=0 skips it.
if [ "${VDM_TEST_NO_MPI:-1}" != 0 ]; then
  NOMPI=${BUILD}-nompi
  cmake -S . -B "$NOMPI" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVDM_WITH_MPI=OFF \
    -DVDM_BUILD_TESTS=OFF -DVDM_BUILD_BENCH=OFF > /dev/null
  ninja -C "$NOMPI" vdm
  run=$(mktemp -d)
  OMP_NUM_THREADS=1 "$NOMPI"/vdm train model.preset=tiny data.resolution=16 train.batch_size=16 \
    train.threads=1 train.steps=5 checkpoint.every=5 eval.num_samples=4 eval.steps=4 \
    eval.bpd_samples=32 eval.fid=false --run-dir "$run/run" > "$run/log" 2>&1 \
    || { cat "$run/log"; echo "test.sh: the build without MPI failed to train" >&2; exit 1; }
  [ -e "$run/run/checkpoints/step_00000005/manifest.json" ] \
    || { echo "test.sh: the build without MPI left no checkpoint" >&2; exit 1; }
  rm -rf "$run"
  echo "test.sh: the build without MPI (-DVDM_WITH_MPI=OFF) builds and trains"
fi
