#!/usr/bin/env python3
# The Python peer of bench/jpeg_decode_resize.cpp: single-process, single-thread img/s of
# Pillow JPEG decode + ADM's center_crop_arr (box halvings, BICUBIC, center crop) on the same
# JPEG files, read into memory first so that neither side times file I/O. Rates are per second
# of process CPU time (as Google Benchmark's items_per_second is).
# Usage: pil_decode_resize.py DIR [--resolution 64] [--min-time 3] [--json OUT.json]
import argparse
import glob
import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image


def center_crop_arr(pil_image, image_size):
    # guided-diffusion image_datasets.py, verbatim in behaviour.
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y:crop_y + image_size, crop_x:crop_x + image_size]


def adm(data, resolution):
    # ADM's loader: open, load, convert("RGB"), center_crop_arr.
    img = Image.open(io.BytesIO(data))
    img.load()
    return center_crop_arr(img.convert("RGB"), resolution)


def adm_draft(data, resolution):
    # The same with Pillow's draft mode: libjpeg DCT scaling by 1/2..1/8 while both sides stay
    # >= resolution -- the counterpart of vdm's min_side = R.
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (resolution, resolution))
    img.load()
    return center_crop_arr(img.convert("RGB"), resolution)


def measure(fn, blobs, resolution, min_time):
    # Process CPU time, like Google Benchmark's default items_per_second on the C++ side, so
    # that other jobs sharing the machine inflate neither figure.
    for b in blobs[:8]:  # warm-up
        fn(b, resolution)
    n, start = 0, time.process_time()
    while True:
        for b in blobs:
            out = fn(b, resolution)
            assert out.shape == (resolution, resolution, 3)
        n += len(blobs)
        elapsed = time.process_time() - start
        if elapsed >= min_time:
            return n / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    paths = sorted(p for p in glob.glob(os.path.join(args.dir, "*")) if p.lower().endswith((".jpg", ".jpeg")))
    if not paths:
        sys.exit(f"no JPEG files in {args.dir}")
    blobs = [open(p, "rb").read() for p in paths]
    results = {
        "files": len(blobs),
        "resolution": args.resolution,
        "pillow": Image.__version__,
        "adm_img_per_s": measure(adm, blobs, args.resolution, args.min_time),
        "adm_draft_img_per_s": measure(adm_draft, blobs, args.resolution, args.min_time),
    }
    print(f"Pillow {results['pillow']}, {len(blobs)} JPEGs, {args.resolution} px, one thread, CPU time:")
    print(f"  decode + center_crop_arr           {results['adm_img_per_s']:8.1f} img/s")
    print(f"  draft decode + center_crop_arr     {results['adm_draft_img_per_s']:8.1f} img/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
