"""A real OpenSearch node for the sandbox (`sandbox.py start --es opensearch`).

The node is OpenSearch 2.19 from Maven Central, installed by
tests/real-servers/opensearch/install.sh into .real-servers/opensearch/ and run by
tests/real-servers/opensearch/opensearch-node (a launcher class extending
org.opensearch.node.Node). This module writes its config, picks its loopback
address, fills it (the fs repository `thehive_repository`, the index
`thehive_global` with deterministic documents) and digests its indices.

Python 3 standard library only.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
COMPONENT = os.path.join(REPO, "tests", "real-servers", "opensearch")
LAUNCHER = os.path.join(COMPONENT, "opensearch-node")
CACHE = os.path.join(REPO, ".real-servers", "opensearch")

#: OpenSearch's default ports, on the node's own loopback address.
HTTP_PORT = 9200
TRANSPORT_PORT = 9300
#: Ports another server of the sandbox (Cassandra: CQL, storage, JMX) may hold on
#: an address; an address where any of them is bound is not taken.
OTHER_SERVER_PORTS = (9042, 7000, 7199)
#: Heap of the node. 256 MB holds the sandbox's index (thousands of small documents)
#: with room; OPENSEARCH_HEAP overrides it.
DEFAULT_HEAP = "256m"
#: The documents are written in bulk requests of this many.
BULK_SIZE = 500

#: Held from probing a free address until the node has bound its ports, so two
#: sandboxes starting at once (two test binaries, two tests) never pick the same.
ADDRESS_LOCK = os.path.join(tempfile.gettempdir(), "runbook-sandbox-loopback.lock")

HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OpenSearchError(Exception):
    """Something the real OpenSearch node could not do; the message says what."""


def installed_version():
    """The OpenSearch version installed in the cache (from its jar's name), or None."""
    lib = os.path.join(CACHE, "lib")
    if not os.path.isdir(lib):
        return None
    for name in os.listdir(lib):
        if name.startswith("opensearch-2") or name.startswith("opensearch-3"):
            return name[len("opensearch-"):-len(".jar")]
    return None


def ensure_installed():
    """Runs the installer (a no-op when done); raises with its message when it fails."""
    done = subprocess.run(["bash", os.path.join(COMPONENT, "install.sh")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise OpenSearchError("installing OpenSearch failed: %s" % done.stdout.strip())
    version = installed_version()
    if version is None:
        raise OpenSearchError("%s holds no opensearch jar after install.sh" % os.path.join(CACHE, "lib"))
    return version


def port_free(address, port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
        return True


def free_loopback_address(exclude=()):
    """The first address 127.0.0.2-254 where the node's ports and the other servers' are free.

    `exclude` names addresses already given to another server of this sandbox.
    """
    for last in range(2, 255):
        address = "127.0.0.%d" % last
        if address in exclude:
            continue
        if all(port_free(address, port) for port in (HTTP_PORT, TRANSPORT_PORT) + OTHER_SERVER_PORTS):
            return address
    raise OpenSearchError("no loopback address 127.0.0.2-254 has ports %d and %d free" % (HTTP_PORT, TRANSPORT_PORT))


@contextlib.contextmanager
def address_lock():
    """An exclusive lock on ADDRESS_LOCK (released on exit, also by a crash)."""
    with open(ADDRESS_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_home(home, address, repository_path, cluster_name="thehive-sandbox"):
    """Writes HOME/config (opensearch.yml, log4j2.properties) and the folders the node needs."""
    for sub in ("config", "data", "logs", "modules", "plugins", "tmp"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    settings = {
        "cluster.name": cluster_name,
        "node.name": "sandbox-opensearch",
        "path.data": os.path.join(home, "data"),
        "path.logs": os.path.join(home, "logs"),
        # Snapshot locations must lie under path.repo.
        "path.repo": [repository_path],
        "network.host": address,
        "http.port": HTTP_PORT,
        "transport.port": TRANSPORT_PORT,
        "discovery.type": "single-node",
        # A busy or nearly full test disk must not leave shards unassigned.
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    with open(os.path.join(home, "config", "opensearch.yml"), "w", encoding="utf-8") as handle:
        # JSON is YAML: no quoting rules to get wrong for paths.
        for key, value in settings.items():
            handle.write("%s: %s\n" % (key, json.dumps(value)))
    with open(os.path.join(COMPONENT, "log4j2.properties"), encoding="utf-8") as source:
        text = source.read()
    with open(os.path.join(home, "config", "log4j2.properties"), "w", encoding="utf-8") as handle:
        handle.write(text)


def argv(home):
    return ["bash", LAUNCHER, home]


def environment():
    env = dict(os.environ)
    env.setdefault("OPENSEARCH_HEAP", DEFAULT_HEAP)
    return env


# ---- HTTP ---------------------------------------------------------------------

def request(method, url, body=None, timeout=30, content_type="application/json"):
    """(status, parsed JSON) of a request; raises OSError when nothing answers."""
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with HTTP.open(req, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def checked(method, url, body=None, **options):
    status, answer = request(method, url, body, **options)
    if status >= 300:
        raise OpenSearchError("%s %s answered %s: %s" % (method, url, status, answer))
    return answer


def healthy(url):
    """True when the node answers `_cluster/health?wait_for_status=yellow` with yellow or green."""
    try:
        status, answer = request("GET", url + "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=3)
    except OSError:
        return False
    return status == 200 and isinstance(answer, dict) and answer.get("status") in ("yellow", "green")


def rss_kib(pid):
    """Resident memory (KiB) of the process and its children, from /proc, or None."""
    total = 0
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="ascii", errors="replace") as handle:
                stat = handle.read()
            pgrp = int(stat[stat.rfind(")") + 2:].split()[2])
            if pgrp != pid:
                continue
            with open("/proc/%s/status" % entry, encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        found = True
        except (OSError, ValueError, IndexError):
            continue
    return total if found else None


# ---- content -----------------------------------------------------------------

def document(number):
    """The deterministic document `number` (1-based): what TheHive might index for a case."""
    seed = hashlib.sha256(b"thehive-sandbox-doc-%d" % number).hexdigest()
    return {
        "_label": ["Case", "Alert", "Observable", "Task"][number % 4],
        "title": "sandbox case %d" % number,
        "number": number,
        "severity": 1 + number % 4,
        "tlp": ["white", "green", "amber", "red"][number % 4],
        "tags": ["sandbox", "tag-%d" % (number % 7)],
        "description": "generated document %d, seed %s" % (number, seed),
        "_createdAt": 1764108000000 + number * 1000,
    }


def document_id(number):
    return "doc-%06d" % number


def populate(url, repository, repository_location, index, docs):
    """Registers the fs repository and creates `index` with `docs` documents, refreshed."""
    checked("PUT", "%s/_snapshot/%s" % (url, repository),
            {"type": "fs", "settings": {"location": repository_location}})
    checked("PUT", "%s/%s" % (url, index),
            # One node cannot hold a replica: none, so the index is green.
            {"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    for first in range(1, docs + 1, BULK_SIZE):
        lines = []
        for number in range(first, min(first + BULK_SIZE, docs + 1)):
            lines.append(json.dumps({"index": {"_index": index, "_id": document_id(number)}}))
            lines.append(json.dumps(document(number), sort_keys=True))
        answer = checked("POST", url + "/_bulk", ("\n".join(lines) + "\n").encode(),
                         content_type="application/x-ndjson")
        if answer.get("errors"):
            failed = [item for item in answer["items"] if item["index"].get("error")]
            raise OpenSearchError("bulk indexing into %s failed: %s" % (index, failed[0]))
    checked("POST", "%s/%s/_refresh" % (url, index))
    count = checked("GET", "%s/%s/_count" % (url, index))["count"]
    if count != docs:
        raise OpenSearchError("index %s holds %d documents after indexing %d" % (index, count, docs))


def start(paths, address_exclude, docs, repository, index, spawn, wait_until_answers, processes, save, say):
    """Starts the node, waits for yellow health, fills it; returns the node's record.

    `spawn`, `wait_until_answers`, `save` and `say` are sandbox.py's, so the node is
    recorded (and stopped) like every other server of the sandbox.
    """
    version = ensure_installed()
    home = paths["opensearch_home"]
    with address_lock():
        address = free_loopback_address(address_exclude)
        write_home(home, address, paths["es_archive"])
        url = "http://%s:%d" % (address, HTTP_PORT)
        began = time.monotonic()
        child, record = spawn("elasticsearch (OpenSearch %s)" % version, argv(home),
                              os.path.join(paths["logs"], "opensearch.log"), env=environment())
        record.update(role="elasticsearch", address=address, port=HTTP_PORT, transport_port=TRANSPORT_PORT,
                      url=url, check_url=url + "/_cluster/health", version=version,
                      heap=environment()["OPENSEARCH_HEAP"])
        processes.append(record)
        save()
        say("started OpenSearch %s on %s (pid %d)" % (version, url, child.pid))
        # Healthy means its ports are bound: from here on a probe sees them taken.
        wait_until_answers(child, record, lambda: healthy(url))
        record["start_seconds"] = round(time.monotonic() - began, 1)
    populate(url, repository, paths["es_archive"], index, docs)
    record["rss_kib"] = rss_kib(record["pgid"])
    record["documents"] = docs
    save()
    say("OpenSearch answered after %.1f s; index %s holds %d documents; RSS %s KiB"
        % (record["start_seconds"], index, docs, record["rss_kib"]))
    return url


# ---- digest ------------------------------------------------------------------

def indices_digest(url):
    """{index: {"documents": N, "sha256": H}} for every non-hidden index of the node.

    H is the SHA-256 of the documents sorted by id, each as `id TAB canonical JSON
    source NEWLINE` (keys sorted, compact), so two digests of the same documents are
    equal whatever their order on disk, and any changed, added or removed document
    changes it.
    """
    listed = checked("GET", url + "/_cat/indices?format=json&h=index&expand_wildcards=open")
    result = {}
    for name in sorted(entry["index"] for entry in listed if not entry["index"].startswith(".")):
        checked("POST", "%s/%s/_refresh" % (url, name))
        documents = []
        answer = checked("POST", "%s/%s/_search?scroll=1m" % (url, name),
                         {"size": 1000, "sort": ["_doc"], "query": {"match_all": {}}})
        scroll = answer.get("_scroll_id")
        try:
            while answer["hits"]["hits"]:
                for hit in answer["hits"]["hits"]:
                    documents.append((hit["_id"], json.dumps(hit["_source"], sort_keys=True,
                                                             separators=(",", ":"), ensure_ascii=False)))
                answer = checked("POST", url + "/_search/scroll", {"scroll": "1m", "scroll_id": scroll})
                scroll = answer.get("_scroll_id", scroll)
        finally:
            if scroll:
                request("DELETE", url + "/_search/scroll", {"scroll_id": scroll})
        documents.sort()
        digest = hashlib.sha256()
        for doc_id, source in documents:
            digest.update(("%s\t%s\n" % (doc_id, source)).encode("utf-8"))
        result[name] = {"documents": len(documents), "sha256": digest.hexdigest()}
    return result
