#!/usr/bin/env python3
"""Generate a stand-in TheHive attachment folder for the sandbox (test scaffolding).

    make-attachments.py DIR [--files N] [--min-kb A] [--max-kb B] [--seed S] [--force]

DIR gets 256 two-hex-character subfolders (00 .. ff, some left empty) holding N files
named by the SHA-256 of their content, like TheHive's local file storage, sizes
between --min-kb and --max-kb (log-uniform, so most are small), a mix of random and
text-like content. Among the N files there are always three edge cases: an empty file,
a name with a space and a non-ASCII name. Everything is determined by --seed.
"""

import argparse
import hashlib
import math
import os
import random
import shutil
import sys

#: A fixed mtime (2026-11-25 22:00 UTC) so the tree is identical on every run.
FIXED_MTIME = 1795644000

WORDS = ("alert case observable ioc phishing sender domain hash ip url analyst triage "
         "malware sample report incident severity tlp pap customfield task log").split()

#: The edge cases: (subfolder, name) with content generated as for any file.
SPECIAL_NAMES = [
    ("7f", "incident report 2026-11.txt"),
    ("e9", "pièce-jointe_été_報告.bin"),
]


def content(rng, size):
    """Random bytes (like compressed uploads) or text-like bytes (logs, reports)."""
    if rng.random() < 0.6:
        return rng.randbytes(size)
    text = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        text.append(word)
        length += len(word) + 1
    return " ".join(text).encode("ascii")[:size]


def write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    os.utime(path, (FIXED_MTIME, FIXED_MTIME))


def main():
    parser = argparse.ArgumentParser(
        description="Generate a stand-in TheHive attachment folder (test scaffolding).")
    parser.add_argument("dir", help="folder to create (the equivalent of /opt/thp/thehive/files)")
    parser.add_argument("--files", type=int, default=300, help="number of files, at least 3 (default: 300)")
    parser.add_argument("--min-kb", type=float, default=1.0, help="smallest non-empty file in KiB (default: 1)")
    parser.add_argument("--max-kb", type=float, default=200.0, help="largest file in KiB (default: 200)")
    parser.add_argument("--seed", default="thehive-attachments", help="content seed")
    parser.add_argument("--force", action="store_true", help="replace DIR if it already holds files")
    args = parser.parse_args()
    if args.files < 3:
        parser.error("--files must be at least 3 (the edge cases)")
    if not 0 < args.min_kb <= args.max_kb:
        parser.error("need 0 < --min-kb <= --max-kb")

    root = os.path.abspath(args.dir)
    if os.path.exists(root) and os.listdir(root):
        if not args.force:
            print(f"make-attachments: {root} is not empty (use --force to replace it)", file=sys.stderr)
            sys.exit(1)
        shutil.rmtree(root)
    for index in range(256):
        os.makedirs(os.path.join(root, f"{index:02x}"), exist_ok=True)

    rng = random.Random(args.seed)
    low, high = math.log(args.min_kb * 1024), math.log(args.max_kb * 1024)
    total = 0
    # The empty file, named by its hash like the others.
    empty_name = hashlib.sha256(b"").hexdigest()
    write(os.path.join(root, empty_name[:2], empty_name), b"")
    for folder, name in SPECIAL_NAMES:
        data = content(rng, int(math.exp(rng.uniform(low, high))))
        write(os.path.join(root, folder, name), data)
        total += len(data)
    written = 1 + len(SPECIAL_NAMES)
    while written < args.files:
        data = content(rng, int(math.exp(rng.uniform(low, high))))
        name = hashlib.sha256(data).hexdigest()
        path = os.path.join(root, name[:2], name)
        if os.path.exists(path):
            continue
        write(path, data)
        total += len(data)
        written += 1
    for index in range(256):
        os.utime(os.path.join(root, f"{index:02x}"), (FIXED_MTIME, FIXED_MTIME))
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))
    used = sum(1 for index in range(256) if os.listdir(os.path.join(root, f"{index:02x}")))
    print(f"generated {written} files ({total} bytes) in {used} of 256 subfolders of {root}")


if __name__ == "__main__":
    main()
