#!/usr/bin/python3
"""Concept, random and class image sets from real files in Debian packages.

    /usr/bin/python3 scripts/data/build-real-sets.py OUT_DIR [--seed 0] [--per-set 30]
        [--random-sets 10] [--size 300]

Writes OUT_DIR/<set>/NNN.png (8-bit RGB, size x size) and
OUT_DIR/provenance.json: for every image its package, version and .deb
sha256, the source file and its sha256, and what was done to it (crop box in
source pixels, or pattern scale, rotation and colours). Same seed, same
bytes. The packages are unpacked, not installed (scripts/data/debfiles.py).

Sets:
  striped, zigzagged, dotted  real texture patterns (Krita's Stripes*, Zigzag*,
      screentone and dot-grid patterns; GIMP's stripes), upscaled, tiled,
      rotated and recoloured with two random colours per image
  random500_0..R-1            random crops of real photos (scikit-image and
      scikit-learn sample images, OpenCV's example data, darknet's test photos)
  zebra                       crops around the zebra in darknet's giraffe.jpg,
      the one real zebra photo found in a Debian package; mirrored half the time
"""

import argparse
import colorsys
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debfiles  # noqa: E402

KRITA = "usr/share/krita/patterns/"
GIMP = "usr/share/gimp/2.0/patterns/"

# concept -> (package, file) patterns. The tiles are a few pixels wide, so
# every image scales one up by a random integer factor.
CONCEPTS = {
    "striped": [("krita-data", KRITA + f) for f in (
        "Stripes02.pat", "Stripes03.pat", "Stripes04.pat", "Stripes05.pat", "Stripes06.pat")]
        + [("gimp-data", GIMP + "Legacy/Stripes1px.pat"), ("gimp-data", GIMP + "Legacy/Stripes2px.pat")],
    "zigzagged": [("krita-data", KRITA + f) for f in ("Zigzag01.pat", "Zigzag02.pat", "Zigzag03.pat", "Zigzag04.pat")],
    "dotted": [("krita-data", KRITA + f) for f in (
        "23-dynamic-screentone-A.png", "24-dynamic-screentone-B.png", "Cross01.pat", "Cross02.pat",
        "Squares03.pat", "Squares04.pat")],
}
# Scale factors per concept: the screentone PNGs are already large.
SCALES = {"striped": (2, 7), "zigzagged": (3, 8), "dotted": (2, 6)}

SKIMAGE = "usr/lib/python3/dist-packages/skimage/data/"
SKLEARN = "usr/lib/python3/dist-packages/sklearn/datasets/images/"
OPENCV = "usr/share/doc/opencv-doc/examples/data/"
DARKNET = "usr/share/darknet/data/"
PHOTOS = (
    [("python3-skimage", SKIMAGE + f) for f in (
        "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
        "ihc.png", "camera.png", "coins.png", "moon.png", "grass.png", "gravel.png")]
    + [("python3-sklearn", SKLEARN + f) for f in ("china.jpg", "flower.jpg")]
    + [("opencv-doc", OPENCV + f) for f in (
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
        "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg",
        "rubberwhale1.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "smarties.png")]
    + [("darknet", DARKNET + f) for f in ("dog.jpg", "eagle.jpg", "horses.jpg", "kite.jpg", "person.jpg")]
)
ZEBRA_SOURCE = ("darknet", DARKNET + "giraffe.jpg")
ZEBRA_BOX = (245, 200, 425, 430)  # the zebra in giraffe.jpg (500x500): x0, y0, x1, y1


class BuildError(Exception):
    pass


def read_pattern(path: str) -> np.ndarray:
    """A GIMP/Krita .pat file (header: size, version, width, height, bytes per
    pixel, 'GPAT', name; then the pixels) or a PNG, as HxWx3 uint8 on white."""
    if path.endswith(".pat"):
        with open(path, "rb") as f:
            b = f.read()
        hs, _, w, h, bpp = struct.unpack(">5I", b[:20])
        if b[20:24] != b"GPAT" or bpp not in (1, 2, 3, 4) or len(b) < hs + w * h * bpp:
            raise BuildError("%s: not a GIMP pattern" % path)
        a = np.frombuffer(b[hs:hs + w * h * bpp], np.uint8).reshape(h, w, bpp)
        if bpp in (1, 2):
            a = np.concatenate([np.repeat(a[..., :1], 3, 2), a[..., 1:]], 2)
    else:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGBA"))
    if a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = a[..., :3] * alpha + 255.0 * (1 - alpha)
    return a[..., :3].astype(np.float32)


def random_colour(rng, light: bool):
    h = rng.random()
    s = rng.uniform(0.0, 0.8)
    v = rng.uniform(0.7, 1.0) if light else rng.uniform(0.0, 0.35)
    return [round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)]


def texture_image(pattern: np.ndarray, rng, size: int, scales):
    """Scale the tile up, tile it past the diagonal, rotate, crop the centre,
    then map its luminance from black..white to dark..light colours."""
    scale = int(rng.integers(scales[0], scales[1] + 1))
    angle = float(rng.uniform(0, 180))
    h, w = pattern.shape[:2]
    big = int(size * 1.5) + 2
    tile = np.asarray(Image.fromarray(pattern.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST))
    reps = (big // tile.shape[0] + 2, big // tile.shape[1] + 2, 1)
    canvas = np.tile(tile, reps)
    oy = int(rng.integers(0, tile.shape[0]))
    ox = int(rng.integers(0, tile.shape[1]))
    canvas = canvas[oy:oy + big, ox:ox + big]
    im = Image.fromarray(canvas).rotate(angle, resample=Image.BILINEAR)
    c0 = (big - size) // 2
    lum = np.asarray(im.crop((c0, c0, c0 + size, c0 + size)).convert("L"), np.float32)[..., None] / 255.0
    dark = np.array(random_colour(rng, False), np.float32)
    light = np.array(random_colour(rng, True), np.float32)
    out = dark + (light - dark) * lum
    return out.clip(0, 255).round().astype(np.uint8), {"scale": scale, "rotate_deg": round(angle, 3),
                                                      "tile_offset": [ox, oy], "dark_rgb": dark.astype(int).tolist(),
                                                      "light_rgb": light.astype(int).tolist()}


def random_crop(img: Image.Image, rng, size: int):
    w, h = img.size
    side = int(rng.integers(int(0.3 * min(w, h)), min(w, h) + 1))
    x0 = int(rng.integers(0, w - side + 1))
    y0 = int(rng.integers(0, h - side + 1))
    box = [x0, y0, x0 + side, y0 + side]
    return img.crop(box).resize((size, size), Image.BILINEAR), {"crop_box": box}


def zebra_crop(img: Image.Image, rng, size: int):
    """A square around the zebra: 1 to 1.6 times its larger side, shifted by
    up to a fifth of it, kept inside the photo; mirrored half the time."""
    x0, y0, x1, y1 = ZEBRA_BOX
    zw, zh = x1 - x0, y1 - y0
    side = int(max(zw, zh) * rng.uniform(1.0, 1.6))
    side = min(side, img.size[0], img.size[1])
    cx = (x0 + x1) / 2 + rng.uniform(-0.2, 0.2) * zw
    cy = (y0 + y1) / 2 + rng.uniform(-0.2, 0.2) * zh
    bx = int(min(max(cx - side / 2, 0), img.size[0] - side))
    by = int(min(max(cy - side / 2, 0), img.size[1] - side))
    box = [bx, by, bx + side, by + side]
    out = img.crop(box).resize((size, size), Image.BILINEAR)
    flip = bool(rng.random() < 0.5)
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return out, {"crop_box": box, "mirrored": flip}


def set_rng(seed: int, name: str):
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def png_bytes(a) -> bytes:
    im = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Sources:
    def __init__(self):
        self.pkgs = {}
        self.sha = {}

    def get(self, pkg: str, rel: str):
        if pkg not in self.pkgs:
            self.pkgs[pkg] = debfiles.unpack(pkg)
        p = self.pkgs[pkg]
        path = p.path(rel)
        if path not in self.sha:
            self.sha[path] = sha256_file(path)
        return path, {"package": pkg, "version": p.version, "deb_sha256": p.deb_sha256, "file": "/" + rel,
                      "sha256": self.sha[path]}


def generator_sha256() -> str:
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for f in ("build-real-sets.py", "debfiles.py"):
        with open(os.path.join(here, f), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def params(seed: int, per_set: int, random_sets: int, size: int) -> dict:
    return {"seed": seed, "per_set": per_set, "random_sets": random_sets, "size": size}


def build(out: str, seed: int, per_set: int, random_sets: int, size: int):
    src = Sources()
    entries = []
    sets = {}

    def emit(set_name, i, image, source, transform):
        name = "%s/%03d.png" % (set_name, i)
        data = png_bytes(image)
        sets.setdefault(set_name, []).append((name, data))
        entries.append(dict(image=name, sha256=hashlib.sha256(data).hexdigest(), source=source, transform=transform))

    for concept, files in CONCEPTS.items():
        rng = set_rng(seed, concept)
        patterns = []
        for pkg, rel in files:
            path, meta = src.get(pkg, rel)
            patterns.append((read_pattern(path), meta))
        for i in range(per_set):
            pat, meta = patterns[int(rng.integers(len(patterns)))]
            img, tr = texture_image(pat, rng, size, SCALES[concept])
            emit(concept, i, img, meta, tr)
        print("build-real-sets: %s: %d images from %d patterns" % (concept, per_set, len(patterns)), file=sys.stderr)

    photos = []
    for pkg, rel in PHOTOS:
        path, meta = src.get(pkg, rel)
        with Image.open(path) as im:
            photos.append((im.convert("RGB"), meta))
    for r in range(random_sets):
        name = "random500_%d" % r
        rng = set_rng(seed, name)
        for i in range(per_set):
            img, meta = photos[int(rng.integers(len(photos)))]
            crop, tr = random_crop(img, rng, size)
            emit(name, i, crop, meta, tr)
    print("build-real-sets: %d random sets of %d crops from %d photos" % (random_sets, per_set, len(photos)), file=sys.stderr)

    path, meta = src.get(*ZEBRA_SOURCE)
    with Image.open(path) as im:
        photo = im.convert("RGB")
    rng = set_rng(seed, "zebra")
    for i in range(per_set):
        crop, tr = zebra_crop(photo, rng, size)
        emit("zebra", i, crop, meta, tr)
    print("build-real-sets: zebra: %d crops of darknet's giraffe.jpg" % per_set, file=sys.stderr)

    # Everything goes to a temp dir next to OUT_DIR first; each set folder is
    # then renamed into place, so a killed run leaves no half-written set.
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-real-sets-", dir=out)
    try:
        for set_name, files in sets.items():
            os.makedirs(os.path.join(work, set_name))
            for name, data in files:
                with open(os.path.join(work, name), "wb") as f:
                    f.write(data)
        prov = {"generator": "scripts/data/build-real-sets.py", "generator_sha256": generator_sha256(),
                "params": params(seed, per_set, random_sets, size), "seed": seed, "size": size, "per_set": per_set,
                "sets": {k: len(v) for k, v in sets.items()}, "images": entries}
        with open(os.path.join(work, "provenance.json"), "w") as f:
            json.dump(prov, f, indent=1)
        for set_name in sets:
            dst = os.path.join(out, set_name)
            if os.path.exists(dst):
                shutil.rmtree(dst)
            os.rename(os.path.join(work, set_name), dst)
        os.replace(os.path.join(work, "provenance.json"), os.path.join(out, "provenance.json"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-set", type=int, default=30)
    ap.add_argument("--random-sets", type=int, default=10)
    ap.add_argument("--size", type=int, default=300)
    args = ap.parse_args(argv)
    if args.per_set < 1 or args.random_sets < 2 or args.size < 32:
        print("build-real-sets: need --per-set >= 1, --random-sets >= 2, --size >= 32", file=sys.stderr)
        return 2
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        print("build-real-sets: %s exists and is not a directory" % out, file=sys.stderr)
        return 1
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, "provenance.json")):
        print("build-real-sets: %s is not empty and was not written by this script (no provenance.json)" % out, file=sys.stderr)
        return 1
    if os.path.exists(os.path.join(out, "provenance.json")):
        with open(os.path.join(out, "provenance.json")) as f:
            prev = json.load(f)
        if prev.get("generator") != "scripts/data/build-real-sets.py":
            print("build-real-sets: %s/provenance.json is not this script's" % out, file=sys.stderr)
            return 1
        want = params(args.seed, args.per_set, args.random_sets, args.size)
        if prev.get("generator_sha256") == generator_sha256() and prev.get("params") == want and all(
                os.path.exists(os.path.join(out, e["image"])) for e in prev.get("images", [])):
            print("build-real-sets: %s is up to date (%d images, same generator and parameters)"
                  % (out, len(prev["images"])), file=sys.stderr)
            return 0
    try:
        sets = build(out, args.seed, args.per_set, args.random_sets, args.size)
    except (debfiles.DebError, BuildError, OSError) as e:
        print("build-real-sets: %s" % e, file=sys.stderr)
        return 1
    print("build-real-sets: wrote %d sets, %d images, and provenance.json to %s"
          % (len(sets), sum(len(v) for v in sets.values()), out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
