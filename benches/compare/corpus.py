#!/usr/bin/env python3
"""Prepares the corpus of the `syn` workload: the .rs files of the crates that corpus/Cargo.toml
pins (exact versions; corpus/Cargo.lock holds their checksums), as cargo downloads them, copied
under DEST/<name>-<version>/. Prints one line: the file count, the bytes and a SHA-256 over every
file's path (relative to DEST) and contents, in sorted order; the same on every machine.

Usage: corpus.py DEST"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
manifest = os.path.join(here, "corpus", "Cargo.toml")
dest = sys.argv[1]
lock = open(os.path.join(here, "corpus", "Cargo.lock"), "rb").read()

# Already prepared from the same Cargo.lock: the same files.
try:
    if open(os.path.join(dest, ".lock"), "rb").read() == lock:
        print(open(os.path.join(dest, ".summary")).read().strip())
        sys.exit(0)
except OSError:
    pass

# Downloads the pinned crates into cargo's registry (nothing when they are there already).
subprocess.run(["cargo", "fetch", "--locked", "--manifest-path", manifest], check=True,
               stdout=sys.stderr)
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
     "--manifest-path", manifest], check=True, capture_output=True, text=True).stdout)
root = meta["resolve"]["root"]
direct = {d["pkg"] for n in meta["resolve"]["nodes"] if n["id"] == root for d in n["deps"]}

shutil.rmtree(dest, ignore_errors=True)
files = []
for p in meta["packages"]:
    if p["id"] not in direct:
        continue
    src = os.path.dirname(p["manifest_path"])
    top = f"{p['name']}-{p['version']}"
    for dirpath, dirnames, names in os.walk(src):
        dirnames.sort()
        for name in sorted(names):
            if name.endswith(".rs"):
                rel = os.path.join(top, os.path.relpath(os.path.join(dirpath, name), src))
                os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
                shutil.copyfile(os.path.join(dirpath, name), os.path.join(dest, rel))
                files.append(rel)

digest = hashlib.sha256()
size = 0
for rel in sorted(files):
    with open(os.path.join(dest, rel), "rb") as f:
        data = f.read()
    size += len(data)
    digest.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
summary = f"{len(files)} files of {len(direct)} crates, {size} bytes, sha256 {digest.hexdigest()[:16]}"
with open(os.path.join(dest, ".summary"), "w") as f:
    f.write(summary + "\n")
with open(os.path.join(dest, ".lock"), "wb") as f:
    f.write(lock)
print(summary)
