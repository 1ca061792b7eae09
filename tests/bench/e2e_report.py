#!/usr/bin/env python3
"""The report of tests/bench/e2e-bench.sh (Markdown on stdout), from its
results.tsv and sizes.tsv; also usable on the files of a run kept with KEEP=1:

    e2e_report.py WORK/results.tsv WORK/sizes.tsv WRITE_MBS READ_MBS CAN_DROP LOAD_START LOAD_END STARTED SETTINGS
"""
import csv, statistics, sys
results, sizes_file, write_mbs, read_mbs, can_drop, load_start, load_end, started, settings = sys.argv[1:]
write_mbs, read_mbs = float(write_mbs), float(read_mbs)
rows = list(csv.DictReader(open(results), delimiter="\t"))
sizes = {}
for line in open(sizes_file):
    name, ks, att, objects, docs = line.split("\t")
    sizes[name] = (int(ks), int(att), int(objects), int(docs))
order = {"small": 0, "1g": 1, "4g": 2}
configs = []
for r in rows:
    key = (r["size"], r["storage"], r["op"], r["cache"])
    if key not in configs:
        configs.append(key)

def of(key, tool):
    return [r for r in rows if (r["size"], r["storage"], r["op"], r["cache"]) == key and r["tool"] == tool]

print("End-to-end benchmark, %s: `%s tests/bench/e2e-bench.sh`" % (started, settings))
print()
print("Disk: %.0f MB/s fsync'd write (`dd bs=1M conv=fsync`), %.0f MB/s read (`dd iflag=direct`); "
      "page cache dropped before cold runs: %s; load average %s at the start, %s at the end; "
      "%d CPUs." % (write_mbs, read_mbs, can_drop, load_start, load_end, __import__("os").cpu_count()))
print()
print("| size | data | storage | op | cache | runbook s | guide s | ratio | worst run | runbook CPU s | guide CPU s | archives MB | runbook MB/s | × disk | runbook RSS MiB | runs |")
print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for key in configs:
    rb, gd = of(key, "runbook"), of(key, "guide")
    if not rb or not gd:
        continue
    rb_wall = statistics.median(float(r["wall"]) for r in rb)
    gd_wall = statistics.median(float(r["wall"]) for r in gd)
    by_run = {r["run"]: float(r["wall"]) for r in gd}
    pairs = [float(r["wall"]) / by_run[r["run"]] for r in rb if r["run"] in by_run]
    worst = max(pairs)
    mb = statistics.median(int(r["bytes"]) for r in rb) / 1e6
    speed = mb / rb_wall
    # backup: against writing the archives once; restore: against reading them once.
    disk = rb_wall / (mb / (write_mbs if key[2] == "backup" else read_mbs))
    rss = max(int(r["rss_kib"]) for r in rb) / 1024
    ks, att, objects, docs = sizes[key[0]]
    data = "%.2f GB" % ((ks + att) / 1e9) if ks + att >= 1e8 else "%.0f MB" % ((ks + att) / 1e6)
    summary[key] = dict(rb=rb_wall, gd=gd_wall, ratio=rb_wall / gd_wall, worst=worst, mb=mb, disk=disk, rss=rss)
    print("| %s | %s | %s | %s | %s | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f | %.0f | %.3g | %.1f× | %.1f | %d+%d |" % (
        key[0], data, key[1], key[2], key[3], rb_wall, gd_wall, rb_wall / gd_wall, worst,
        statistics.median(float(r["cpu"]) for r in rb), statistics.median(float(r["cpu"]) for r in gd),
        mb, speed, disk, rss, len(rb), len(gd)))
print()
print("ratio = median runbook / median guide; worst run = the largest runbook/guide ratio of one pair of "
      "runs; CPU = user + system of the whole run and every process it waited for (JVMs included); "
      "× disk = runbook's median time / the time to write (backup) or read (restore) its archives once "
      "at the disk's measured speed; RSS = runbook's own peak (VmHWM), not its children's.")
print()

def verdict(ok):
    return "met" if ok else "**not met**"

print("| target | measured | |")
print("|---|---|---|")
backups = {k: v for k, v in summary.items() if k[2] == "backup"}
restores = {k: v for k, v in summary.items() if k[2] == "restore"}
if backups:
    worst = max(v["worst"] for v in backups.values())
    print("| backup ≤ 0.33× the guide's time, in every run | worst run %.2f× (medians %.2f–%.2f×) | %s |" % (
        worst, min(v["ratio"] for v in backups.values()), max(v["ratio"] for v in backups.values()), verdict(worst <= 0.33)))
    big = {k: v for k, v in backups.items() if k[0] != "small"}
    which = "sizes above small"
    if not big:
        big, which = backups, "small only: fixed costs dominate"
    d = max(v["disk"] for v in big.values())
    print("| backup within 1.3× of writing its bytes once (%s) | %.1f–%.1f× | %s |" % (
        which, min(v["disk"] for v in big.values()), d, verdict(d <= 1.3)))
if restores:
    r = max(v["ratio"] for v in restores.values())
    print("| restore ≤ 0.5× the guide's time | medians %.2f–%.2f× | %s |" % (
        min(v["ratio"] for v in restores.values()), r, verdict(r <= 0.5)))
if summary:
    rss = max(v["rss"] for v in summary.values())
    print("| runbook's peak RSS < 64 MiB at every size | at most %.1f MiB | %s |" % (rss, verdict(rss < 64)))
# Linear growth: runbook's time per configuration across the sizes run.
names = sorted({k[0] for k in summary}, key=lambda s: order.get(s, 9))
growth = []
for (size, storage, op, cache), v in summary.items():
    if size != names[-1] or len(names) < 2:
        continue
    points = [(sizes[s][0] + sizes[s][1], summary[(s, storage, op, cache)]["rb"]) for s in names if (s, storage, op, cache) in summary]
    (b0, t0), (b1, t1) = points[0], points[-1]
    slope = (t1 - t0) / ((b1 - b0) / 1e9)
    text = "%s %s %s: %s s" % (storage, op, cache, " → ".join("%.1f" % t for _, t in points))
    if len(points) == 3:
        middle = t0 + slope * (points[1][0] - b0) / 1e9
        text += " (middle %.0f%% off the line)" % (100 * abs(points[1][1] - middle) / middle)
    growth.append(text + ", %.1f s per GB" % slope)
if growth:
    linear = "yes" if len(names) >= 3 else "needs three sizes to tell"
    print("| time growing linearly with size (%s) | %s | %s |" % (", ".join(names), "; ".join(growth), linear))
