#!/usr/bin/env python3
"""Starts and stops a fake TheHive cluster on loopback (test scaffolding, not TheHive).

    sandbox.py start DIR [--storage local|s3] [--es standin|noida|opensearch] [--cassandra standin|real]
                         [--real] [--es-docs N] [--objects N]
                         [--cassandra-mb M] [--es-faults JSON] [--node-down [ADDRS]]
                         [--snapshot-fails [partial|clean]] [--knob NAME[=VALUE]]...
                         [--cql-auth USER:PASSWORD] [--force]
    sandbox.py stop DIR
    sandbox.py status DIR
    sandbox.py digest DIR

`start` builds, under DIR, everything the stock workflow `cluster-hot-backup` talks to:
a generated Cassandra data folder driven by the stand-in `nodetool`/`cqlsh`
(tests/sandbox/bin), an Elasticsearch (the stand-in tests/standins/es_standin.py or
noida-db, an emulator from PyPI) with the snapshot repository `thehive_repository`,
an attachment folder and, for `--storage s3`, a moto_server (a real S3 API) whose
bucket `thehive` holds the same files. It writes the runbook config (`vars.json`),
the environment (`env.sh`) and its own record (`sandbox.json`), prints that record
as JSON on stdout, and returns once every server answers. The servers run detached,
each in its own process group; `stop` kills those groups and checks nothing is left.

Run it with the test virtualenv's Python (`.venv-tests/bin/python`, made by
tests/setup-test-env.sh), which has boto3; with another Python, `--storage s3`
re-executes itself under that one. See tests/sandbox/README.md.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import real_cassandra  # noqa: E402  (after the path is set)
import real_opensearch  # noqa: E402
REPO = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(REPO, ".venv-tests")
RECORD = "sandbox.json"

#: The snapshot repository, bucket and alias the stock workflow's defaults name.
ES_REPOSITORY = "thehive_repository"
ES_INDEX = "thehive_global"
BUCKET = "thehive"
ALIAS = "th_minio"
#: moto accepts any keys; these are its documented defaults.
S3_ACCESS_KEY = "test"
S3_SECRET_KEY = "test"

#: The fault knobs of the stand-in nodetool/cqlsh (tests/sandbox/README.md, "Fault knobs").
KNOBS = {
    "snapshot-fails", "clearsnapshot-fails", "node-down", "node-state",
    "nodetool-unreachable", "nodetool-hang", "nodetool-delay", "cqlsh-unreachable",
    "cqlsh-empty", "cqlsh-no-warning", "cqlsh-delay", "cql-auth",
}

#: How long each server gets to answer after it is started.
START_TIMEOUT_S = 60
#: How long a process group gets between SIGTERM and SIGKILL, and after SIGKILL.
STOP_GRACE_S = 10
KILL_WAIT_S = 5

# Requests go straight to 127.0.0.1, whatever proxy the environment names.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxError(Exception):
    """Something the sandbox cannot do; the message is shown as is."""


def say(message):
    """Progress on stderr (stdout carries only the JSON)."""
    print("sandbox: " + message, file=sys.stderr, flush=True)


# ---- processes ------------------------------------------------------------

def proc_stat(pid):
    """(state, pgrp, starttime) of a process from /proc/PID/stat, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def group_members(pgid):
    """Live (not zombie) processes of process group `pgid`.

    Zombies are left out on purpose: a detached server is reparented to PID 1, and
    an init that does not reap leaves dead servers as zombies that hold no port,
    no file and no CPU.
    """
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry))
    return sorted(members)


def ours(process):
    """True unless the recorded group leader's pid now belongs to another process."""
    stat = proc_stat(process["pid"])
    if stat is None or stat[0] in ("Z", "X"):
        return True  # leader gone: any members left are its children
    return stat[2] == process.get("start_time")


def spawn(name, argv, log_path, env=None):
    """Starts a server detached, in a new session (so its own process group)."""
    log = open(log_path, "ab")
    try:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=os.path.dirname(log_path),
        )
    except OSError as error:
        raise SandboxError("cannot start %s (%s): %s" % (name, argv[0], error)) from error
    finally:
        log.close()
    stat = proc_stat(child.pid)
    return child, {
        "name": name,
        "pid": child.pid,
        "pgid": child.pid,
        "start_time": stat[2] if stat else None,
        "argv": argv,
        "log": log_path,
    }


def log_tail(path, lines=15):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def wait_until_answers(child, record, check):
    """Waits for `check()` to be true; fails if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SandboxError("%s exited with status %s before answering; %s says:\n%s" % (
                record["name"], child.returncode, record["log"], log_tail(record["log"])))
        if check():
            return
        time.sleep(0.1)
    raise SandboxError("%s did not answer within %d s; %s says:\n%s" % (
        record["name"], START_TIMEOUT_S, record["log"], log_tail(record["log"])))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- HTTP ---------------------------------------------------------------------

def http(method, url, body=None, timeout=5):
    """(status, parsed JSON or text) of a request; raises OSError when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with HTTP.open(request, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def answers(url):
    """True when an HTTP server answers `url` with a status below 500."""
    try:
        return http("GET", url, timeout=2)[0] < 500
    except OSError:
        return False


def checked(method, url, body=None):
    status, answer = http(method, url, body)
    if status >= 300:
        raise SandboxError("%s %s answered %s: %s" % (method, url, status, answer))
    return answer


# ---- the record --------------------------------------------------------------

def record_path(folder):
    return os.path.join(folder, RECORD)


def load_record(folder):
    path = record_path(folder)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise SandboxError("%s: %s" % (path, error)) from error


def save_json(path, value):
    """Writes JSON atomically (a reader never sees half a file)."""
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(partial, path)


# ---- start -------------------------------------------------------------------

def venv_program(name):
    path = os.path.join(VENV, "bin", name)
    if not os.path.exists(path):
        raise SandboxError("%s is missing: run `bash tests/setup-test-env.sh` first" % path)
    return path


def ensure_boto3():
    """Imports boto3, re-executing under the test virtualenv's Python if needed."""
    try:
        import boto3  # noqa: F401  (only checking it is there)
    except ImportError:
        python = os.path.join(VENV, "bin", "python")
        if os.path.exists(python) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
            os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])
        raise SandboxError("boto3 is missing: run `bash tests/setup-test-env.sh` and use .venv-tests/bin/python")


def parse_knobs(args):
    """The knob files to write: {name: value}."""
    knobs = {}
    for item in args.knob:
        name, _, value = item.partition("=")
        if name not in KNOBS:
            raise SandboxError("unknown knob %r; known: %s" % (name, ", ".join(sorted(KNOBS))))
        knobs[name] = value
    if args.node_down is not None:
        knobs["node-down"] = args.node_down
    if args.snapshot_fails is not None:
        knobs["snapshot-fails"] = args.snapshot_fails
    if args.cql_auth is not None:
        if ":" not in args.cql_auth:
            raise SandboxError("--cql-auth wants USER:PASSWORD")
        knobs["cql-auth"] = args.cql_auth
    return knobs


def prepare_folder(folder, force):
    existing = load_record(folder) if os.path.isdir(folder) else None
    if existing is not None and any(group_members(p["pgid"]) for p in existing["processes"] if ours(p)):
        if not force:
            raise SandboxError("a sandbox is running in %s; stop it first (sandbox.py stop %s)" % (folder, folder))
    if os.path.isdir(folder) and os.listdir(folder):
        if existing is None:
            # Never empty a folder that is not a sandbox (a mistyped DIR could be anything).
            raise SandboxError("%s is not empty and holds no %s: give an empty or new folder" % (folder, RECORD))
        if not force:
            raise SandboxError("%s holds a sandbox (--force stops it and deletes its files)" % folder)
        stop(folder)
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    os.makedirs(folder, exist_ok=True)


def generate(script, target, extra):
    command = [sys.executable, os.path.join(HERE, script), target] + extra
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SandboxError("%s failed (exit %d): %s" % (script, done.returncode, done.stderr.strip()))


def folder_stats(path):
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(root, name))
    return files, size


def start_elasticsearch(kind, paths, faults, processes, save, es_docs=0, exclude=()):
    if kind == "opensearch":
        try:
            return real_opensearch.start(paths, exclude, es_docs, ES_REPOSITORY, ES_INDEX, spawn,
                                         wait_until_answers, processes, save, say)
        except real_opensearch.OpenSearchError as error:
            raise SandboxError(str(error)) from error
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    log = os.path.join(paths["logs"], "elasticsearch.log")
    if kind == "standin":
        argv = [sys.executable, os.path.join(REPO, "tests", "standins", "es_standin.py"),
                "--port", str(port), "--repository", ES_REPOSITORY, "--index", ES_INDEX]
        if faults:
            argv += ["--faults", faults]
        name = "elasticsearch (es_standin.py)"
    else:
        os.makedirs(paths["es_data"], exist_ok=True)
        argv = [venv_program("noida-db"), "start", "--only", "elasticsearch",
                "--elasticsearch-port", str(port), "--data-dir", paths["es_data"]]
        name = "elasticsearch (noida-db)"
    # The stand-in's control endpoint is never faulted, so injected faults cannot
    # make a healthy stand-in look dead.
    check_url = url + ("/_standin/faults" if kind == "standin" else "/_cluster/health")
    child, record = spawn(name, argv, log)
    record.update(role="elasticsearch", port=port, url=url, check_url=check_url)
    processes.append(record)
    save()
    say("started %s on %s (pid %d)" % (name, url, child.pid))
    wait_until_answers(child, record, lambda: answers(check_url))
    if kind == "noida":
        # What an admin does once: register the shared fs repository; TheHive makes
        # its index (no replica, as one node cannot hold one: the cluster is green).
        checked("PUT", "%s/_snapshot/%s" % (url, ES_REPOSITORY),
                {"type": "fs", "settings": {"location": paths["es_archive"]}})
        checked("PUT", "%s/%s" % (url, ES_INDEX),
                {"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
        for number in range(1, 6):
            checked("POST", "%s/%s/_doc?refresh=true" % (url, ES_INDEX),
                    {"title": "sandbox case %d" % number, "severity": 2, "tlp": "amber"})
    return url


def start_s3(paths, processes, save):
    ensure_boto3()
    import boto3
    from botocore.config import Config

    port = free_port()
    endpoint = "http://127.0.0.1:%d" % port
    log = os.path.join(paths["logs"], "moto_server.log")
    child, record = spawn("s3 (moto_server)", [venv_program("moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    record.update(role="s3", port=port, url=endpoint, check_url=endpoint + "/")
    processes.append(record)
    save()
    say("started moto_server on %s (pid %d)" % (endpoint, child.pid))
    wait_until_answers(child, record, lambda: answers(record["check_url"]))

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
        config=Config(max_pool_connections=16, proxies={}),
    )
    s3.create_bucket(Bucket=BUCKET)
    source = paths["attachments"]
    keys = []
    for root, _dirs, names in os.walk(source):
        for name in names:
            keys.append(os.path.relpath(os.path.join(root, name), source).replace(os.sep, "/"))

    def upload(key):
        with open(os.path.join(source, key), "rb") as handle:
            s3.put_object(Bucket=BUCKET, Key=key, Body=handle.read())

    pool = ThreadPoolExecutor(max_workers=8)
    try:
        list(pool.map(upload, keys))
    finally:
        # On an interruption, drop the queued uploads instead of waiting for them.
        pool.shutdown(wait=True, cancel_futures=True)
    listed = sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET))
    if listed != len(keys):
        raise SandboxError("bucket %s holds %d objects after uploading %d" % (BUCKET, listed, len(keys)))
    say("bucket %s filled with %d objects from %s" % (BUCKET, len(keys), source))
    return endpoint, len(keys)


def start(args):
    folder = os.path.abspath(args.dir)
    knobs = parse_knobs(args)
    if args.es_faults is not None:
        if args.es != "standin":
            raise SandboxError("--es-faults needs --es standin (noida-db and the real OpenSearch have no fault injection)")
        try:
            json.loads(args.es_faults)
        except ValueError as error:
            raise SandboxError("--es-faults is not JSON: %s" % error) from error
    if args.storage == "s3":
        ensure_boto3()  # before any work, since it may re-execute this script
    if args.es == "noida":
        venv_program("noida-db")
    if args.es_docs < 0:
        raise SandboxError("--es-docs must be 0 or more")

    if args.cassandra == "real":
        real_cassandra.installed()
    prepare_folder(folder, args.force)
    paths = {
        "cassandra_data": os.path.join(folder, "cassandra"),
        "state": os.path.join(folder, "sandbox-state"),
        "attachments": os.path.join(folder, "attachments"),
        "es_data": os.path.join(folder, "es"),
        "opensearch_home": os.path.join(folder, "opensearch"),
        "logs": os.path.join(folder, "logs"),
        "backup": os.path.join(folder, "backup"),
        "cassandra_archive": os.path.join(folder, "backup", "cassandra"),
        "es_archive": os.path.join(folder, "backup", "elasticsearch"),
        "storage_archive": os.path.join(folder, "backup", "storage"),
        "s3_archive": os.path.join(folder, "backup", "minio"),
        "vars": os.path.join(folder, "vars.json"),
        "env": os.path.join(folder, "env.sh"),
        "record": record_path(folder),
    }
    for key in ("state", "logs", "backup", "cassandra_archive", "es_archive", "storage_archive", "s3_archive"):
        os.makedirs(paths[key], exist_ok=True)

    processes = []
    sandbox = {
        "dir": folder,
        "state": "starting",
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "storage": args.storage,
        "es": args.es,
        "cassandra_kind": args.cassandra,
        "elasticsearch_url": None,
        "s3_endpoint": None,
        "processes": processes,
        "paths": paths,
        "knobs": knobs,
        "es_faults": json.loads(args.es_faults) if args.es_faults else None,
    }

    def save():
        save_json(paths["record"], sandbox)

    def interrupted(signum, _frame):
        raise SystemExit(128 + signum)

    # A TERM (e.g. from the demo's trap) unwinds like ^C, so the cleanup below runs.
    signal.signal(signal.SIGTERM, interrupted)

    save()  # from here on, `stop` finds whatever was started, even if start fails
    try:
        if args.cassandra == "standin":
            say("generating the Cassandra data folder %s" % paths["cassandra_data"])
            generate("make-cassandra-data.py", paths["cassandra_data"], ["--size-mb", str(args.cassandra_mb)])
        say("generating %d attachments in %s" % (args.objects, paths["attachments"]))
        generate("make-attachments.py", paths["attachments"], ["--files", str(args.objects)])
        for name, value in knobs.items():
            with open(os.path.join(paths["state"], name), "w", encoding="utf-8") as handle:
                handle.write(value)

        sandbox["elasticsearch_url"] = start_elasticsearch(
            args.es, paths, args.es_faults, processes, save, es_docs=args.es_docs,
            exclude=[p["address"] for p in processes if p.get("address")])
        objects = None
        if args.storage == "s3":
            sandbox["s3_endpoint"], objects = start_s3(paths, processes, save)
        node = None
        if args.cassandra == "real":
            auth = knobs["cql-auth"].split(":", 1) if "cql-auth" in knobs else None
            node = real_cassandra.start(folder, paths, auth, args.cassandra_mb, processes, save,
                                        spawn, wait_until_answers, say)

        env = {
            "SANDBOX_CASSANDRA_DATA": paths["cassandra_data"],
            "SANDBOX_STATE": paths["state"],
        }
        if node is not None:
            env.update(real_cassandra.env_exports(node))
        if args.storage == "s3":
            env["MC_HOST_" + ALIAS] = "http://%s:%s@%s" % (
                S3_ACCESS_KEY, S3_SECRET_KEY, sandbox["s3_endpoint"].split("://", 1)[1])
        user = ""
        if "cql-auth" in knobs:
            user, _, password = knobs["cql-auth"].partition(":")
            env["CASSANDRA_PASSWORD"] = password  # what the workflow's secret() reads
        config = {
            "cassandra_keyspace": "thehive",
            "cassandra_connection": node["address"] if node else "127.0.0.1",
            "cassandra_user": user,
            "cassandra_data_folder": paths["cassandra_data"],
            "cassandra_archive_path": paths["cassandra_archive"],
            "nodetool": os.path.join(real_cassandra.BIN if node else os.path.join(HERE, "bin"), "nodetool"),
            "cqlsh": os.path.join(real_cassandra.BIN if node else os.path.join(HERE, "bin"), "cqlsh"),
            "elasticsearch_url": sandbox["elasticsearch_url"],
            "elasticsearch_repository": ES_REPOSITORY,
            "elasticsearch_indices": ES_INDEX,
            "elasticsearch_archive_path": paths["es_archive"],
            "storage": args.storage,
            "attachment_folder": paths["attachments"],
            "storage_archive_path": paths["storage_archive"],
            "s3_source": "%s/%s" % (ALIAS, BUCKET),
            "s3_archive_path": paths["s3_archive"],
            "manifest_path": paths["backup"],
        }
        save_json(paths["vars"], config)
        with open(paths["env"], "w", encoding="utf-8") as handle:
            handle.write("# The sandbox's environment for runbook: source it (`. %s`).\n" % paths["env"])
            for key, value in env.items():
                handle.write("export %s=%s\n" % (key, shlex.quote(value)))
            if node is not None:
                # The real nodetool, cqlsh and sstableloader come first on PATH.
                handle.write('export PATH=%s:"$PATH"\n' % shlex.quote(real_cassandra.BIN))

        files, size = folder_stats(paths["attachments"])
        cassandra_files, cassandra_size = folder_stats(os.path.join(paths["cassandra_data"], "data", "thehive"))
        sandbox.update(
            state="running",
            env=env,
            attachments={"files": files, "bytes": size, "s3_objects": objects},
            cassandra={"keyspace": "thehive", "files": cassandra_files, "bytes": cassandra_size,
                       "kind": args.cassandra},
        )
        save()
    except BaseException:
        say("start failed; stopping what was started")
        stop(folder, quiet=True)
        raise
    json.dump(sandbox, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


# ---- stop and status ---------------------------------------------------------------

def wait_gone(groups, seconds):
    deadline = time.monotonic() + seconds
    while True:
        left = {pgid: members for pgid in groups if (members := group_members(pgid))}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def signal_groups(groups, signum):
    for pgid in groups:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass


def stop(folder, quiet=False):
    """Kills every recorded process group (TERM, then KILL) and checks none is left."""
    folder = os.path.abspath(folder)
    sandbox = load_record(folder)
    if sandbox is None:
        if not quiet:
            say("no sandbox in %s (no %s): nothing to stop" % (folder, RECORD))
        return 0
    groups = []
    for process in sandbox.get("processes", []):
        if not group_members(process["pgid"]):
            continue
        if not ours(process):
            say("pid %d is now another process; leaving it alone" % process["pid"])
            continue
        groups.append(process["pgid"])
    for process in sandbox.get("processes", []):
        if process.get("role") == "cassandra" and process["pgid"] in groups:
            # The JVM's peak RSS over its whole life, read just before it ends.
            process["peak_rss_kib"] = real_cassandra.rss_kib(process["pid"])[1] or process.get("peak_rss_kib")
            if not quiet:
                say("%s: peak RSS %d MiB" % (process["name"], (process["peak_rss_kib"] or 0) // 1024))
    signal_groups(groups, signal.SIGTERM)
    left = wait_gone(groups, STOP_GRACE_S)
    if left:
        say("still running after SIGTERM: %s; sending SIGKILL" % sorted(p for m in left.values() for p in m))
        signal_groups(left, signal.SIGKILL)
        left = wait_gone(left, KILL_WAIT_S)
    if left:
        raise SandboxError("processes survive SIGKILL: %s" % sorted(p for m in left.values() for p in m))
    sandbox["state"] = "stopped"
    save_json(record_path(folder), sandbox)
    if not quiet:
        say("stopped %s (%d process group(s) ended)" % (folder, len(groups)))
    return 0


def status(folder):
    """Prints each server's state as JSON; exit 0 only when all run and answer."""
    folder = os.path.abspath(folder)
    sandbox = load_record(folder)
    if sandbox is None:
        raise SandboxError("no sandbox in %s (no %s)" % (folder, RECORD))
    servers = []
    healthy = bool(sandbox.get("processes"))
    for process in sandbox.get("processes", []):
        running = bool(group_members(process["pgid"])) and ours(process)
        if process.get("version") and process["role"] == "elasticsearch":
            # The real node: `_cluster/health` must say yellow or green.
            answering = running and real_opensearch.healthy(process["url"])
        elif process.get("role") == "cassandra":
            answering = running and real_cassandra.answers(process, cql_password(sandbox))
        else:
            answering = running and answers(process["check_url"])
        healthy = healthy and answering
        servers.append({"name": process["name"], "pid": process["pid"], "url": process["url"],
                        "running": running, "answers": answering})
    report = {"dir": folder, "state": sandbox.get("state"), "healthy": healthy, "servers": servers}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if healthy else 1


def cql_password(sandbox):
    """The --cql-auth password, or None."""
    auth = sandbox.get("knobs", {}).get("cql-auth")
    return auth.split(":", 1)[1] if auth else None


def digest(folder, attachments=None):
    """Prints JSON digests of the sandbox's data: equal digests, equal data.

    `cassandra`: per table of the real node's keyspace, its row count and an
    order-independent SHA-256 of its rows (lib/real_cassandra.py); `indices`:
    per index of the real OpenSearch node, its document count and a SHA-256 of
    its sorted documents (lib/real_opensearch.py); `attachments`: the file
    count and a SHA-256 of sorted (path, content hash), folder or bucket. The
    stand-ins hold no data, so a part whose server is a stand-in is left out.
    `attachments` ("folder" or "bucket") picks where the attachments are read:
    an S3 sandbox keeps the folder its bucket was filled from, so a backup with
    storage=local can be checked there too. Default: the sandbox's storage.
    """
    folder = os.path.abspath(folder)
    sandbox = load_record(folder)
    if sandbox is None:
        raise SandboxError("no sandbox in %s (no %s)" % (folder, RECORD))
    if sandbox.get("storage") == "s3":
        ensure_boto3()
    report = {}
    node = next((p for p in sandbox.get("processes", []) if p.get("role") == "cassandra"), None)
    if node is not None:
        try:
            report["cassandra"] = real_cassandra.digest_cassandra(node, cql_password(sandbox))
        except real_cassandra.RealCassandraError as error:
            raise SandboxError(str(error)) from error
    if sandbox.get("es") == "opensearch":
        try:
            report["indices"] = real_opensearch.indices_digest(sandbox["elasticsearch_url"])
        except (OSError, real_opensearch.OpenSearchError) as error:
            raise SandboxError("cannot digest the indices at %s: %s" % (sandbox["elasticsearch_url"], error)) from error
    if attachments == "bucket" and sandbox.get("storage") != "s3":
        raise SandboxError("--attachments bucket: the sandbox in %s has no bucket (started without --storage s3)" % folder)
    source = dict(sandbox, storage="local") if attachments == "folder" else sandbox
    report["attachments"] = real_cassandra.digest_attachments(source, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY)
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


# ---- command line -------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(
        description="A fake TheHive cluster on loopback for runbook (test scaffolding).")
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="build and start a sandbox in DIR; print its record as JSON")
    begin.add_argument("dir", metavar="DIR", help="the sandbox folder (created; new, empty, or an old sandbox with --force)")
    begin.add_argument("--storage", choices=["local", "s3"], default="local",
                       help="attachments in a folder (default) or in an S3 bucket served by moto_server")
    begin.add_argument("--es", choices=["standin", "noida", "opensearch"], default=None,
                       help="Elasticsearch: tests/standins/es_standin.py (default), noida-db, or a real "
                            "OpenSearch 2.19 node (tests/real-servers/opensearch)")
    begin.add_argument("--cassandra", choices=["standin", "real"], default="standin",
                       help="Cassandra: the stand-in nodetool/cqlsh on a generated folder (default) or a real "
                            "Apache Cassandra 4.1 node (install it with tests/setup-real-servers.sh)")
    begin.add_argument("--real", action="store_true",
                       help="the real servers: --cassandra real, and --es opensearch unless --es is given")
    begin.add_argument("--es-docs", type=int, default=1000, metavar="N",
                       help="documents in the index thehive_global of the real OpenSearch (default 1000)")
    begin.add_argument("--objects", type=int, default=300, metavar="N",
                       help="number of attachment files / S3 objects (default 300, at least 3)")
    begin.add_argument("--cassandra-mb", type=float, default=4, metavar="M",
                       help="approximate size of the keyspace's data (default 4)")
    begin.add_argument("--es-faults", metavar="JSON", help="fault settings for the ES stand-in (its --faults)")
    begin.add_argument("--node-down", nargs="?", const="", metavar="ADDRS",
                       help="knob node-down: these nodes are DN (default 127.0.0.3)")
    begin.add_argument("--snapshot-fails", nargs="?", const="", choices=["", "partial", "clean"],
                       help="knob snapshot-fails: nodetool snapshot fails (partial by default)")
    begin.add_argument("--cql-auth", metavar="USER:PASSWORD",
                       help="cqlsh requires these credentials; sets cassandra_user and CASSANDRA_PASSWORD")
    begin.add_argument("--knob", action="append", default=[], metavar="NAME[=VALUE]",
                       help="any stand-in knob file (repeatable), e.g. nodetool-delay=snapshot=5")
    begin.add_argument("--force", action="store_true", help="stop the sandbox in DIR and delete its files first")
    end = commands.add_parser("stop", help="kill every process the sandbox in DIR started (idempotent)")
    end.add_argument("dir", metavar="DIR")
    look = commands.add_parser("status", help="print whether each server runs and answers (exit 1 if not)")
    look.add_argument("dir", metavar="DIR")
    summary = commands.add_parser("digest", help="print JSON digests of the data (Cassandra rows, indices, attachments)")
    summary.add_argument("dir", metavar="DIR")
    summary.add_argument("--attachments", choices=["folder", "bucket"],
                         help="digest the attachment folder or the bucket (default: the sandbox's storage)")
    args = parser.parse_args()
    if getattr(args, "real", False):
        args.cassandra = "real"
    try:
        if args.command == "start":
            if args.objects < 3:
                raise SandboxError("--objects must be at least 3")
            if args.es is None:
                args.es = "opensearch" if args.real else "standin"
            return start(args)
        if args.command == "stop":
            return stop(args.dir)
        if args.command == "digest":
            return digest(args.dir, args.attachments)
        return status(args.dir)
    except (SandboxError, real_cassandra.RealCassandraError) as error:
        print("sandbox: error: %s" % error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
