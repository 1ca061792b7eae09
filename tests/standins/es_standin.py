#!/usr/bin/env python3
"""Elasticsearch STAND-IN for runbook's tests. This is NOT Elasticsearch.

It speaks the few documented REST endpoints that runbook's `es_health` and
`es_snapshot` steps use, with the response shapes of Elasticsearch 8, keeps its
state in memory, and can be told to misbehave (fault injection) so the tests can
check every failure path. Only the Python 3 standard library is used.

Endpoints (Elasticsearch's):
  GET  /                                   cluster name and version
  GET  /_cluster/health                    health (wait_for_status: answers 408 at once
                                           when the status is worse; no real waiting)
  GET  /_snapshot                          all repositories
  GET|PUT|DELETE /_snapshot/<repo>         one repository
  POST /_snapshot/<repo>/_verify           repository verification
  GET  /_snapshot/<repo>/*?verbose=false   list snapshots (also _all, name lists)
  GET|PUT|DELETE /_snapshot/<repo>/<snap>  one snapshot
  POST /_snapshot/<repo>/<snap>/_restore   restore (the index names come back, no data)
  GET|HEAD|DELETE /<index>                 an index (names only)

Control endpoints (never faulted, never recorded, no auth):
  GET    /_standin/requests   every request received so far, in order
  DELETE /_standin/requests   forget them
  POST   /_standin/faults     merge a JSON object into the fault settings
  GET    /_standin/faults     the current fault settings
  DELETE /_standin/faults     back to no faults

A snapshot starts IN_PROGRESS and reaches its end state (`snapshot_end`,
default SUCCESS) after `snapshot_polls` GETs of it (default 1), so tests do not
depend on timing. See tests/standins/README.md for every knob.
"""

import argparse
import base64
import json
import random
import re
import socket
import string
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "8.15.3"
VERSION_ID = 8512000
HEALTH_ORDER = {"red": 0, "yellow": 1, "green": 2}
TERMINAL = {"SUCCESS", "FAILED", "PARTIAL", "INCOMPATIBLE"}

DEFAULT_FAULTS = {
    # State a new snapshot ends in: SUCCESS, FAILED, PARTIAL, INCOMPATIBLE,
    # or IN_PROGRESS (never ends).
    "snapshot_end": "SUCCESS",
    # GETs of a snapshot that still show IN_PROGRESS before it ends.
    "snapshot_polls": 1,
    # Cluster health colour.
    "health": "green",
    # POST _verify fails with repository_verification_exception.
    "verify_fails": False,
    # Rules applied to matching requests, in order; see README.md.
    "rules": [],
}

LOCK = threading.Lock()
STATE = {
    "repositories": {},  # name -> {"type", "settings"}
    "snapshots": {},  # repo -> {name -> snapshot dict}
    "indices": ["thehive_global"],
    "requests": [],
    "faults": json.loads(json.dumps(DEFAULT_FAULTS)),
    "auth": None,  # ("basic", "user:password") / ("apikey", key)
}


def now_millis():
    return int(time.time() * 1000)


def iso(millis):
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        "%03dZ" % (millis % 1000)
    )


def new_uuid():
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(random.choice(alphabet) for _ in range(22))


def es_error(status, kind, reason, extra=None):
    cause = {"type": kind, "reason": reason}
    if extra:
        cause.update(extra)
    # `root_cause` comes first, as the real servers write it.
    error = {"root_cause": [dict(cause)]}
    error.update(cause)
    return status, {"error": error, "status": status}


TRANSIENT_ERRORS = {
    429: ("es_rejected_execution_exception", "rejected execution of coordinating operation [stand-in]"),
    503: ("master_not_discovered_exception", None),
    400: ("illegal_argument_exception", "stand-in: injected bad request"),
    500: ("exception", "stand-in: injected internal error"),
}


def snapshot_view(snap, verbose=True):
    view = {
        "snapshot": snap["snapshot"],
        "uuid": snap["uuid"],
        "repository": snap["repository"],
        "indices": snap["indices"],
        "data_streams": [],
        "state": snap["state"],
    }
    if not verbose:
        return view
    view.update(
        {
            "version_id": VERSION_ID,
            "version": VERSION,
            "feature_states": [],
            "include_global_state": snap["include_global_state"],
            "start_time": iso(snap["start"]),
            "start_time_in_millis": snap["start"],
            "failures": snap["failures"],
            "shards": snap["shards"],
        }
    )
    if snap["state"] in TERMINAL:
        view["end_time"] = iso(snap["end"])
        view["end_time_in_millis"] = snap["end"]
        view["duration_in_millis"] = snap["end"] - snap["start"]
    if snap.get("reason"):
        view["reason"] = snap["reason"]
    return view


def advance(snap):
    """One GET of a running snapshot: count it, end it when its time has come."""
    if snap["state"] != "IN_PROGRESS":
        return
    snap["polls_left"] -= 1
    end = snap["end_state"]
    if snap["polls_left"] >= 0 or end == "IN_PROGRESS":
        return
    snap["state"] = end
    snap["end"] = now_millis()
    # One shard per index, as the sandbox's indices have; none for no index.
    total = len(snap["indices"])
    if end == "SUCCESS":
        snap["shards"] = {"total": total, "failed": 0, "successful": total}
    elif end == "PARTIAL":
        total = max(1, total)
        snap["shards"] = {"total": total + 1, "failed": 1, "successful": total}
        snap["failures"] = [shard_failure(snap, "IndexShardSnapshotFailedException[stand-in: disk full]")]
    elif end == "FAILED":
        total = max(1, total)
        snap["shards"] = {"total": total, "failed": total, "successful": 0}
        snap["failures"] = [shard_failure(snap, "IndexShardSnapshotFailedException[stand-in: repository unreachable]")]
        snap["reason"] = "stand-in: all shards failed"
    elif end == "INCOMPATIBLE":
        snap["shards"] = {"total": 0, "failed": 0, "successful": 0}
        snap["reason"] = "stand-in: snapshot written by an incompatible version"


def shard_failure(snap, reason):
    index = snap["indices"][0] if snap["indices"] else "thehive_global"
    return {
        "index": index,
        "index_uuid": "stand-in-index-uuid",
        "shard_id": 0,
        "reason": reason,
        "node_id": "standin-node-1",
        "status": "INTERNAL_SERVER_ERROR",
    }


def expand_indices(requested, ignore_unavailable=False):
    """(indices, missing index or None), as the real servers resolve a snapshot's list.

    A concrete name that does not exist is an error (404 index_not_found_exception)
    unless `ignore_unavailable`, which drops it: the real servers then take a
    SUCCESS snapshot of whatever is left, possibly nothing (0 shards).
    """
    if requested is None:
        return list(STATE["indices"]), None
    names = requested if isinstance(requested, list) else str(requested).split(",")
    out = []
    missing = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if "*" in name:
            pattern = re.compile("^" + re.escape(name).replace("\\*", ".*") + "$")
            out.extend(i for i in STATE["indices"] if pattern.match(i))
        elif name in STATE["indices"]:
            out.append(name)
        elif not ignore_unavailable:
            return out, name
    return out, None


def index_missing(name):
    return es_error(
        404,
        "index_not_found_exception",
        "no such index [%s]" % name,
        {"index": name, "resource.id": name, "resource.type": "index_or_alias", "index_uuid": "_na_"},
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "es-standin/1"

    # --- plumbing -----------------------------------------------------------
    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("es-standin: " + (fmt % args) + "\n")

    def do_GET(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()

    def send_json(self, status, body, raw=None):
        # Compact, as Elasticsearch and OpenSearch answer: `{"acknowledged":true}`,
        # the exact text TheHive's guide scripts grep for.
        if raw is not None:
            data = raw
        elif urlsplit(self.path).path == "/" and status == 200:
            # `GET /` is the one answer the real servers pretty-print by default.
            data = (json.dumps(body, indent=2, separators=(",", " : ")) + "\n").encode()
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("X-elastic-product", "Elasticsearch")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="security" charset="UTF-8"')
            self.send_header("WWW-Authenticate", "ApiKey")
        if status in (429, 503) and self.retry_after is not None:
            self.send_header("Retry-After", str(self.retry_after))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def reset_connection(self):
        # SO_LINGER with a zero timeout: close() sends a TCP RST, as a crashed
        # node or a dropping proxy would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return raw, None
        try:
            return raw, json.loads(raw)
        except ValueError:
            return raw, raw.decode("utf-8", "replace")

    def authorized(self):
        auth = STATE["auth"]
        if auth is None:
            return True
        header = self.headers.get("Authorization") or ""
        kind, secret = auth
        if kind == "basic" and header.startswith("Basic "):
            try:
                return base64.b64decode(header[6:]).decode() == secret
            except ValueError:
                return False
        if kind == "apikey" and header.startswith("ApiKey "):
            return header[7:] == secret
        return False

    # --- dispatch -----------------------------------------------------------
    def handle_any(self):
        self.retry_after = None
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw, body = self.read_body()

        if path.startswith("/_standin/"):
            status, answer = self.control(path, body)
            return self.send_json(status, answer)

        with LOCK:
            record = {
                "method": self.command,
                "path": path,
                "query": query,
                "authorization": (self.headers.get("Authorization") or "").split(" ")[0] or None,
                "body": body,
                "status": None,
            }
            STATE["requests"].append(record)
            rule = self.matching_rule(self.command, path)

        if rule is not None:
            action = rule.get("action", "status")
            if action == "delay":
                time.sleep(float(rule.get("seconds", 1)))
            elif action == "reset":
                record["status"] = "reset"
                return self.reset_connection()
            elif action == "malformed":
                record["status"] = 200
                return self.send_json(200, None, raw=b'{"snapshots": [{"snapshot": "trunc')
            elif action == "status":
                code = int(rule.get("status", 503))
                kind, reason = TRANSIENT_ERRORS.get(code, ("exception", None))
                if code in (502, 504):
                    record["status"] = code
                    return self.send_bytes(code, b"<html><body><h1>%d Bad Gateway</h1>stand-in proxy</body></html>" % code)
                self.retry_after = rule.get("retry_after")
                reason = rule.get("reason") or reason or "stand-in: injected %d" % code
                status, answer = es_error(code, rule.get("type", kind), reason)
                record["status"] = status
                return self.send_json(status, answer)

        if not self.authorized():
            what = "missing authentication credentials" if not self.headers.get("Authorization") else None
            if what:
                reason = "%s for REST request [%s]" % (what, self.path)
            else:
                reason = "unable to authenticate user [%s] for REST request [%s]" % (self.auth_user(), self.path)
            status, answer = es_error(
                401,
                "security_exception",
                reason,
                {"header": {"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"', "ApiKey"]}},
            )
        else:
            with LOCK:
                status, answer = self.route(self.command, path, query, body)
        if rule is not None and rule.get("action") == "reset_after":
            # The request was carried out, but its answer is lost.
            record["status"] = "reset_after_%d" % status
            return self.reset_connection()
        record["status"] = status
        self.send_json(status, answer)

    def send_bytes(self, status, data):
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def auth_user(self):
        header = self.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            try:
                return base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except ValueError:
                return "?"
        return "api key"

    def matching_rule(self, method, path):
        """The first rule matching this request that still has uses left (counts one use)."""
        for rule in STATE["faults"]["rules"]:
            if rule.get("method") and rule["method"].upper() != method:
                continue
            if rule.get("path") and not re.search(rule["path"], path):
                continue
            # "pass": this many matching requests go through untouched first
            # (e.g. the stamp check's GET before the snapshot's polls).
            if rule.get("pass", 0) > 0:
                rule["pass"] -= 1
                return None
            count = rule.get("count")
            if count is not None:
                if count <= 0:
                    continue
                rule["count"] = count - 1
            return rule
        return None

    def control(self, path, body):
        with LOCK:
            if path == "/_standin/requests":
                if self.command == "DELETE":
                    STATE["requests"].clear()
                return 200, {"requests": STATE["requests"]}
            if path == "/_standin/faults":
                if self.command == "DELETE":
                    STATE["faults"] = json.loads(json.dumps(DEFAULT_FAULTS))
                elif self.command in ("POST", "PUT"):
                    if not isinstance(body, dict):
                        return 400, {"error": "POST a JSON object"}
                    unknown = set(body) - set(DEFAULT_FAULTS)
                    if unknown:
                        return 400, {"error": "unknown fault setting(s): %s" % sorted(unknown)}
                    STATE["faults"].update(body)
                return 200, STATE["faults"]
        return 404, {"error": "no such stand-in control endpoint"}

    def route(self, method, path, query, body):
        parts = [unquote(p) for p in path.split("/") if p]
        if not parts:
            if method in ("GET", "HEAD"):
                return 200, {
                    "name": "standin-node-1",
                    "cluster_name": "es-standin",
                    "cluster_uuid": "stand-in-cluster-uuid",
                    "version": {
                        "number": VERSION,
                        "build_flavor": "default",
                        "build_type": "tar",
                        "build_hash": "stand-in",
                        "build_date": "2024-10-09T00:00:00.000Z",
                        "build_snapshot": False,
                        "lucene_version": "9.11.1",
                        "minimum_wire_compatibility_version": "7.17.0",
                        "minimum_index_compatibility_version": "7.0.0",
                    },
                    "tagline": "You Know, for Search",
                }
        elif parts == ["_cluster", "health"] and method == "GET":
            return self.health(query)
        elif parts[0] == "_snapshot":
            return self.snapshot_api(method, parts[1:], query, body)
        elif len(parts) == 1 and not parts[0].startswith("_") and method in ("GET", "HEAD", "DELETE"):
            return self.index_api(method, parts[0])
        # Both engines answer unknown endpoints so (a string, not an error object).
        return 400, {"error": "no handler found for uri [%s] and method [%s]" % (self.path, method)}

    def index_api(self, method, name):
        """GET/HEAD/DELETE /<index>: the stand-in's indices are names only."""
        if name not in STATE["indices"]:
            return index_missing(name)
        if method == "DELETE":
            STATE["indices"].remove(name)
            return 200, {"acknowledged": True}
        return 200, {name: {"aliases": {}, "mappings": {}, "settings": {
            "index": {"number_of_shards": "1", "number_of_replicas": "0", "provided_name": name}}}}

    def health(self, query):
        status = STATE["faults"]["health"]
        nodes = 1
        unassigned = {"green": 0, "yellow": 1, "red": 2}[status]
        body = {
            "cluster_name": "es-standin",
            "status": status,
            "timed_out": False,
            "number_of_nodes": nodes,
            "number_of_data_nodes": nodes,
            "active_primary_shards": 1 if status != "red" else 0,
            "active_shards": 1 if status != "red" else 0,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": unassigned,
            "unassigned_primary_shards": 1 if status == "red" else 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": {"green": 100.0, "yellow": 50.0, "red": 0.0}[status],
        }
        wanted = query.get("wait_for_status")
        if wanted:
            if wanted not in HEALTH_ORDER:
                return es_error(400, "illegal_argument_exception", "unknown cluster health status [%s]" % wanted)
            if HEALTH_ORDER[status] < HEALTH_ORDER[wanted]:
                body["timed_out"] = True
                return 408, body
        return 200, body

    def snapshot_api(self, method, parts, query, body):
        repos = STATE["repositories"]
        if not parts:
            if method == "GET":
                return 200, repos
            return es_error(405, "illegal_argument_exception", "stand-in: method not allowed")
        repo = parts[0]
        rest = parts[1:]
        if not rest:
            if method == "PUT":
                if not isinstance(body, dict) or "type" not in body:
                    return es_error(400, "action_request_validation_exception", "Validation Failed: 1: type is missing;")
                repos[repo] = {"type": body["type"], "settings": body.get("settings", {})}
                STATE["snapshots"].setdefault(repo, {})
                return 200, {"acknowledged": True}
            if repo not in repos:
                return repository_missing(repo)
            if method == "GET":
                return 200, {repo: repos[repo]}
            if method == "DELETE":
                del repos[repo]
                return 200, {"acknowledged": True}
            return es_error(405, "illegal_argument_exception", "stand-in: method not allowed")
        if repo not in repos:
            return repository_missing(repo)
        snaps = STATE["snapshots"].setdefault(repo, {})
        if rest == ["_verify"] and method == "POST":
            if STATE["faults"]["verify_fails"]:
                return es_error(
                    500,
                    "repository_verification_exception",
                    "[%s] [[standin-node-2, 'RemoteTransportException[[standin-node-2][127.0.0.1:9300]"
                    "[internal:admin/repository/verify]]; nested: RepositoryVerificationException[[%s] a file "
                    "written by master to the store [/mnt/backup/elasticsearch] cannot be accessed on the node "
                    "[standin-node-2]. This might indicate that the store [/mnt/backup/elasticsearch] is not "
                    "shared between this node and the master node or that permissions on the store don't allow "
                    "reading files written by the master node];']]" % (repo, repo),
                )
            return 200, {"nodes": {"standin-node-1": {"name": "standin-node-1"}}}
        name = rest[0]
        if len(rest) == 2 and rest[1] == "_restore" and method == "POST":
            snap = snaps.get(name)
            if snap is None:
                # Both engines answer 500 here, not snapshot_missing_exception.
                return es_error(500, "snapshot_restore_exception", "[%s:%s] snapshot does not exist" % (repo, name))
            if snap["state"] not in ("SUCCESS", "PARTIAL"):
                return es_error(
                    500,
                    "snapshot_restore_exception",
                    "[%s:%s/%s] cannot restore index because the snapshot is %s"
                    % (repo, name, snap["uuid"], snap["state"]),
                )
            open_index = next((i for i in snap["indices"] if i in STATE["indices"]), None)
            if open_index is not None:
                return es_error(
                    500,
                    "snapshot_restore_exception",
                    "[%s:%s/%s] cannot restore index [%s] because an open index with same name already exists "
                    "in the cluster. Either close or delete the existing index or restore the index under a "
                    "different name by providing a rename pattern and replacement name"
                    % (repo, name, snap["uuid"], open_index),
                )
            # The indices come back (with no documents: the stand-in keeps none).
            STATE["indices"].extend(snap["indices"])
            if query.get("wait_for_completion") == "true":
                return 200, {
                    "snapshot": {"snapshot": name, "indices": snap["indices"], "shards": snap["shards"]}
                }
            return 200, {"accepted": True}
        if len(rest) != 1:
            return 400, {"error": "no handler found for uri [%s] and method [%s]" % (self.path, method)}
        if method == "PUT":
            return self.create_snapshot(repo, name, query, body)
        if method == "GET":
            verbose = query.get("verbose", "true") != "false"
            if name in ("*", "_all") or "," in name or "*" in name:
                selected = []
                for pattern in name.split(","):
                    if pattern != "_all" and "*" not in pattern and pattern not in snaps:
                        return es_error(
                            404, "snapshot_missing_exception", "[%s:%s] is missing" % (repo, pattern))
                    regex = re.compile("^" + re.escape(pattern).replace("\\*", ".*") + "$")
                    selected.extend(
                        s for n, s in snaps.items() if pattern == "_all" or regex.match(n)
                    )
                for snap in selected:
                    advance(snap)
                views = [snapshot_view(s, verbose) for s in selected]
                return 200, {"snapshots": views, "total": len(views), "remaining": 0}
            snap = snaps.get(name)
            if snap is None:
                return es_error(404, "snapshot_missing_exception", "[%s:%s] is missing" % (repo, name))
            advance(snap)
            return 200, {"snapshots": [snapshot_view(snap, verbose)], "total": 1, "remaining": 0}
        if method == "DELETE":
            if name not in snaps:
                return es_error(404, "snapshot_missing_exception", "[%s:%s] is missing" % (repo, name))
            del snaps[name]
            return 200, {"acknowledged": True}
        return es_error(405, "illegal_argument_exception", "stand-in: method not allowed")

    def create_snapshot(self, repo, name, query, body):
        snaps = STATE["snapshots"][repo]
        if name != name.lower() or any(c in name for c in ' ,"*\\<|>/?#'):
            return es_error(
                400,
                "invalid_snapshot_name_exception",
                "[%s:%s] Invalid snapshot name [%s], must be lowercase" % (repo, name, name),
            )
        if name in snaps:
            return es_error(
                400,
                "snapshot_name_already_in_use_exception",
                "[%s:%s] Invalid snapshot name [%s], snapshot with the same name already exists" % (repo, name, name),
            )
        body = body if isinstance(body, dict) else {}
        faults = STATE["faults"]
        indices, missing = expand_indices(body.get("indices"), bool(body.get("ignore_unavailable", False)))
        if missing is not None:
            return index_missing(missing)
        snap = {
            "snapshot": name,
            "uuid": new_uuid(),
            "repository": repo,
            "indices": indices,
            "include_global_state": bool(body.get("include_global_state", True)),
            "state": "IN_PROGRESS",
            "end_state": faults["snapshot_end"],
            "polls_left": int(faults["snapshot_polls"]),
            "start": now_millis(),
            "end": 0,
            "failures": [],
            "shards": {"total": 0, "failed": 0, "successful": 0},
        }
        snaps[name] = snap
        if query.get("wait_for_completion") == "true":
            snap["polls_left"] = 0
            advance(snap)
            return 200, {"snapshot": snapshot_view(snap)}
        return 200, {"accepted": True}


def repository_missing(repo):
    return es_error(404, "repository_missing_exception", "[%s] missing" % repo)


def main():
    parser = argparse.ArgumentParser(description="Elasticsearch stand-in for runbook's tests (not Elasticsearch).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--user", help="require basic auth with this user")
    parser.add_argument("--password", help="the basic-auth password")
    parser.add_argument("--api-key", help="require `Authorization: ApiKey <this>`")
    parser.add_argument(
        "--repository",
        action="append",
        default=[],
        metavar="NAME",
        help="register an fs repository at start (repeatable)",
    )
    parser.add_argument("--index", action="append", metavar="NAME", help="indices that exist (default thehive_global)")
    parser.add_argument("--faults", help="initial fault settings, a JSON object (see README.md)")
    parser.add_argument("--tls-cert", help="serve https with this PEM certificate chain")
    parser.add_argument("--tls-key", help="the PEM private key for --tls-cert")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    if args.user is not None:
        STATE["auth"] = ("basic", "%s:%s" % (args.user, args.password or ""))
    elif args.api_key is not None:
        STATE["auth"] = ("apikey", args.api_key)
    for repo in args.repository:
        STATE["repositories"][repo] = {"type": "fs", "settings": {"location": "/mnt/backup/elasticsearch"}}
        STATE["snapshots"][repo] = {}
    if args.index:
        STATE["indices"] = args.index
    if args.faults:
        faults = json.loads(args.faults)
        unknown = set(faults) - set(DEFAULT_FAULTS)
        if unknown:
            parser.error("unknown fault setting(s): %s" % sorted(unknown))
        STATE["faults"].update(faults)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.verbose = args.verbose
    scheme = "http"
    if args.tls_cert:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    print("es-standin (not Elasticsearch) listening on %s://127.0.0.1:%d" % (scheme, port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
