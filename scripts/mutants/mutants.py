#!/usr/bin/env python3
"""Mutation testing for cavforge: small, plausible bugs, each applied alone
to a copy of the tree; the tests that should catch it run there, and the
table says which test killed it or that it SURVIVED.

  python3 scripts/mutants/mutants.py [--only NAME] [--from N] [--list]

Mutations live in scripts/mutants/mutations.txt, one block each:
  name:    what the bug is
  file:    path in the repository
  find:    text that occurs exactly once in the file
  replace: what it becomes
  test:    go test arguments (package and -run pattern)
separated by blank lines. The copy links against the native libraries
in build/ (run `make build` first); a mutation of cgo/native/ rebuilds
libcavshim in the copy (cmake, through ccache) and links against that.
Exit status 1 if any mutation survives, no longer applies or does not build.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mutations(path):
    blocks, cur = [], {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        key, _, val = line.partition(":")
        val = val[1:] if val.startswith(" ") else val
        cur[key.strip()] = val.replace("\\n", "\n").replace("\\t", "\t")
    if cur:
        blocks.append(cur)
    for b in blocks:
        missing = {"name", "file", "find", "replace", "test"} - b.keys()
        if missing:
            sys.exit("mutation %r lacks %s" % (b.get("name"), ", ".join(sorted(missing))))
    return blocks


def native(tree, work, env, ldflags):
    """Rebuilds libcavshim from the mutated copy into work/native/lib; the
    unchanged libcgotorch still comes from build/lib."""
    out = os.path.join(work, "native")
    gotorch = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "github.com/wangkuiyi/gotorch"],
                             cwd=tree, env=env, stdout=subprocess.PIPE, text=True).stdout.strip()
    for cmd in (["cmake", "-S", tree, "-B", out, "-DGOTORCH_DIR=" + gotorch],
                ["cmake", "--build", out, "-j%d" % (os.cpu_count() or 1), "--target", "cavshim"]):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout[-3000:])
            return False, env
    menv = dict(env)
    menv["CGO_LDFLAGS"] = ldflags([os.path.join(out, "lib")])
    return True, menv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run the mutations whose name contains this")
    ap.add_argument("--from", dest="start", type=int, default=1, help="start at the N-th mutation (1-based)")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    ms = mutations(os.path.join(ROOT, "scripts", "mutants", "mutations.txt"))
    ms = ms[a.start - 1:]
    if a.only:
        ms = [m for m in ms if a.only in m["name"]]
    if a.list:
        for m in ms:
            print("%-50s %s" % (m["name"], m["file"]))
        return 0
    lib = os.path.join(ROOT, "build", "lib")
    torch_lib = open(os.path.join(ROOT, "build", "torch-libdir.txt")).read().strip()
    env = dict(os.environ)
    ldflags = lambda first: " ".join(["-Wl,--as-needed"] + ["-L%s -Wl,-rpath,%s" % (d, d) for d in first + [lib, torch_lib]])
    env["CGO_LDFLAGS"] = ldflags([])
    work = tempfile.mkdtemp(prefix="cavforge-mutants-")
    tree = os.path.join(work, "tree")
    shutil.copytree(ROOT, tree, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "build", "bin", "runs", ".cavforge-cache"))
    rows, bad = [], 0
    try:
        for m in ms:
            path = os.path.join(tree, m["file"])
            orig = open(path, encoding="utf-8").read()
            n = orig.count(m["find"])
            if n != 1:
                rows.append((m["name"], "DOES NOT APPLY (%d matches)" % n, 0))
                bad += 1
                continue
            open(path, "w", encoding="utf-8").write(orig.replace(m["find"], m["replace"]))
            t = time.time()
            menv = env
            if m["file"].startswith("cgo/native/"):
                built, menv = native(tree, work, env, ldflags)
                if not built:
                    open(path, "w", encoding="utf-8").write(orig)
                    rows.append((m["name"], "DOES NOT BUILD (native)", time.time() - t))
                    print("%-52s %-60s %5.0fs" % rows[-1], flush=True)
                    bad += 1
                    continue
            p = subprocess.run(["go", "test", "-count=1"] + m["test"].split(), cwd=tree, env=menv,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            open(path, "w", encoding="utf-8").write(orig)
            secs = time.time() - t
            if p.returncode == 0:
                rows.append((m["name"], "SURVIVED", secs))
                bad += 1
            elif "[build failed]" in p.stdout or "[setup failed]" in p.stdout:
                rows.append((m["name"], "DOES NOT BUILD", secs))
                bad += 1
            else:
                failed = [l.split()[2] for l in p.stdout.splitlines() if l.startswith("--- FAIL: ")]
                rows.append((m["name"], "killed by " + (", ".join(dict.fromkeys(failed)) or "a failing test"), secs))
            print("%-52s %-60s %5.0fs" % rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    killed = sum(1 for r in rows if r[1].startswith("killed"))
    print("\n%d mutations: %d killed, %d survived or did not apply" % (len(rows), killed, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
