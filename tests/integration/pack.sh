#!/usr/bin/env bash
# `vdm pack` as a user runs it: an ImageNet-style folder of real JPEG/PNG files (written with
# Debian's python3-pil), plus a truncated JPEG and a stray text file; the summary, the shard
# files (in DIR/train: a folder without split folders is the split train), the resume of an
# interrupted pack, --on-error fail, and the idx source.
set -euo pipefail
VDM=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

/usr/bin/python3 - "$WORK/src" <<'PY'
import os, sys, random
from PIL import Image
root = sys.argv[1]
random.seed(0)
for c, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
    os.makedirs(os.path.join(root, wnid))
    for i in range(7):
        w, h = random.choice([(500, 375), (375, 500), (320, 240)])
        img = Image.new("RGB", (w, h), (40 * c, 90, 200 - 50 * c))
        for _ in range(30):
            x, y = random.randrange(w - 20), random.randrange(h - 20)
            img.paste((random.randrange(256), random.randrange(256), random.randrange(256)), (x, y, x + 20, y + 20))
        ext = "JPEG" if i % 3 else "png"
        img.save(os.path.join(root, wnid, f"{wnid}_{i}.{ext}"))
data = open(os.path.join(root, "n01443537", "n01443537_1.JPEG"), "rb").read()
open(os.path.join(root, "n01443537", "n01443537_1.JPEG"), "wb").write(data[: len(data) // 3])
open(os.path.join(root, "n01484850", "README.txt"), "w").write("not an image\n")
PY

"$VDM" pack "$WORK/src" --resolution 16 --out "$WORK/p16" --shard-size 8 --threads 2 \
  > "$WORK/out.txt" 2> "$WORK/err.txt"
grep -q "packed 20 images (2 skipped) into 3 shards (0 already complete)" "$WORK/out.txt" \
  || fail "summary: $(cat "$WORK/out.txt")"
grep -q "pack: 22/22 images (2 skipped)" "$WORK/err.txt" || fail "progress: $(cat "$WORK/err.txt")"
grep -q "n01443537_1.JPEG" "$WORK/err.txt" || fail "the broken file is named in a warning"
# A plain <class>/<images> folder is the single split train: DIR/train.
[ -f "$WORK/p16/train/dataset.json" ] && [ -f "$WORK/p16/train/shard_00002.bin" ] || fail "shard files"
[ "$(stat -c %s "$WORK/p16/train/shard_00000.bin")" -eq $((8 * 3 * 16 * 16)) ] || fail "shard 0 size"
grep -q '"resolution": 16' "$WORK/p16/train/dataset.json" || fail "dataset.json"

# interrupted pack: a shard without its JSON is rebuilt, the others are kept
rm "$WORK/p16/train/shard_00001.json"
"$VDM" pack "$WORK/src" --resolution 16 --out "$WORK/p16" --shard-size 8 > "$WORK/out2.txt" 2>/dev/null
grep -q "into 3 shards (2 already complete)" "$WORK/out2.txt" || fail "resume: $(cat "$WORK/out2.txt")"

set +e
"$VDM" pack "$WORK/src" --resolution 16 --out "$WORK/strict" --on-error fail > /dev/null 2> "$WORK/err3.txt"
code=$?
"$VDM" pack "$WORK/nowhere" --resolution 16 --out "$WORK/x" > /dev/null 2> "$WORK/err4.txt"
code4=$?
set -e
[ $code -ne 0 ] && grep -q "n01443537_1.JPEG" "$WORK/err3.txt" || fail "--on-error fail: $code $(cat "$WORK/err3.txt")"
[ $code4 -eq 2 ] && grep -q "nowhere" "$WORK/err4.txt" || fail "missing source: $code4"

if [ -d /usr/share/datasets/fashion-mnist ]; then
  "$VDM" pack /usr/share/datasets/fashion-mnist --split test --resolution 32 --out "$WORK/fm" \
    --shard-size 5000 > "$WORK/fm.txt" 2>/dev/null
  grep -q "packed 10000 images (0 skipped) into 2 shards" "$WORK/fm.txt" || fail "idx: $(cat "$WORK/fm.txt")"
  [ "$(stat -c %s "$WORK/fm/test/shard_00000.bin")" -eq $((5000 * 32 * 32)) ] || fail "idx shard size"
fi
echo "pack: all checks passed"
