#!/usr/bin/env python3
"""Generates the archive benchmark datasets (deterministic: fixed seed).

A (SSTable-like): ~200 incompressible files, 4 KB-300 MB, log-distributed,
   ~2 GB in total, in 10 Cassandra-style table folders
   `A/data/thehive/<table>-<uuid>/`, each with a snapshot folder
   `snapshots/bench/` holding hard links to the table's files (as
   `nodetool snapshot` makes them).
B (attachments-like): ~30,000 files, 1 KB-2 MB, log-distributed, ~1.5 GB,
   in 256 two-hex-character subfolders `B/files/00..ff/`; half the files are
   compressible text, half random bytes.

usage: gen_datasets.py DIR [SCALE]   (SCALE multiplies the total sizes, default 1)
"""

import math
import os
import random
import sys

MIB = 1 << 20


def log_sizes(rng, count, low, high, total):
    """`count` log-uniform sizes in [low, high], scaled to sum to about `total`."""
    raw = [math.exp(rng.uniform(math.log(low), math.log(high))) for _ in range(count)]
    factor = total / sum(raw)
    return [int(min(high, max(low, s * factor))) for s in raw]


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n


TEXT = (
    b"2026-11-26 01:15:00,123 INFO  [case 4242] observable added: ip 10.0.0.1, "
    b"hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
)


def write_text(path, size, rng):
    line = TEXT.replace(b"4242", str(rng.randint(1000, 9999)).encode())
    data = (line * (size // len(line) + 1))[:size]
    with open(path, "wb") as f:
        f.write(data)


def dataset_a(root, scale, rng):
    sizes = log_sizes(rng, 200, 4096, 300 * MIB, int(2048 * MIB * scale))
    base = os.path.join(root, "A", "data", "thehive")
    for index, size in enumerate(sizes):
        table = index % 10
        table_dir = os.path.join(base, "table%02d-%032x" % (table, table * 0x1111))
        snapshot = os.path.join(table_dir, "snapshots", "bench")
        os.makedirs(snapshot, exist_ok=True)
        name = "nb-%d-big-Data.db" % index
        live = os.path.join(table_dir, name)
        write_random(live, size)
        os.link(live, os.path.join(snapshot, name))
    return sum(sizes)


def dataset_b(root, scale, rng):
    sizes = log_sizes(rng, 30000, 1024, 2 * MIB, int(1536 * MIB * scale))
    base = os.path.join(root, "B", "files")
    for index, size in enumerate(sizes):
        folder = os.path.join(base, "%02x" % (index % 256))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "%08x" % rng.getrandbits(32))
        if index % 2:
            write_text(path, size, rng)
        else:
            write_random(path, size)
    return sum(sizes)


def main():
    root = sys.argv[1]
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    rng = random.Random(20261126)
    a = dataset_a(root, scale, rng)
    b = dataset_b(root, scale, rng)
    print("dataset A: %.2f GiB, dataset B: %.2f GiB" % (a / 1024**3, b / 1024**3))


if __name__ == "__main__":
    main()
