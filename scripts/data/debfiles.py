#!/usr/bin/python3
"""Files from Debian packages, without installing them.

    /usr/bin/python3 scripts/data/debfiles.py PACKAGE...   # prints one extracted tree per package

`apt-get download` fetches the candidate version's .deb, `dpkg-deb -x`
unpacks it under CACHE/debs/<package>_<version>/ (CACHE: $CAVFORGE_CACHE or
~/.cache/cavforge), once; later calls reuse it. Used by fetch-cocossd.sh
(darknet's giraffe.jpg) and build-real-sets.py (textures and photos).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time


class DebError(Exception):
    pass


def cache_dir() -> str:
    return os.environ.get("CAVFORGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cavforge")


def candidate_field(pkg: str, field: str) -> str:
    """A field of the candidate version's apt record (None when apt lacks it)."""
    def show():
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", pkg], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith(field + ": "):
                return line[len(field) + 2:].strip()
        return None

    v = show()
    if v is None and os.geteuid() == 0:
        print("debfiles: %s not in the apt lists; running apt-get update" % pkg, file=sys.stderr)
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=False)
        v = show()
    if v is None:
        raise DebError("apt knows no package %s (run: sudo apt-get update)" % pkg)
    return v


def candidate_version(pkg: str) -> str:
    return candidate_field(pkg, "Version")


class Package:
    """An unpacked .deb: name, version, sha256 of the .deb, root of its tree."""

    def __init__(self, name: str, version: str, deb_sha256: str, root: str):
        self.name, self.version, self.deb_sha256, self.root = name, version, deb_sha256, root

    def path(self, rel: str) -> str:
        p = os.path.join(self.root, rel.lstrip("/"))
        if not os.path.exists(p):
            raise DebError("%s %s has no file /%s" % (self.name, self.version, rel.lstrip("/")))
        return p


def unpack(pkg: str) -> Package:
    version = candidate_version(pkg)
    base = os.path.join(cache_dir(), "debs")
    root = os.path.join(base, "%s_%s" % (pkg, version.replace(":", "%3a")))
    stamp = os.path.join(root, ".deb-sha256")
    if os.path.exists(stamp):
        with open(stamp) as f:
            return Package(pkg, version, f.read().strip(), root)
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".%s-" % pkg, dir=base)
    try:
        try:
            size = candidate_field(pkg, "Size")
        except DebError:
            size = None
        mb = " (%.0f MB)" % (int(size) / 1e6) if size and size.isdigit() else ""
        print("debfiles: downloading %s %s%s" % (pkg, version, mb), file=sys.stderr, flush=True)
        t0 = time.monotonic()
        r = subprocess.run(["apt-get", "download", "-q", "%s=%s" % (pkg, version)], cwd=work, capture_output=True, text=True)
        debs = [f for f in os.listdir(work) if f.endswith(".deb")]
        if r.returncode != 0 or len(debs) != 1:
            raise DebError("apt-get download %s=%s failed: %s" % (pkg, version, (r.stderr or r.stdout).strip().splitlines()[-1:]))
        deb = os.path.join(work, debs[0])
        with open(deb, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        tree = os.path.join(work, "tree")
        subprocess.run(["dpkg-deb", "-x", deb, tree], check=True)
        print("debfiles: %s downloaded and unpacked in %.0f s" % (pkg, time.monotonic() - t0), file=sys.stderr, flush=True)
        with open(os.path.join(tree, ".deb-sha256"), "w") as f:
            f.write(sha + "\n")
        try:
            os.rename(tree, root)
        except OSError:
            if not os.path.exists(stamp):  # not a concurrent unpack that won
                raise
        return unpack(pkg)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        for p in argv:
            print(unpack(p).root)
    except (DebError, OSError, subprocess.CalledProcessError) as e:
        print("debfiles: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
