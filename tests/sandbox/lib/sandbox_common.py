"""Shared pieces of the sandbox stand-ins for `nodetool` and `cqlsh`.

This is test scaffolding, not Cassandra: the stand-ins under `tests/sandbox/bin/`
imitate the command-line behaviour of the Cassandra 4.1 tools on a data folder made
by `tests/sandbox/make-cassandra-data.py`. See `tests/sandbox/README.md`.

Everything here is Python 3 standard library only.
"""

import json
import os
import re
import sys
import time

#: The Cassandra release the stand-ins pretend to be.
DEFAULT_RELEASE_VERSION = "4.1.3"

#: The cqlsh release the stand-in pretends to be (Cassandra 4.1 ships cqlsh 6.1.0;
#: PyPI's cqlsh 6.1.3 also says 6.1.0 and was built against 4.1.4).
CQLSH_VERSION = "6.1.0"

#: The Cassandra version the stand-in cqlsh claims it was built against; it differs
#: from the server on purpose so that cqlsh prints its WARNING line, as it does on
#: most real installations where the client package lags the server.
CQLSH_BUILT_AGAINST = "4.1.4"

#: Name of a table folder: `<table>-<32 hex>`.
TABLE_DIR_RE = re.compile(r"^(?P<table>[A-Za-z0-9_]+)-(?P<id>[0-9a-f]{32})$")

#: Env var naming the generated Cassandra folder (the one holding `data/`).
DATA_ENV = "SANDBOX_CASSANDRA_DATA"

#: Env var naming the state folder (fault knobs, invocation log).
STATE_ENV = "SANDBOX_STATE"

#: Values of a knob that mean "off" (so an env var can switch off a knob file).
OFF_VALUES = {"0", "false", "no", "off"}


class SandboxSetupError(Exception):
    """The sandbox itself is not set up (not an imitation of a Cassandra error)."""


def release_version():
    """The release version reported by `nodetool version` and `system.local`."""
    return os.environ.get("SANDBOX_RELEASE_VERSION") or DEFAULT_RELEASE_VERSION


def cassandra_home():
    """The generated Cassandra folder (`$SANDBOX_CASSANDRA_DATA`), which holds `data/`."""
    value = os.environ.get(DATA_ENV)
    if not value:
        raise SandboxSetupError(
            f"{DATA_ENV} is not set; point it at a folder made by "
            "tests/sandbox/make-cassandra-data.py"
        )
    if not os.path.isdir(os.path.join(value, "data")):
        raise SandboxSetupError(
            f"{DATA_ENV}={value} has no data/ folder; make one with "
            "tests/sandbox/make-cassandra-data.py"
        )
    return os.path.abspath(value)


def state_dir():
    """The state folder: `$SANDBOX_STATE`, default `<data>/../sandbox-state`; created on use."""
    value = os.environ.get(STATE_ENV)
    if not value:
        home = os.environ.get(DATA_ENV)
        if not home:
            return None
        value = os.path.join(os.path.dirname(os.path.abspath(home)), "sandbox-state")
    os.makedirs(value, exist_ok=True)
    return value


def knob_env_name(name):
    """The env var for a knob: `snapshot-fails` -> `SANDBOX_SNAPSHOT_FAILS`."""
    return "SANDBOX_" + name.upper().replace("-", "_")


def knob(name):
    """The value of fault knob `name`, or None when the knob is off.

    A non-empty env var `SANDBOX_<NAME>` wins (and `0`/`false`/`no`/`off` switch the
    knob off even when its file exists); otherwise the file `<state>/<name>` switches
    it on, its stripped content being the value ("" when empty).
    """
    env_value = os.environ.get(knob_env_name(name))
    if env_value:
        if env_value.strip().lower() in OFF_VALUES:
            return None
        return env_value.strip()
    state = state_dir()
    if state is None:
        return None
    path = os.path.join(state, name)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return None


def is_plain_on(value):
    """True when a knob value carries no detail (empty, `1`, `true`, `yes`, `on`)."""
    return value is not None and value.lower() in {"", "1", "true", "yes", "on"}


def log_invocation(tool, argv):
    """Append one JSON line with the argv to `<state>/invocations.log`.

    Tests read this to check, for example, that no password reached a command line.
    Only the argv and harmless facts are recorded, never the environment.
    """
    state = state_dir()
    if state is None:
        return
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pid": os.getpid(),
        "tool": tool,
        "argv": [tool] + list(argv),
        "cwd": os.getcwd(),
    }
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    # One write on an O_APPEND descriptor, so parallel invocations do not interleave.
    fd = os.open(os.path.join(state, "invocations.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def delay_for(knob_name, subcommand):
    """Seconds to sleep from a delay knob: `SECONDS` for all, or `sub=SECONDS,...`."""
    value = knob(knob_name)
    if value is None or value == "":
        return 0.0
    delay = 0.0
    for token in value.split(","):
        token = token.strip()
        if not token:
            continue
        if "=" in token:
            sub, _, seconds = token.partition("=")
            if sub.strip() == subcommand:
                return float(seconds)
        else:
            delay = float(token)
    return delay


def keyspace_names(home):
    """Keyspaces present in `<home>/data`, sorted."""
    data = os.path.join(home, "data")
    return sorted(
        name for name in os.listdir(data) if os.path.isdir(os.path.join(data, name))
    )


def table_dirs(home, keyspace):
    """`(table name, table id, folder path)` for every table folder of a keyspace, by name."""
    ks_dir = os.path.join(home, "data", keyspace)
    found = []
    for entry in sorted(os.listdir(ks_dir)):
        match = TABLE_DIR_RE.match(entry)
        path = os.path.join(ks_dir, entry)
        if match and os.path.isdir(path):
            found.append((match.group("table"), match.group("id"), path))
    return found


def live_sstable_files(table_dir):
    """The SSTable component files directly in a table folder (not snapshots/backups)."""
    return sorted(
        name
        for name in os.listdir(table_dir)
        if os.path.isfile(os.path.join(table_dir, name)) and re.match(r"^[a-z]{2}-\d+-big-", name)
    )


def dashed_uuid(hex32):
    """`8f3b...` (32 hex) -> `8f3b4c10-a6e4-11ee-a9f3-d1b2c3d4e5f6`."""
    return f"{hex32[0:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:32]}"


def replication_cql(keyspace):
    """The replication map cqlsh shows for a keyspace of the sandbox."""
    if keyspace in ("system", "system_schema"):
        return "{'class': 'LocalStrategy'}"
    # The `replication` knob: `N` (SimpleStrategy, factor N) or `DC=N,...`
    # (NetworkTopologyStrategy), for the replication-factor pre-flight check.
    value = knob("replication")
    if value and "=" in value:
        pairs = [item.split("=", 1) for item in value.split(",")]
        body = ", ".join("'%s': '%s'" % (dc.strip(), n.strip()) for dc, n in pairs)
        return "{'class': 'NetworkTopologyStrategy', %s}" % body
    factor = value if value and value.isdigit() else "3"
    return "{'class': 'SimpleStrategy', 'replication_factor': '%s'}" % factor


def create_keyspace_cql(keyspace):
    """`CREATE KEYSPACE ...;` exactly as Cassandra 4.1's DESCRIBE prints it.

    The two spaces before `AND durable_writes` are what Cassandra 4.x prints.
    """
    return (
        f"CREATE KEYSPACE {keyspace} WITH replication = {replication_cql(keyspace)}"
        "  AND durable_writes = true;"
    )


def create_table_cql(keyspace, table, table_id=None, if_not_exists=False):
    """The CREATE TABLE statement for a sandbox table (JanusGraph's key/column1/value shape).

    With `table_id` and `if_not_exists` it is the form Cassandra 4.1 writes to a
    snapshot's `schema.cql`; without them, the form `DESCRIBE` prints.
    """
    head = "CREATE TABLE IF NOT EXISTS" if if_not_exists else "CREATE TABLE"
    lines = [
        f"{head} {keyspace}.{table} (",
        "    key blob,",
        "    column1 blob,",
        "    value blob,",
        "    PRIMARY KEY (key, column1)",
    ]
    options = []
    if table_id:
        options.append(f"ID = {dashed_uuid(table_id)}")
    options += [
        "CLUSTERING ORDER BY (column1 ASC)",
        "additional_write_policy = '99p'",
        "bloom_filter_fp_chance = 0.01",
        "caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}",
        "cdc = false",
        "comment = ''",
        "compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', "
        "'max_threshold': '32', 'min_threshold': '4'}",
        "compression = {'chunk_length_in_kb': '64', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}",
        "memtable = 'default'",
        "crc_check_chance = 1.0",
        "default_time_to_live = 0",
        "extensions = {}",
        "gc_grace_seconds = 864000",
        "max_index_interval = 2048",
        "memtable_flush_period_in_ms = 0",
        "min_index_interval = 128",
        "read_repair = 'BLOCKING'",
        "speculative_retry = '99p'",
    ]
    lines.append(") WITH " + options[0])
    lines += ["    AND " + option for option in options[1:]]
    return "\n".join(lines) + ";"


def stringify_file_size(value):
    """Cassandra's `FileUtils.stringifyFileSize`: `1.21 MiB`, `70.21 KiB`, `842 bytes`."""
    units = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for size, unit in units:
        if value >= size:
            return f"{_java_decimal(value / size)} {unit}"
    return f"{_java_decimal(value)} bytes"


def _java_decimal(number):
    """Java's `new DecimalFormat("#.##")` (half-even rounding, no trailing zeros)."""
    text = f"{round(number, 2):.2f}".rstrip("0").rstrip(".")
    return text or "0"


def table_builder(rows, separator="  "):
    """Cassandra's nodetool `TableBuilder`: columns padded to width, joined by two spaces.

    Like the real one it pads the last column too, so lines can end in spaces.
    """
    widths = [0] * max(len(row) for row in rows)
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    return "\n".join(separator.join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows)


def directory_size(path, skip_dirs=("snapshots", "backups")):
    """Total bytes of the regular files under `path`, not descending into `skip_dirs`."""
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in skip_dirs]
        for name in files:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def fail_setup(tool, error):
    """Exit 1 with a message that says clearly this is the sandbox's own problem."""
    print(f"{tool} (sandbox stand-in): {error}", file=sys.stderr)
    sys.exit(1)
