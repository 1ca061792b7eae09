#!/usr/bin/env python3
"""Generate a stand-in Cassandra 4.1 data folder for the sandbox (test scaffolding).

    make-cassandra-data.py DIR [--keyspace thehive] [--tables N] [--size-mb M]
                           [--seed S] [--empty-tables K] [--no-system] [--force]

DIR gets the layout of /var/lib/cassandra:
    DIR/data/<ks>/<table>-<32 hex>/nb-<gen>-big-{Data.db,Index.db,Summary.db,Filter.db,
        Statistics.db,CompressionInfo.db,Digest.crc32,TOC.txt}
    DIR/commitlog/, DIR/hints/, DIR/saved_caches/
The keyspace's tables carry the names JanusGraph gives them in TheHive's keyspace
(edgestore, graphindex, janusgraph_ids, ...); the two big tables get two SSTable
generations. Unless --no-system, small `system` and `system_schema` keyspaces are
added, as on a real node (they must not end up in a `thehive` backup). The content is
pseudo-random but fully determined by --seed, the names and the sizes. Point the
stand-ins at DIR with SANDBOX_CASSANDRA_DATA=DIR.
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import zlib

#: TheHive's keyspace as JanusGraph lays it out, with each table's share of the data.
JANUSGRAPH_TABLES = [
    ("edgestore", 0.52),
    ("graphindex", 0.27),
    ("txlog", 0.09),
    ("systemlog", 0.04),
    ("janusgraph_ids", 0.02),
    ("system_properties", 0.02),
    ("edgestore_lock_", 0.015),
    ("graphindex_lock_", 0.01),
    ("system_properties_lock_", 0.005),
]

#: Small system keyspaces present on every node.
SYSTEM_KEYSPACES = {
    "system": [("local", 0.4), ("peers_v2", 0.2), ("compaction_history", 0.4)],
    "system_schema": [("keyspaces", 0.2), ("tables", 0.5), ("columns", 0.3)],
}

#: The TOC.txt of an nb-format SSTable (order as Cassandra writes it).
TOC = ["Data.db", "Statistics.db", "Digest.crc32", "TOC.txt", "CompressionInfo.db",
       "Filter.db", "Index.db", "Summary.db"]

#: A fixed mtime (2026-11-25 22:00 UTC) so the tree is identical on every run.
FIXED_MTIME = 1795644000

CHUNK = 1 << 20


def table_id(seed, keyspace, table):
    """A 32-hex table id shaped like Cassandra's time-based (version 1) UUIDs."""
    digest = hashlib.sha256(f"{seed}:{keyspace}:{table}".encode()).hexdigest()
    return digest[:12] + "1" + digest[13:16] + "a" + digest[17:32]


def write_random(path, size, rng):
    """Write `size` pseudo-random bytes (compressed SSTable data looks random); returns crc32."""
    crc = 0
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            block = rng.randbytes(min(CHUNK, left))
            crc = zlib.crc32(block, crc)
            handle.write(block)
            left -= len(block)
    return crc


def write_sstable(table_dir, generation, data_size, rng):
    """One SSTable (all eight components); returns the bytes written."""
    prefix = os.path.join(table_dir, f"nb-{generation}-big-")
    crc = write_random(prefix + "Data.db", data_size, rng)
    sizes = {
        "Index.db": max(64, data_size // 16),
        "Summary.db": max(56, data_size // 400),
        "Filter.db": max(16, data_size // 90),
        "Statistics.db": rng.randint(4800, 10200),
        "CompressionInfo.db": 8 * ((data_size + 65535) // 65536) + 43,
    }
    for component, size in sizes.items():
        write_random(prefix + component, size, rng)
    # Cassandra writes the Data.db CRC32 as decimal text.
    with open(prefix + "Digest.crc32", "w", encoding="ascii") as handle:
        handle.write(str(crc))
    with open(prefix + "TOC.txt", "w", encoding="ascii") as handle:
        handle.write("\n".join(TOC) + "\n")
    return data_size + sum(sizes.values()) + len(str(crc)) + len("\n".join(TOC)) + 1


def make_keyspace(root, keyspace, tables, total_bytes, seed, empty_tables=0):
    """Create a keyspace's table folders; returns (table folder names, bytes written)."""
    weight_sum = sum(weight for _, weight in tables)
    written = 0
    names = []
    # The smallest tables are the ones left empty (as lock tables often are).
    empty = {name for name, _ in tables[len(tables) - empty_tables:]} if empty_tables else set()
    for table, weight in tables:
        folder = f"{table}-{table_id(seed, keyspace, table)}"
        names.append(folder)
        table_dir = os.path.join(root, "data", keyspace, folder)
        os.makedirs(table_dir)
        if table in empty:
            continue
        rng = random.Random(f"{seed}:{keyspace}:{table}")
        # Data.db is about 92% of a table's files (the other components are sized from it).
        data_size = max(512, int(total_bytes * weight / weight_sum * 0.925))
        if weight >= 0.25 and data_size > 256 * 1024:
            first = int(data_size * 0.7)
            written += write_sstable(table_dir, 1, first, rng)
            written += write_sstable(table_dir, 2, data_size - first, rng)
        else:
            written += write_sstable(table_dir, 1, data_size, rng)
    return names, written


def fix_mtimes(root):
    """Give every file and folder the same fixed mtime."""
    for current, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(current, name), (FIXED_MTIME, FIXED_MTIME))
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def main():
    parser = argparse.ArgumentParser(
        description="Generate a stand-in Cassandra data folder for the sandbox (test scaffolding).")
    parser.add_argument("dir", help="folder to create (the equivalent of /var/lib/cassandra)")
    parser.add_argument("--keyspace", default="thehive", help="keyspace name (default: thehive)")
    parser.add_argument("--tables", type=int, default=len(JANUSGRAPH_TABLES),
                        help=f"number of tables (default: {len(JANUSGRAPH_TABLES)}, JanusGraph's set; "
                             "more adds extra_table_NN)")
    parser.add_argument("--size-mb", type=float, default=4.0,
                        help="approximate size of the keyspace's files in MiB (default: 4)")
    parser.add_argument("--seed", default="thehive-sandbox", help="content seed (default: thehive-sandbox)")
    parser.add_argument("--empty-tables", type=int, default=0,
                        help="leave the K smallest tables without SSTables (default: 0)")
    parser.add_argument("--no-system", action="store_true", help="do not add the system keyspaces")
    parser.add_argument("--force", action="store_true", help="replace DIR if it already holds files")
    args = parser.parse_args()

    if args.tables < 1:
        parser.error("--tables must be at least 1")
    if not 0 <= args.empty_tables < args.tables:
        parser.error("--empty-tables must be between 0 and --tables - 1")
    root = os.path.abspath(args.dir)
    if os.path.exists(root) and os.listdir(root):
        if not args.force:
            print(f"make-cassandra-data: {root} is not empty (use --force to replace it)", file=sys.stderr)
            sys.exit(1)
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)

    tables = JANUSGRAPH_TABLES[:args.tables]
    tables += [(f"extra_table_{n:02d}", 0.01) for n in range(len(tables) + 1, args.tables + 1)]
    total = int(args.size_mb * 1024 * 1024)
    names, written = make_keyspace(root, args.keyspace, tables, total, args.seed, args.empty_tables)
    if not args.no_system:
        for keyspace, system_tables in SYSTEM_KEYSPACES.items():
            make_keyspace(root, keyspace, system_tables, 96 * 1024, args.seed)
    for folder in ("commitlog", "hints", "saved_caches"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rng = random.Random(f"{args.seed}:commitlog")
    write_random(os.path.join(root, "commitlog", "CommitLog-7-1764108000000.log"), 64 * 1024, rng)
    fix_mtimes(root)

    print(f"generated {len(names)} tables of keyspace {args.keyspace} ({written} bytes) "
          f"in {os.path.join(root, 'data', args.keyspace)}")
    for name in names:
        print(f"  {name}")


if __name__ == "__main__":
    main()
