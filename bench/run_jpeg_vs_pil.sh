#!/usr/bin/env bash
# Side-by-side JPEG decode + ADM center crop/resize throughput, one thread each: vdm
# (bench/jpeg_decode_resize) against Pillow (bench/pil_decode_resize.py) on the same 64
# synthetic ImageNet-sized JPEGs, and the ratio vdm img/s / Pillow img/s. Both count img per
# second of CPU time, so other jobs on the machine skew the ratio little. Builds nothing.
# Usage: bench/run_jpeg_vs_pil.sh [BUILD_DIR] [IMAGE_DIR]
#   BUILD_DIR  where jpeg_decode_resize was built (default: build); IMAGE_DIR: use (or create)
#   these JPEGs instead of a temporary set. PYTHON=... picks the interpreter (needs Pillow,
#   numpy); RESOLUTION=... (default 64).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
bin="$build/bench/jpeg_decode_resize"
res="${RESOLUTION:-64}"
[[ -x "$bin" ]] || { echo "error: $bin not found; build it: ninja -C $build jpeg_decode_resize" >&2; exit 2; }

python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c "import PIL, numpy" 2>/dev/null; then python="$p"; break; fi
done
[[ -n "$python" ]] || { echo "error: no Python with Pillow and numpy (apt install python3-pil python3-numpy, or set PYTHON)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
images="${2:-$work/images}"

echo "== vdm (TurboJPEG + libpng, C++) =="
"$bin" --images="$images" --resolution="$res" --benchmark_filter='BM_DecodeCropResize' \
  --benchmark_out="$work/vdm.json" --benchmark_out_format=json
echo
echo "== Pillow ($python) =="
"$python" "$here/pil_decode_resize.py" "$images" --resolution "$res" --json "$work/pil.json"
echo

"$python" - "$work/vdm.json" "$work/pil.json" <<'EOF'
import json, sys
vdm = {b["name"]: b["items_per_second"] for b in json.load(open(sys.argv[1]))["benchmarks"]}
pil = json.load(open(sys.argv[2]))
def find(arg):
    return next(v for k, v in vdm.items() if f"min_side_x_R:{arg}" in k)
full, dct = find(0), find(1)
adm, draft = pil["adm_img_per_s"], pil["adm_draft_img_per_s"]
print(f"== ratio (one thread, CPU time, {pil['files']} JPEGs, {pil['resolution']} px) ==")
print(f"vdm full decode      {full:8.1f} img/s   / Pillow ADM path        {adm:8.1f} img/s = {full / adm:5.2f}x")
print(f"vdm DCT-scaled       {dct:8.1f} img/s   / Pillow ADM path        {adm:8.1f} img/s = {dct / adm:5.2f}x")
print(f"vdm DCT-scaled       {dct:8.1f} img/s   / Pillow draft + ADM     {draft:8.1f} img/s = {dct / draft:5.2f}x")
EOF
