#!/usr/bin/env python3
"""Mutation testing for cavforge: small, plausible bugs, each applied alone
to a copy of the tree; the tests that should catch it run there, and the
table says which test killed it or that it SURVIVED.

  python3 scripts/mutants/mutants.py [--only NAME] [--list]

Mutations live in scripts/mutants/mutations.txt, one block each:
  name:    what the bug is
  file:    path in the repository
  find:    text that occurs exactly once in the file
  replace: what it becomes
  test:    go test arguments (package and -run pattern)
separated by blank lines. The copy links against the native libraries
in build/ (run `make build` first). Exit status 1 if any mutation survives
or no longer applies.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run the mutations whose name contains this")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    ms = mutations(os.path.join(ROOT, "scripts", "mutants", "mutations.txt"))
    if a.only:
        ms = [m for m in ms if a.only in m["name"]]
    if a.list:
        for m in ms:
            print("%-50s %s" % (m["name"], m["file"]))
        return 0
    lib = os.path.join(ROOT, "build", "lib")
    torch_lib = open(os.path.join(ROOT, "build", "torch-libdir.txt")).read().strip()
    env = dict(os.environ)
    env["CGO_LDFLAGS"] = "-Wl,--as-needed -L%s -Wl,-rpath,%s -L%s -Wl,-rpath,%s" % (lib, lib, torch_lib, torch_lib)
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
            p = subprocess.run(["go", "test", "-count=1"] + m["test"].split(), cwd=tree, env=env,
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
