#!/usr/bin/env bash
# RUN/tb/ after a real `vdm train` of the quickstart and a resume, read back in Python by a reader
# independent of vdm's: its own CRC-32C and TFRecord framing, and the Event classes protoc
# generates from proto/tensorboard_event.proto for Python. Also the utilisation fields (MFU,
# memory, the step's profile) of every metrics line. Skipped (77) without protoc,
# python3-protobuf or Fashion-MNIST, or when vdm was built without TensorBoard support.
set -euo pipefail
VDM=$1
SRC=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=/usr/bin/python3  # Debian's, which has python3-protobuf
command -v protoc > /dev/null || { echo "SKIP: no protoc (Debian: protobuf-compiler)"; exit 77; }
"$PY" -c 'import google.protobuf' 2> /dev/null || { echo "SKIP: no python3-protobuf for $PY"; exit 77; }

# The quickstart (configs/quickstart.yaml, Fashion-MNIST), cut to a few steps and a small evaluation.
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
  { echo "SKIP: no Fashion-MNIST (Debian: dataset-fashion-mnist)"; exit 77; }
COMMON=("$SRC/configs/quickstart.yaml" data.workers=1 train.batch_size=16 train.threads=1
        train.log_every=1 checkpoint.every=4 eval.num_samples=4 eval.steps=4 eval.bpd_samples=32
        eval.bpd_draws=1 eval.batch_size=32 eval.fid.enabled=false)
"$VDM" train "${COMMON[@]}" train.steps=8 --run-dir "$WORK/run" > "$WORK/first.log" 2>&1 \
  || fail "first run: $(tail -5 "$WORK/first.log")"
if grep -q "tensorboard: not built in" "$WORK/first.log"; then
  echo "SKIP: vdm was built without TensorBoard support (VDM_WITH_TENSORBOARD=OFF)"; exit 77
fi
# Resumed from the step-8 checkpoint: a second events file that starts a session at step 9.
"$VDM" train "${COMMON[@]}" train.steps=12 --run-dir "$WORK/run" > "$WORK/second.log" 2>&1 \
  || fail "resumed run: $(tail -5 "$WORK/second.log")"
grep -q "resumed from .*step_00000008" "$WORK/second.log" || fail "did not resume: $(head "$WORK/second.log")"
grep -q "MFU [0-9]*%  mem [0-9]* MiB" "$WORK/first.log" || fail "no MFU and memory on the progress line: $(grep step "$WORK/first.log" | tail -2)"

mkdir "$WORK/py"
protoc -I "$SRC" --python_out="$WORK/py" "$SRC/proto/tensorboard_event.proto"
GFLOP=$("$VDM" inspect model "$WORK/run/config.yaml" | awk '/^forward GFLOP per image:/ {print $NF}')
"$PY" - "$WORK/py/proto" "$WORK/run" "$GFLOP" <<'PY'
import glob, json, os, struct, sys
sys.path.insert(0, sys.argv[1])
import tensorboard_event_pb2 as pb

run = sys.argv[2]
gflop = float(sys.argv[3])  # forward GFLOP per image, from `vdm inspect model`

# CRC-32C, bitwise (nothing shared with vdm's table-driven C++), and TFRecord's mask.
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283

def events(path):
    data = open(path, "rb").read()
    at, out = 0, []
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert header_crc == masked(crc32c(header)), f"{path}: bad length CRC at {at}"
        body = data[at + 12:at + 12 + length]
        assert len(body) == length, f"{path}: torn record at {at}"
        (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert body_crc == masked(crc32c(body)), f"{path}: bad data CRC at {at}"
        e = pb.Event()
        e.ParseFromString(body)
        out.append(e)
        at += 16 + length
    return out

files = sorted(glob.glob(os.path.join(run, "tb", "*")))
assert len(files) == 2, f"want one events file per process, got {files}"
for f in files:
    assert "tfevents" in os.path.basename(f), f
    assert os.path.basename(f).startswith("events.out.tfevents."), f

def contents(path):
    evs = events(path)
    assert evs[0].file_version == "brain.Event:2", evs[0]
    starts = [e.step for e in evs if e.HasField("session_log") and e.session_log.status == pb.SessionLog.START]
    scalars, images = {}, {}
    for e in evs:
        for v in e.summary.value:
            if v.WhichOneof("value") == "simple_value":
                scalars.setdefault(v.tag, {})[e.step] = v.simple_value
            elif v.WhichOneof("value") == "image":
                images.setdefault(v.tag, {})[e.step] = v.image
    return starts, scalars, images

starts1, scalars1, images1 = contents(files[0])
starts2, scalars2, images2 = contents(files[1])
assert starts1 == [0], starts1
assert starts2 == [9], f"resume from step 8 should start a session at step 9: {starts2}"

# Every metrics.jsonl line is in the events, as train/<field> at its step, to float precision.
metrics = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [m["step"] for m in metrics] == list(range(1, 13)), [m["step"] for m in metrics]
for m in metrics:
    got = (scalars1 if m["step"] <= 8 else scalars2)
    for k, want in m.items():
        if k in ("step", "epoch") or isinstance(want, bool) or not isinstance(want, (int, float)):
            continue
        tag = "train/" + k
        assert tag in got and m["step"] in got[tag], f"{tag} missing at step {m['step']}"
        assert abs(got[tag][m["step"]] - want) <= 1e-6 * max(1.0, abs(want)), (tag, got[tag][m["step"]], want)
assert "train/step" not in scalars1 and "train/epoch" not in scalars1
# Utilisation and the step's profile ride along in every line (and so in TensorBoard).
phases = ["data", "forward", "backward", "metrics", "reduce", "clip", "optimizer", "ema"]
for m in metrics:
    assert m["tflops"] > 0 and 0 < m["mfu"] < 1.5, (m["tflops"], m["mfu"])
    want = m["img_per_s"] * 3 * gflop * 1e9 / 1e12  # forward + backward = 3 forwards
    assert abs(m["tflops"] - want) <= 1e-3 * want, (m["tflops"], want)
    assert 50 < m["max_rss_mib"] < 8192, m["max_rss_mib"]
    assert all(m["ms_" + p] >= 0 for p in phases), {p: m.get("ms_" + p) for p in phases}
    assert m["ms_forward"] > 0 and m["ms_backward"] > 0 and m["ms_optimizer"] > 0, m
assert set(scalars2["train/loss"]) == set(range(9, 13)), scalars2["train/loss"]

# The evaluations: eval/bpd at steps 8 and 12, and the sample grids as the PNGs on disk.
evals = [json.loads(l) for l in open(os.path.join(run, "eval.jsonl"))]
for rec, (scalars, images) in zip(evals, [(scalars1, images1), (scalars2, images2)]):
    step = rec["step"]
    assert abs(scalars["eval/bpd"][step] - rec["bpd"]) <= 1e-6 * rec["bpd"], (scalars["eval/bpd"], rec["bpd"])
    image = images["samples"][step]
    png = open(os.path.join(run, "samples", "step_%08d.png" % step), "rb").read()
    assert image.encoded_image_string == png, "the image is not the sample grid"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (image.width, image.height) == (width, height), (image.width, image.height, width, height)
    assert image.colorspace in (1, 3), image.colorspace
assert [r["step"] for r in evals] == [8, 12], [r["step"] for r in evals]
print(f"tensorboard: {len(files)} files; {len(scalars1)} tags; CRCs, scalars and sample grids check out")
PY
echo "tensorboard: all checks passed"
