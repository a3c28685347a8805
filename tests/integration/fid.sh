#!/usr/bin/env bash
# FID from the command line: the built-in feature net trained briefly on Fashion-MNIST,
# `vdm fid-stats` of two folders of real PNGs (written with Debian's python3-pil) and of the
# quickstart config's test split, `vdm fid` of stats and folders (0 for identical inputs,
# positive otherwise, the same number either way), numpy reading our .npz, and the errors for
# a bad .npz, an .npz without mu, a non-TorchScript features file and a feature-size mismatch.
set -euo pipefail
VDM=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
FM=/usr/share/datasets/fashion-mnist
[ -d "$FM" ] || { echo "fid: SKIPPED ($FM missing; apt-get install dataset-fashion-mnist)"; exit 0; }

# Two folders of 28 px gray images: bright blobs on dark (A) and stripes (B); A2 is A again.
/usr/bin/python3 - "$WORK" <<'PY'
import os, sys, random
from PIL import Image, ImageDraw
root = sys.argv[1]
random.seed(0)
for name in ["A", "B"]:
    os.makedirs(os.path.join(root, name))
    for i in range(24):
        img = Image.new("L", (28, 28), 20)
        d = ImageDraw.Draw(img)
        if name == "A":
            x, y, r = random.randrange(6, 22), random.randrange(6, 22), random.randrange(3, 8)
            d.ellipse((x - r, y - r, x + r, y + r), fill=random.randrange(150, 255))
        else:
            for k in range(0, 28, random.randrange(3, 7)):
                d.rectangle((k, 0, k + 1, 27), fill=random.randrange(100, 255))
        img.save(os.path.join(root, name, f"{i:03d}.png"))
PY

"$VDM" fid-features train --out "$WORK/net.pt" --steps 60 --eval-samples 1000 --threads 1 \
  > "$WORK/train.txt" 2> "$WORK/train.err" || fail "fid-features train: $(cat "$WORK/train.err")"
grep -q "held-out accuracy: 0\.[0-9]* (1000 images of split test)" "$WORK/train.txt" \
  || fail "accuracy line: $(cat "$WORK/train.txt")"
acc=$(sed -n 's/held-out accuracy: \([0-9.]*\).*/\1/p' "$WORK/train.txt")
awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }' || fail "accuracy $acc after 60 steps"
[ -s "$WORK/net.pt" ] || fail "net.pt"

"$VDM" fid-stats "$WORK/A" --features "$WORK/net.pt" --out "$WORK/a.npz" > "$WORK/sa.txt" 2>/dev/null
grep -q "wrote $WORK/a.npz: 24 images from $WORK/A, net.pt (128-d features)" "$WORK/sa.txt" \
  || fail "fid-stats summary: $(cat "$WORK/sa.txt")"
"$VDM" fid-stats "$WORK/B" --inception "$WORK/net.pt" --out "$WORK/b.npz" --compress > /dev/null 2>&1
/usr/bin/python3 - "$WORK" <<'PY' || fail "numpy cannot read our .npz"
import sys, numpy as np
for name in ["a.npz", "b.npz"]:
    f = np.load(f"{sys.argv[1]}/{name}")
    assert sorted(f.files) == ["mu", "sigma"], f.files
    assert f["mu"].shape == (128,) and f["sigma"].shape == (128, 128) and f["sigma"].dtype == np.float64
    assert np.allclose(f["sigma"], f["sigma"].T)
np.savez(f"{sys.argv[1]}/no_mu.npz", sigma=np.eye(3))
np.savez(f"{sys.argv[1]}/d64.npz", mu=np.zeros(64), sigma=np.eye(64))
PY

same=$("$VDM" fid "$WORK/a.npz" "$WORK/a.npz" 2>/dev/null | tail -n 1)
[ "$same" = "0.000000" ] || fail "FID of identical stats: $same"
ab=$("$VDM" fid "$WORK/a.npz" "$WORK/b.npz" 2>/dev/null | tail -n 1)
awk -v f="$ab" 'BEGIN { exit !(f > 0) }' || fail "FID of different stats: $ab"
folder_vs_stats=$("$VDM" fid "$WORK/A" "$WORK/b.npz" --features "$WORK/net.pt" 2>/dev/null | tail -n 1)
[ "$folder_vs_stats" = "$ab" ] || fail "folder A vs b.npz gives $folder_vs_stats, a.npz vs b.npz $ab"
folders=$("$VDM" fid "$WORK/A" "$WORK/A" --features "$WORK/net.pt" 2>/dev/null | tail -n 1)
[ "$folders" = "0.000000" ] || fail "FID of a folder with itself: $folders"

# The quickstart config's test split (Fashion-MNIST at 16 px), the first 300 images.
"$VDM" fid-stats --config quickstart --split test --num 300 --features "$WORK/net.pt" \
  --out "$WORK/fm.npz" > "$WORK/fm.txt" 2>/dev/null || fail "fid-stats --config"
grep -q "300 images from $FM (idx, split test, 16 px)" "$WORK/fm.txt" || fail "fm: $(cat "$WORK/fm.txt")"

expect_error() {  # expect_error CODE PATTERN -- command...
  local code=$1 pattern=$2; shift 3
  set +e
  "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"
  local got=$?
  set -e
  [ $got -eq "$code" ] || fail "exit $got (want $code) from $*: $(cat "$WORK/err.txt")"
  grep -q -- "$pattern" "$WORK/err.txt" || fail "no '$pattern' in: $(cat "$WORK/err.txt")"
  [ "$(wc -l < "$WORK/err.txt")" -le 2 ] || fail "more than a message: $(cat "$WORK/err.txt")"
}
echo "mu = 1" > "$WORK/bad.npz"
expect_error 2 "bad.npz: not an .npz file" -- "$VDM" fid "$WORK/bad.npz" "$WORK/a.npz"
expect_error 2 "no_mu.npz: no array 'mu'" -- "$VDM" fid "$WORK/no_mu.npz" "$WORK/a.npz"
expect_error 2 "128-d statistics and .*d64.npz 64-d" -- "$VDM" fid "$WORK/a.npz" "$WORK/d64.npz"
echo "not a network" > "$WORK/bogus.pt"
expect_error 2 "bogus.pt is not a TorchScript module" -- \
  "$VDM" fid-stats "$WORK/A" --features "$WORK/bogus.pt" --out "$WORK/x.npz"
expect_error 2 "gives 128-d features, but .*d64.npz holds 64-d" -- \
  "$VDM" fid "$WORK/A" "$WORK/d64.npz" --features "$WORK/net.pt"
expect_error 2 "needs a feature network" -- "$VDM" fid "$WORK/A" "$WORK/a.npz"
expect_error 2 "nowhere does not exist" -- "$VDM" fid "$WORK/nowhere" "$WORK/a.npz"
[ ! -e "$WORK/x.npz" ] || fail "a failed fid-stats left x.npz"
echo "fid: all checks passed"
