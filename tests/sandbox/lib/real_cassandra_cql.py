"""CQL work for the sandbox's real Cassandra node (test scaffolding).

Runs on the Python of .real-servers/cassandra/venv, which has the DataStax
`cassandra-driver` (cqlsh's own dependency); tests/sandbox/lib/real_cassandra.py
calls it as a program:

    real_cassandra_cql.py setup HOST PORT --mb M [--role USER] [--timeout S]
    real_cassandra_cql.py digest HOST PORT [--user USER]
    real_cassandra_cql.py ping HOST PORT [--user USER]

Passwords come from the environment (SANDBOX_CQL_PASSWORD), never the command line.
`setup` waits for CQL, creates the role (through the default superuser) when asked,
then, as that role, the keyspace `thehive` with JanusGraph's tables filled with
deterministic rows. `digest` prints per table the row count and an order-independent
SHA-256 of the rows. Output is JSON on stdout.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time

from cassandra import AuthenticationFailed
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.query import SimpleStatement

KEYSPACE = "thehive"

#: TheHive's keyspace as JanusGraph lays it out, with each table's share of the
#: data: the same names and shares as tests/sandbox/make-cassandra-data.py.
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

#: JanusGraph's CQL store keeps every table as (key, column1) -> value blobs.
CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS {ks}.{table} (key blob, column1 blob, value blob, "
    "PRIMARY KEY ((key), column1)) WITH CLUSTERING ORDER BY (column1 ASC) "
    "AND compaction = {{'class': 'SizeTieredCompactionStrategy'}} "
    "AND compression = {{'chunk_length_in_kb': '64', 'class': 'LZ4Compressor'}}"
)

#: The superuser a fresh node with PasswordAuthenticator has.
DEFAULT_SUPERUSER = ("cassandra", "cassandra")

SEED = "thehive-sandbox"


def connect(host, port, user=None, password=None, timeout=60.0, cluster_name=None):
    """A session, retrying until the node answers CQL or `timeout` passes; with
    `cluster_name`, fails unless the node answering belongs to that cluster."""
    auth = PlainTextAuthProvider(user, password) if user else None
    deadline = time.monotonic() + timeout
    while True:
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=60)
        cluster = Cluster(
            [host], port=port, auth_provider=auth, protocol_version=5,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=5,
        )
        try:
            session = cluster.connect()
        except (NoHostAvailable, AuthenticationFailed, OSError) as error:
            cluster.shutdown()
            # A fresh node creates its default superuser just after CQL opens.
            if time.monotonic() >= deadline:
                raise SystemExit("no CQL session with %s:%d within %.0f s: %s" % (host, port, timeout, error))
            time.sleep(0.5)
            continue
        if cluster_name is not None:
            found = session.execute("SELECT cluster_name FROM system.local").one()[0]
            if found != cluster_name:
                cluster.shutdown()
                raise SystemExit("the node at %s:%d belongs to cluster %s, not this sandbox's %s: "
                                 "another sandbox took the address" % (host, port, found, cluster_name))
        return cluster, session


def rows_for(table, share, total_bytes):
    """The deterministic rows of one table: (key, column1, value) tuples."""
    rng = random.Random("%s:%s" % (SEED, table))
    budget = int(total_bytes * share)
    rows = []
    partition = 0
    while budget > 0 or not rows:
        key = hashlib.sha256(("%s:%s:%d" % (SEED, table, partition)).encode()).digest()[:8]
        for column in range(rng.randint(1, 8)):
            column1 = bytes([column]) + rng.randbytes(rng.randint(2, 12))
            value = rng.randbytes(rng.randint(16, 1500))
            rows.append((key, column1, value))
            budget -= len(key) + len(column1) + len(value)
        partition += 1
    return rows


def setup(args):
    password = os.environ.get("SANDBOX_CQL_PASSWORD", "")
    user = None
    if args.role:
        cluster, session = connect(args.host, args.port, *DEFAULT_SUPERUSER, timeout=args.timeout,
                                   cluster_name=args.cluster_name)
        # The role TheHive would use; the sandbox goes on as that role.
        session.execute(
            "CREATE ROLE IF NOT EXISTS %s WITH PASSWORD = %%s AND LOGIN = true AND SUPERUSER = true" % args.role,
            (password,))
        cluster.shutdown()
        user = args.role
    cluster, session = connect(args.host, args.port, user, password, timeout=args.timeout,
                               cluster_name=args.cluster_name)
    version = session.execute("SELECT release_version FROM system.local").one()[0]
    session.execute(
        "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': '1'} AND durable_writes = true" % KEYSPACE)
    total = int(args.mb * 1024 * 1024)
    counts = {}
    for table, share in JANUSGRAPH_TABLES:
        session.execute(CREATE_TABLE.format(ks=KEYSPACE, table=table))
        insert = session.prepare("INSERT INTO %s.%s (key, column1, value) VALUES (?, ?, ?)" % (KEYSPACE, table))
        rows = rows_for(table, share, total)
        for ok, result in execute_concurrent_with_args(session, insert, rows, concurrency=32, raise_on_first_error=True):
            if not ok:
                raise SystemExit("insert into %s.%s failed: %s" % (KEYSPACE, table, result))
        counts[table] = len(rows)
    cluster.shutdown()
    json.dump({"release_version": version, "rows": counts}, sys.stdout)
    sys.stdout.write("\n")


def digest_table(session, table):
    """(row count, SHA-256 over the sorted per-row hashes): independent of row order."""
    hashes = []
    statement = SimpleStatement("SELECT key, column1, value FROM %s.%s" % (KEYSPACE, table), fetch_size=2000)
    for row in session.execute(statement):
        row_hash = hashlib.sha256()
        for field in row:
            field = b"" if field is None else bytes(field)
            # Length-prefixed, so moving bytes between fields changes the hash.
            row_hash.update(len(field).to_bytes(8, "big"))
            row_hash.update(field)
        hashes.append(row_hash.hexdigest())
    hashes.sort()
    return len(hashes), hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def digest(args):
    password = os.environ.get("SANDBOX_CQL_PASSWORD", "")
    cluster, session = connect(args.host, args.port, args.user, password, timeout=args.timeout,
                               cluster_name=args.cluster_name)
    tables = sorted(row[0] for row in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (KEYSPACE,)))
    result = {}
    for table in tables:
        count, sha = digest_table(session, table)
        result[table] = {"rows": count, "sha256": sha}
    cluster.shutdown()
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


def ping(args):
    password = os.environ.get("SANDBOX_CQL_PASSWORD", "")
    cluster, session = connect(args.host, args.port, args.user, password, timeout=args.timeout,
                               cluster_name=args.cluster_name)
    version = session.execute("SELECT release_version FROM system.local").one()[0]
    cluster.shutdown()
    json.dump({"release_version": version}, sys.stdout)
    sys.stdout.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("setup", "digest", "ping"):
        command = commands.add_parser(name)
        command.add_argument("host")
        command.add_argument("port", type=int)
        command.add_argument("--timeout", type=float, default=60.0)
        command.add_argument("--cluster-name", help="fail unless the node belongs to this cluster")
        if name == "setup":
            command.add_argument("--mb", type=float, required=True)
            command.add_argument("--role")
        else:
            command.add_argument("--user")
    args = parser.parse_args()
    {"setup": setup, "digest": digest, "ping": ping}[args.command](args)


if __name__ == "__main__":
    main()
