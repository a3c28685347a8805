#!/usr/bin/env bash
# Held-out splits that are really held out, from the command line: `vdm pack` writes one shard
# set per split (DIR/train, DIR/test of Fashion-MNIST's idx files; DIR/train, DIR/val of an
# image folder written with Debian's python3-pil), --split packs only the ones named, a split the
# source lacks exits 2 naming the folder; then `vdm train` on packed data whose eval split does
# not exist must exit 2, naming the split, before any training step.
set -euo pipefail
VDM=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
count_of() { sed -n 's/^  "count": \([0-9]*\),$/\1/p' "$1"; }  # dataset.json's image count

FM=/usr/share/datasets/fashion-mnist
if [ -d "$FM" ]; then
  "$VDM" pack "$FM" --resolution 8 --out "$WORK/fm" > "$WORK/fm.txt" 2> "$WORK/fm.err" \
    || fail "pack fashion-mnist: $(cat "$WORK/fm.err")"
  grep -q "^split train: packed 60000 images (0 skipped) into 6 shards (0 already complete), .* -> $WORK/fm/train$" \
    "$WORK/fm.txt" || fail "train line: $(cat "$WORK/fm.txt")"
  grep -q "^split test: packed 10000 images (0 skipped) into 1 shards (0 already complete), .* -> $WORK/fm/test$" \
    "$WORK/fm.txt" || fail "test line: $(cat "$WORK/fm.txt")"
  grep -q "pack: 10000/10000 images (0 skipped), .*, split test" "$WORK/fm.err" || fail "progress: $(cat "$WORK/fm.err")"
  [ "$(count_of "$WORK/fm/train/dataset.json")" = 60000 ] || fail "fm/train count"
  [ "$(count_of "$WORK/fm/test/dataset.json")" = 10000 ] || fail "fm/test count"
  [ ! -e "$WORK/fm/dataset.json" ] && [ ! -e "$WORK/fm/shard_00000.bin" ] || fail "shards directly in the pack folder"
  [ "$(stat -c %s "$WORK/fm/test/shard_00000.bin")" -eq $((10000 * 8 * 8)) ] || fail "fm/test shard size"
  # The test images are not the training images.
  cmp -s -n 6400 "$WORK/fm/train/shard_00000.bin" "$WORK/fm/test/shard_00000.bin" && fail "test shard = train shard"
  # A re-run keeps every complete shard.
  "$VDM" pack "$FM" --resolution 8 --out "$WORK/fm" > "$WORK/fm2.txt" 2>/dev/null
  grep -q "split train: .* into 6 shards (6 already complete)" "$WORK/fm2.txt" || fail "resume: $(cat "$WORK/fm2.txt")"
  # Only the split asked for.
  "$VDM" pack "$FM" --split test --resolution 8 --out "$WORK/fm_test" > "$WORK/fm3.txt" 2>/dev/null
  [ -d "$WORK/fm_test/test" ] && [ ! -e "$WORK/fm_test/train" ] || fail "--split test packed: $(ls "$WORK/fm_test")"
  set +e
  "$VDM" pack "$FM" --split val --resolution 8 --out "$WORK/fm_val" > /dev/null 2> "$WORK/fm_val.err"
  code=$?
  set -e
  [ $code -eq 2 ] && grep -q "t10k-images-idx3-ubyte" "$WORK/fm_val.err" && [ ! -e "$WORK/fm_val" ] \
    || fail "idx --split val: exit $code, $(cat "$WORK/fm_val.err")"
  echo "fashion-mnist: train (60000) and test (10000) packed apart"
else
  echo "pack_splits: Fashion-MNIST part SKIPPED ($FM missing; apt-get install dataset-fashion-mnist)"
fi

# An image folder with train/ (3 classes x 4) and val/ (3 classes x 2).
/usr/bin/python3 - "$WORK/src" <<'PY'
import os, sys, random
from PIL import Image
root = sys.argv[1]
random.seed(1)
for split, n in [("train", 4), ("val", 2)]:
    for c, cls in enumerate(["cat", "dog", "fox"]):
        os.makedirs(os.path.join(root, split, cls))
        for i in range(n):
            img = Image.new("RGB", (40, 32), (60 * c, 200 if split == "val" else 30, 90))
            for _ in range(8):
                x, y = random.randrange(30), random.randrange(22)
                img.paste((random.randrange(256), random.randrange(256), random.randrange(256)), (x, y, x + 10, y + 10))
            img.save(os.path.join(root, split, cls, f"{i}.{'png' if i % 2 else 'jpg'}"))
PY
"$VDM" pack "$WORK/src" --resolution 8 --out "$WORK/img" --shard-size 5 > "$WORK/img.txt" 2> "$WORK/img.err" \
  || fail "pack image folder: $(cat "$WORK/img.err")"
grep -q "^split train: packed 12 images (0 skipped) into 3 shards .* -> $WORK/img/train$" "$WORK/img.txt" \
  || fail "train line: $(cat "$WORK/img.txt")"
grep -q "^split val: packed 6 images (0 skipped) into 2 shards .* -> $WORK/img/val$" "$WORK/img.txt" \
  || fail "val line: $(cat "$WORK/img.txt")"
[ "$(count_of "$WORK/img/train/dataset.json")" = 12 ] && [ "$(count_of "$WORK/img/val/dataset.json")" = 6 ] \
  || fail "image folder counts"
"$VDM" pack "$WORK/src" --resolution 8 --out "$WORK/img_list" --split val,train > "$WORK/list.txt" 2>/dev/null
[ "$(grep -c '^split ' "$WORK/list.txt")" -eq 2 ] && head -1 "$WORK/list.txt" | grep -q "^split val:" \
  || fail "--split val,train: $(cat "$WORK/list.txt")"
set +e
"$VDM" pack "$WORK/src" --split test --resolution 8 --out "$WORK/img_test" > /dev/null 2> "$WORK/img_test.err"
code=$?
set -e
[ $code -eq 2 ] && grep -q "$WORK/src/test does not exist (its split folders: train, val)" "$WORK/img_test.err" \
  || fail "image folder --split test: exit $code, $(cat "$WORK/img_test.err")"
echo "image folder: train (12) and val (6) packed apart; a missing split exits 2"

# Training on packed data whose eval split was never packed: refused before the first step.
set +e
"$VDM" train model.preset=tiny data.format=packed "data.path=$WORK/img" data.resolution=8 data.split=train \
  data.eval_split=test data.workers=1 train.batch_size=4 train.threads=1 train.log_every=1 train.steps=3 \
  checkpoint.every=1 eval.num_samples=4 eval.steps=4 eval.bpd_samples=6 eval.batch_size=6 eval.fid.enabled=false \
  --run-dir "$WORK/run" > "$WORK/train.log" 2>&1
code=$?
set -e
steps=$(grep -c '"step"' "$WORK/run/metrics.jsonl" 2>/dev/null || true)
[ $code -eq 2 ] || fail "vdm train with a missing eval split should exit 2 before training, got $code after ${steps:-0} step(s): $(grep -m1 '^vdm:' "$WORK/train.log" || tail -5 "$WORK/train.log")"
grep -q "no split 'test'" "$WORK/train.log" && grep -q "$WORK/img/test" "$WORK/train.log" \
  || fail "the message should name split test and $WORK/img/test: $(tail -5 "$WORK/train.log")"
grep -q "vdm pack .* --split test" "$WORK/train.log" || fail "the message should give the fix: $(tail -5 "$WORK/train.log")"
[ ! -s "$WORK/run/metrics.jsonl" ] || fail "a training step ran: $(head -2 "$WORK/run/metrics.jsonl")"
[ -z "$(ls -A "$WORK/run/checkpoints" 2>/dev/null)" ] || fail "a checkpoint was written: $(ls "$WORK/run/checkpoints")"
echo "pack_splits: all checks passed"
