#!/usr/bin/env bash
# `vdm sample` as a user runs it, on a tiny model trained for a few steps: a grid PNG and a
# folder of PNGs for each sampler, with the right sizes and decodable; the same seed gives the
# same files and another seed other ones; mpiexec with 2 and 3 ranks gives the very same
# images as one process; EMA weights, a checkpoint folder, class labels and guidance; and a
# bad path ends with a clear message and a non-zero exit.
set -euo pipefail
VDM=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=/usr/bin/python3  # Debian's, which has PIL
MPI=(mpiexec --oversubscribe)
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=8 train.threads=1
        train.steps=4 train.log_every=1 eval.num_samples=4 eval.steps=4 eval.bpd_samples=16
        eval.batch_size=16)

"$VDM" train "${COMMON[@]}" --run-dir "$WORK/run" > "$WORK/train.log" 2>&1 || fail "train: $(tail -5 "$WORK/train.log")"
"$VDM" train "${COMMON[@]}" model.num_classes=10 --run-dir "$WORK/cond" > "$WORK/train_cond.log" 2>&1 \
  || fail "train (conditional): $(tail -5 "$WORK/train_cond.log")"

# png_size FILE -> "WIDTHxHEIGHT MODE", decoding the whole image.
png_size() {
  "$PY" - "$1" <<'PY'
import sys
from PIL import Image
im = Image.open(sys.argv[1]); im.load()
print(f"{im.size[0]}x{im.size[1]} {im.mode}")
PY
}
same_dirs() {  # dir A, dir B, count
  local i f
  for i in $(seq 0 $(($3 - 1))); do
    f=$(printf 'sample_%06d.png' "$i")
    cmp -s "$1/$f" "$2/$f" || fail "$f differs between $1 and $2"
  done
  [ "$(ls "$2" | wc -l)" -eq "$3" ] || fail "$2 should hold $3 files"
}

# 6 images of 1x16x16 in a grid: 3 columns x 2 rows of 64x64 tiles (enlarged 4x) with 2 px padding.
for sampler in ancestral ddim heun; do
  steps=4
  [ $sampler = heun ] && steps=3
  args=(--num 6 --sampler $sampler --steps $steps --batch 4 --seed 7)
  "$VDM" sample "$WORK/run" "${args[@]}" --out "$WORK/$sampler.png" > "$WORK/$sampler.log" 2>&1 \
    || fail "$sampler grid: $(tail -5 "$WORK/$sampler.log")"
  [ "$(png_size "$WORK/$sampler.png")" = "200x134 L" ] || fail "$sampler grid is $(png_size "$WORK/$sampler.png")"
  "$VDM" sample "$WORK/run" "${args[@]}" --out "$WORK/$sampler" > "$WORK/${sampler}_dir.log" 2>&1 \
    || fail "$sampler folder: $(tail -5 "$WORK/${sampler}_dir.log")"
  for f in "$WORK/$sampler"/sample_00000{0..5}.png; do
    [ "$(png_size "$f")" = "16x16 L" ] || fail "$f is $(png_size "$f")"
  done
  "$VDM" sample "$WORK/run" "${args[@]}" --out "$WORK/${sampler}_again.png" > /dev/null 2>&1 || fail "$sampler again"
  cmp -s "$WORK/$sampler.png" "$WORK/${sampler}_again.png" || fail "$sampler: the same seed gave another grid"
  "${MPI[@]}" -np 2 "$VDM" sample "$WORK/run" "${args[@]}" --out "$WORK/${sampler}_np2" > "$WORK/${sampler}_np2.log" 2>&1 \
    || fail "$sampler under mpiexec: $(tail -5 "$WORK/${sampler}_np2.log")"
  grep -q "2 rank(s)" "$WORK/${sampler}_np2.log" || fail "not a 2-rank run: $(head -3 "$WORK/${sampler}_np2.log")"
  same_dirs "$WORK/$sampler" "$WORK/${sampler}_np2" 6
  echo "$sampler: grid and folder written; same seed, same files; 2 ranks = 1 process"
done

# Three ranks, one of which is left without a batch of 4.
"${MPI[@]}" -np 3 "$VDM" sample "$WORK/run" --num 6 --sampler ddim --steps 4 --batch 4 --seed 7 --out "$WORK/ddim_np3" \
  > "$WORK/np3.log" 2>&1 || fail "3 ranks: $(tail -5 "$WORK/np3.log")"
same_dirs "$WORK/ddim" "$WORK/ddim_np3" 6

# The grid holds the folder's images, in order.
"$PY" - "$WORK/ancestral.png" "$WORK/ancestral" <<'PY' || fail "the grid's tiles are not the folder's images"
import sys
from PIL import Image
grid = Image.open(sys.argv[1])
for n in range(6):
    one = Image.open(f"{sys.argv[2]}/sample_{n:06d}.png").resize((64, 64), Image.NEAREST)
    x, y = 2 + (n % 3) * 66, 2 + (n // 3) * 66
    assert list(grid.crop((x, y, x + 64, y + 64)).getdata()) == list(one.getdata()), n
PY

"$VDM" sample "$WORK/run" --num 6 --steps 4 --seed 8 --out "$WORK/seed8.png" > /dev/null 2>&1 || fail "seed 8"
"$VDM" sample "$WORK/run" --num 6 --steps 4 --seed 7 --out "$WORK/seed7.png" > /dev/null 2>&1 || fail "seed 7"
! cmp -s "$WORK/seed7.png" "$WORK/seed8.png" || fail "another seed gave the same grid"

# EMA weights, a checkpoint folder, labels and guidance.
"$VDM" sample "$WORK/run/checkpoints/step_00000004" --ema --num 2 --steps 2 --out "$WORK/ema.png" > "$WORK/ema.log" 2>&1 \
  || fail "--ema from a checkpoint folder: $(tail -5 "$WORK/ema.log")"
grep -q "EMA weights" "$WORK/ema.log" || fail "--ema: $(cat "$WORK/ema.log")"
"$VDM" sample "$WORK/cond" --num 3 --steps 3 --class 4 --guidance 2 --out "$WORK/guided.png" > "$WORK/guided.log" 2>&1 \
  || fail "guided: $(tail -5 "$WORK/guided.log")"
[ "$(png_size "$WORK/guided.png")" = "134x134 L" ] || fail "guided grid is $(png_size "$WORK/guided.png")"
echo "EMA, checkpoint folder, class and guidance: fine"

# Bad inputs: one clear line, non-zero exit, nothing written.
expect_error() {  # pattern, command...
  local pattern=$1 code
  shift
  set +e
  "$@" > "$WORK/err.log" 2>&1
  code=$?
  set -e
  [ $code -ne 0 ] || fail "should have failed: $*"
  grep -q "$pattern" "$WORK/err.log" || fail "message for '$*': $(cat "$WORK/err.log")"
}
expect_error "$WORK/missing: no such run directory" "$VDM" sample "$WORK/missing" --num 2 --out "$WORK/x.png"
mkdir "$WORK/empty"
expect_error "neither a run directory" "$VDM" sample "$WORK/empty" --num 2 --out "$WORK/x.png"
mkdir -p "$WORK/fresh/checkpoints"
expect_error "no complete checkpoint" "$VDM" sample "$WORK/fresh" --num 2 --out "$WORK/x.png"
expect_error "is unconditional" "$VDM" sample "$WORK/run" --num 2 --class 1 --out "$WORK/x.png"
expect_error "sampler" "$VDM" sample "$WORK/run" --num 2 --sampler euler --out "$WORK/x.png"
[ ! -e "$WORK/x.png" ] || fail "a failed run wrote its output"
echo "bad inputs: clear messages"
