#!/usr/bin/env bash
# cmake/torch_cuda.cmake against the real CUDA toolkit of this box and stand-in LibTorch
# packages: a LibTorch 2.5-2.7 config that falls back to CUDA::nvToolsExt configures (the
# toolkit has no nvToolsExt library; without vdm's shim CMake fails), and a LibTorch built for
# another CUDA major version is refused with both versions named; the pip wheel's version.py
# is read as well as the zip's build-version.
set -euo pipefail
SRC=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
TOOLKIT=${CUDAToolkit_ROOT:-/usr/local/cuda}
[ -x "$TOOLKIT/bin/nvcc" ] || { echo "cmake_torch_cuda: SKIPPED (no CUDA toolkit at $TOOLKIT)"; exit 77; }
major=$("$TOOLKIT/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')

# A LibTorch whose config does what 2.5-2.7's Caffe2 files do when they find no NVTX 3:
# link torch against CUDA::nvToolsExt. version_file: build-version or version.py text.
fake_torch() {  # dir, file name, file text
  mkdir -p "$1/share/cmake/Torch"
  printf '%s\n' "$3" > "$1/$2"
  cat > "$1/share/cmake/Torch/TorchConfig.cmake" <<'CFG'
get_filename_component(TORCH_INSTALL_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
add_library(torch INTERFACE IMPORTED)
set_property(TARGET torch PROPERTY INTERFACE_LINK_LIBRARIES CUDA::nvToolsExt)
set(TORCH_LIBRARIES torch)
set(Torch_FOUND TRUE)
CFG
}
project_dir() {  # dir, with_shim (0/1)
  mkdir -p "$1"
  cat > "$1/CMakeLists.txt" <<CML
cmake_minimum_required(VERSION 3.18)
project(probe LANGUAGES CXX)
include($SRC/cmake/torch_cuda.cmake)
if($2)
  vdm_cuda_before_torch()
else()
  find_package(CUDAToolkit QUIET)
endif()
find_package(Torch REQUIRED)
vdm_check_torch_cuda(ON)
add_executable(probe main.cpp)
target_link_libraries(probe PRIVATE \${TORCH_LIBRARIES})
CML
  echo 'int main() { return 0; }' > "$1/main.cpp"
}
configure() {  # project, torch prefix, log
  cmake -S "$1" -B "$1/build" -DCMAKE_PREFIX_PATH="$2" -DCUDAToolkit_ROOT="$TOOLKIT" > "$3" 2>&1
}

fake_torch "$WORK/torch_same" build-version "2.6.0+cu${major}0"
fake_torch "$WORK/torch_other" build-version "2.6.0+cu$(( major - 1 ))8"
fake_torch "$WORK/torch_wheel" version.py "cuda = '${major}.0'"

project_dir "$WORK/plain" 0
if configure "$WORK/plain" "$WORK/torch_same" "$WORK/plain.log"; then
  echo "note: this toolkit still defines CUDA::nvToolsExt; the shim is not needed here"
else
  grep -q "CUDA::nvToolsExt" "$WORK/plain.log" || fail "control run failed for another reason: $(tail "$WORK/plain.log")"
  echo "without the shim: CMake fails on CUDA::nvToolsExt (as LibTorch 2.5-2.7 with CUDA $major do)"
fi

project_dir "$WORK/shim" 1
configure "$WORK/shim" "$WORK/torch_same" "$WORK/shim.log" || fail "with the shim: $(tail "$WORK/shim.log")"
grep -q "LibTorch built for CUDA ${major}.0" "$WORK/shim.log" || fail "no version line: $(cat "$WORK/shim.log")"

rm -rf "$WORK/shim/build"
configure "$WORK/shim" "$WORK/torch_wheel" "$WORK/wheel.log" || fail "wheel layout: $(tail "$WORK/wheel.log")"

rm -rf "$WORK/shim/build"
if configure "$WORK/shim" "$WORK/torch_other" "$WORK/other.log"; then
  fail "a LibTorch for CUDA $(( major - 1 )).8 was accepted with toolkit $major"
fi
tr -s ' \n' ' ' < "$WORK/other.log" | grep -q "built for CUDA $(( major - 1 )).8, but the CUDA toolkit found is ${major}\." \
  || fail "unclear refusal: $(cat "$WORK/other.log")"
echo "CUDA $major toolkit: nvToolsExt shim works; LibTorch for CUDA $(( major - 1 )).8 refused"
