#!/usr/bin/env python3
"""Turns the raw figures of bench/run.sh (bench/results/<part>.tsv) into ratios against the
peers of the same run and PASS/FAIL against the targets of issue 8.

usage: report.py PART --results DIR        PART: serving forwarding propagation coldstart hosts criterion
       report.py summary --results DIR --rev REV --quick 0|1

Each PART writes DIR/<part>.md (also printed) and DIR/<part>.json (its targets); summary
writes DIR/latest.md from every part's files, with a table of all targets first.
"""

import argparse
import datetime
import json
import math
import os
import re
import statistics
import sys
from collections import defaultdict

PARTS = ["serving", "forwarding", "propagation", "coldstart", "hosts", "criterion"]
PEER_NAMES = {
    "knot": "Knot DNS",
    "unbound": "Unbound",
    "dnsmasq": "dnsmasq",
    "hickory": "hickory-dns",
    "zkdns": "zkdns",
    "zkdns-nocache": "zkdns --no-cache (reference)",
    "dnsmasq-default": "dnsmasq, default 150-entry cache",
    "floor": "bare loop (reference)",
}
# Measured beside the peers, never one of them: bench/tool/src/floor.rs.
REFERENCE = "floor"


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pct(values, q):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v), max(1, math.ceil(q * len(v)))) - 1]


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and v != v:
        return "–"
    return f"{v:,.{digits}f}"


def verdict(ok):
    return "PASS" if ok else "FAIL"


def write(results, part, lines, targets):
    text = "\n".join(lines) + "\n"
    with open(os.path.join(results, f"{part}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(results, f"{part}.json"), "w") as f:
        json.dump({"targets": targets, "at": now(), "rev": os.environ.get("ZKDNS_REV", "?")}, f, indent=1)
    print(text)


def now():
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


# --- serving ------------------------------------------------------------------------------------
def serving(results):
    data = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    skipped = []
    meta = {}
    for r in rows(os.path.join(results, "serving.tsv"))[1:]:
        if r[0] == "meta":
            meta = {r[i]: r[i + 1] for i in range(1, len(r) - 1, 2)}
            continue
        if len(r) >= 3 and r[1] == "skipped":
            skipped.append(f"{r[0]}: {r[2]}")
            continue
        size, server, _rep, metric, value = r
        try:
            data[int(size)][server][metric].append(float(value))
        except ValueError:
            pass
    rate = meta.get("rate", "?")
    lines = [
        "## Serving",
        "",
        f"Same A records on 127.0.0.1, each server pinned to core 0, dnsperf to core 1; "
        f"fixed rate {rate} qps for {meta.get('fixed_secs', '?')} s, then unthrottled; each measurement "
        f"repeated {meta.get('reps', '?')} times, interleaved across the servers; medians.",
        "",
    ]
    targets = []
    for size in sorted(data):
        by = data[size]
        m = {s: {k: med(v) for k, v in metrics.items()} for s, metrics in by.items()}
        order = ["zkdns"] + sorted(s for s in m if s not in ("zkdns", REFERENCE))
        order += [REFERENCE] if REFERENCE in m else []
        lines += [
            f"### {size:,} names",
            "",
            "| server | CPU µs/query | avg latency µs | answered qps | wakeups/query | max qps | loss at max | server CPU at max | RSS MiB | anon MiB | load ms | NOERROR |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in order:
            x = m[s]
            rss, anon = x.get("rss_kb"), x.get("rss_anon_kb")
            lines.append(
                f"| {PEER_NAMES.get(s, s)} | {fmt(x.get('cpu_us'), 2)} | {fmt(x.get('latency_us'))} | "
                f"{fmt(x.get('fixed_qps'), 0)} | {fmt(x.get('switches_per_q'), 2)} | {fmt(x.get('max_qps'), 0)} | {fmt(x.get('max_lost_pct'), 2)} % | "
                f"{fmt(x.get('max_server_cpu_pct'), 0)} % | {fmt(rss / 1024 if rss else None)} | "
                f"{fmt(anon / 1024 if anon else None)} | "
                f"{fmt(x.get('load_ms'), 0)} | {fmt(x.get('noerror_pct'), 1)} % |"
            )
        others = med([v for s in by for v in by[s].get("others_core0_pct", [])])
        if others is not None:
            lines += ["", f"Other processes (not the server) ran on core 0 {others:.0f} % of the time "
                          "during the fixed-rate runs (median)" + (": a busy machine, latencies are noisy."
                                                                   if others > 15 else ".")]
        lines += [
            "",
            "CPU is utime+stime of all the server's threads over the fixed-rate run ÷ answered "
            "queries; wakeups are its context switches per answered query. At \"max\" dnsperf runs "
            "unthrottled (1000 outstanding) on the other core: where the server's CPU at max is well "
            "under 100 %, dnsperf, not the server, was the limit. RSS is after loading; anon is "
            "its anonymous part (heap and stacks), without the file-backed pages of code that "
            "every process running the same binary shares.",
            "",
        ]
        peers = [s for s in m if s not in ("zkdns", REFERENCE)]
        z = m.get("zkdns")
        if not z or not peers:
            lines += ["(no zkdns or no peer: no ratios)", ""]
            continue

        def best(metric, pick):
            cands = [(m[p][metric], p) for p in peers if m[p].get(metric) is not None]
            return pick(cands) if cands else (None, None)

        cpu_best, cpu_peer = best("cpu_us", min)
        lat_best, lat_peer = best("latency_us", min)
        qps_best, qps_peer = best("max_qps", max)
        rss_best, rss_peer = best("rss_kb", min)
        lines.append("Ratios, zkdns ÷ peer (same run):")
        lines.append("")
        lines.append("| peer | CPU/query | avg latency | max qps | RSS | anon RSS |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for p in sorted(peers):
            def ratio(metric):
                a, b = z.get(metric), m[p].get(metric)
                return f"{a / b:.2f}×" if a is not None and b else "–"
            lines.append(
                f"| {PEER_NAMES.get(p, p)} | {ratio('cpu_us')} | {ratio('latency_us')} | "
                f"{ratio('max_qps')} | {ratio('rss_kb')} | {ratio('rss_anon_kb')} |"
            )
        lines.append("")
        floor = m.get(REFERENCE, {}).get("cpu_us")
        if floor and cpu_best is not None:
            lines += [
                f"The bare loop (one thread in recvmmsg/sendmmsg answering from a hash map, no "
                f"other DNS work) used {floor:.2f} µs a query at "
                f"{fmt(m[REFERENCE].get('latency_us'), 0)} µs latency: zkdns {z['cpu_us'] / floor:.2f}× "
                f"of it, the best peer ({PEER_NAMES[cpu_peer]}) {cpu_best / floor:.2f}×. "
                f"0.8× the best peer is {0.8 * cpu_best:.2f} µs = {0.8 * cpu_best / floor:.2f}× the bare loop.",
                "",
            ]
        if cpu_best is not None and lat_best is not None:
            r = z["cpu_us"] / cpu_best
            ok = r <= 0.8 and z["latency_us"] <= lat_best
            targets.append({
                "target": f"CPU/query ≤ 0.8× best peer and avg latency ≤ best peer's ({size:,} names, {rate} qps)",
                "measured": f"CPU {z['cpu_us']:.2f} µs = {r:.2f}× {PEER_NAMES[cpu_peer]}; latency "
                            f"{z['latency_us']:.0f} µs vs {lat_best:.0f} µs ({PEER_NAMES[lat_peer]})",
                "pass": ok,
            })
        if qps_best is not None and z.get("max_qps") is not None:
            targets.append({
                "target": f"max qps ≥ best peer's ({size:,} names)",
                "measured": f"{z['max_qps']:,.0f} = {z['max_qps'] / qps_best:.2f}× {PEER_NAMES[qps_peer]} ({qps_best:,.0f})",
                "pass": z["max_qps"] >= qps_best,
            })
        if size >= 100000 and rss_best is not None and z.get("rss_kb") is not None:
            targets.append({
                "target": f"RSS ≤ best peer's ({size:,} names)",
                "measured": f"{z['rss_kb'] / 1024:.1f} MiB = {z['rss_kb'] / rss_best:.2f}× {PEER_NAMES[rss_peer]} ({rss_best / 1024:.1f} MiB)"
                            + anon_note(z, m[rss_peer], PEER_NAMES[rss_peer]),
                "pass": z["rss_kb"] <= rss_best,
            })
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    lines += target_lines(targets)
    write(results, "serving", lines, targets)


def anon_note(z, peer, name):
    """The anonymous parts of two RSS figures, when both were measured."""
    a, b = z.get("rss_anon_kb"), peer.get("rss_anon_kb")
    if not a or not b:
        return ""
    return f"; anonymous {a / 1024:.1f} MiB = {a / b:.2f}× {name}'s {b / 1024:.1f} MiB"


def target_lines(targets):
    out = []
    for t in targets:
        out.append(f"- **{verdict(t['pass'])}** {t['target']}: {t['measured']}")
    return out + [""] if out else out


# --- forwarding ---------------------------------------------------------------------------------
FWD_PHASES = {
    "warm": "warm: 1,000 names, A and AAAA, asked over and over",
    "negative": "negative: 1,000 missing names (NXDOMAIN + SOA) asked over and over",
    "cold": "cold: every name new (every query a miss)",
    "inzone": "in-zone reference: zkdns answering names of its own zone at the same rate",
}
# The caching peers that zkdns is held against; the others are shown for reference.
FWD_PEERS = ["dnsmasq", "unbound"]


def forwarding(results):
    meta, m = {}, defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows(os.path.join(results, "forwarding.tsv"))[1:]:
        if r[0] == "meta":
            meta = dict(zip(r[1::2], r[2::2]))
            continue
        phase, server, _rep, metric, value = r
        try:
            m[phase][server][metric].append(float(value))
        except ValueError:
            pass
    rate = int(meta.get("rate", 0))
    lines = [
        "## Forwarding (names outside the zones)",
        "",
        f"Each server a caching forwarder pinned to one core in front of the same upstream "
        f"(bench/tool upstream: authoritative, TTL 300, counting what it is asked) at {rate:,} qps for "
        f"{meta.get('secs', '?')} s per phase, {meta.get('reps', '?')} repetitions with names new to "
        "every server; medians. *Upstream* is the queries that reached the upstream per phase.",
        "",
    ]
    targets = []
    servers = sorted({s for p in m.values() for s in p}, key=lambda s: (s not in ("zkdns",), s))

    def v(phase, s, metric):
        return med(m[phase][s].get(metric, []))

    for phase, title in FWD_PHASES.items():
        if phase not in m:
            continue
        lines += [f"### {title}", "",
                  "| server | CPU µs/query | avg latency µs | p99 latency µs | upstream queries | answered % |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for s in servers:
            if s not in m[phase]:
                continue
            lines.append(f"| {PEER_NAMES.get(s, s)} | {fmt(v(phase, s, 'cpu_us'), 2)} | {fmt(v(phase, s, 'latency_us'), 0)} | "
                         f"{fmt(v(phase, s, 'p99_us'), 0)} | {fmt(v(phase, s, 'upstream'), 0)} | "
                         f"{fmt(v(phase, s, 'answered_pct'), 1)} |")
        lines.append("")
        peers = [p for p in FWD_PEERS if p in m[phase] and v(phase, p, "cpu_us") is not None]
        if "zkdns" not in m[phase] or not peers:
            continue

        def best(metric):
            return min((v(phase, p, metric), p) for p in peers if v(phase, p, metric) is not None)

        z_cpu, z_lat, z_up = (v(phase, "zkdns", k) for k in ("cpu_us", "latency_us", "upstream"))
        (c_best, c_peer), (l_best, l_peer), (u_best, u_peer) = best("cpu_us"), best("latency_us"), best("upstream")
        if phase == "inzone":
            continue
        if phase in ("warm", "negative"):
            r = z_cpu / c_best
            targets.append({
                "target": f"{phase}: CPU/query ≤ 0.8× best caching peer and avg latency ≤ best peer's",
                "measured": f"CPU {z_cpu:.2f} µs = {r:.2f}× {PEER_NAMES[c_peer]}; latency {z_lat:.0f} µs vs "
                            f"{l_best:.0f} µs ({PEER_NAMES[l_peer]})",
                "pass": r <= 0.8 and z_lat <= l_best,
            })
            targets.append({
                "target": f"{phase}: queries reaching the upstream ≤ best peer's",
                "measured": f"{z_up:,.0f} vs {u_best:,.0f} ({PEER_NAMES[u_peer]})",
                "pass": z_up <= u_best,
            })
        else:
            r = z_cpu / c_best
            targets.append({
                "target": "cold: CPU/query ≤ 1.0× best caching peer",
                "measured": f"CPU {z_cpu:.2f} µs = {r:.2f}× {PEER_NAMES[c_peer]}",
                "pass": r <= 1.0,
            })
    neg, own, miss = (v(p, "zkdns", "cpu_us") for p in ("negative", "inzone", "cold"))
    asked, sent = v("negative", "zkdns", "queries"), v("negative", "zkdns", "upstream")
    if neg and own and miss and asked and sent is not None and asked > sent:
        # the negative phase is all hits but its first 1,000 questions: take their cost out
        hit = (neg * asked - miss * sent) / (asked - sent)
        lines += [f"A cache hit costs what an in-zone answer does: the negative phase's {neg:.2f} µs a query, "
                  f"less its {sent:,.0f} misses at the cold phase's {miss:.2f} µs, is {hit:.2f} µs a hit, "
                  f"against {own:.2f} µs for a name of the zone ({hit / own:.2f}×).", ""]
    rss = {s: v("cold", s, "rss_kb") for s in servers if v("cold", s, "rss_kb")}
    if rss:
        lines += ["RSS at the end (every cache as full as the cold phase made it):", "",
                  "| server | RSS MiB |", "| --- | ---: |"]
        lines += [f"| {PEER_NAMES.get(s, s)} | {rss[s] / 1024:.1f} |" for s in servers if s in rss]
        lines.append("")
        if "zkdns" in rss and "dnsmasq-default" in rss:
            targets.append({
                "target": "RSS with the cache filled ≤ dnsmasq's with its default cache",
                "measured": f"{rss['zkdns'] / 1024:.1f} MiB vs {rss['dnsmasq-default'] / 1024:.1f} MiB",
                "pass": rss["zkdns"] <= rss["dnsmasq-default"],
            })
    lines += target_lines(targets)
    write(results, "forwarding", lines, targets)


# --- propagation --------------------------------------------------------------------------------
def propagation(results):
    samples = defaultdict(lambda: defaultdict(list))
    events = defaultdict(lambda: defaultdict(list))
    added = defaultdict(list)
    missed = defaultdict(int)
    load = {}
    storage = "?"
    for r in rows(os.path.join(results, "propagation.tsv")):
        if r[0] == "dnsperf":
            load[r[1]] = r[2]
            continue
        if r[0] == "zookeeper":
            storage = r[1]
            continue
        label, kind, _k, answer, _ack, event = r
        a, e = float(answer), float(event)
        if a < 0:
            missed[label] += 1
            continue
        samples[label][kind].append(a)
        if e >= 0:
            events[label][kind].append(e)
            added[label].append(a - e)
    lines = [
        "## Propagation",
        "",
        "ZooKeeper write → first DNS answer from zkdns that shows it (10k names loaded). "
        "\"ZK event\" is when ZooKeeper delivered the same change to a watching session of the "
        "benchmark's own: the floor any watcher sits on. "
        f"ZooKeeper's data on {storage}.",
        "",
    ]
    targets = []
    for label in sorted(samples, key=lambda x: (x != "idle", x)):
        kinds = samples[label]
        head = f"### {label}"
        if label in load:
            head += f" (dnsperf on other names: {load[label]})"
        lines += [head, "", "| change | n | p50 ms | p99 ms | max ms | ZK event p50 ms | ZK event p99 ms |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        everything = []
        all_events = []
        for kind in ["set", "create", "delete", "member", "close"]:
            v = kinds.get(kind, [])
            ev = events[label].get(kind, [])
            everything += v
            all_events += ev
            lines.append(f"| {kind} | {len(v)} | {fmt(pct(v, .5), 2)} | {fmt(pct(v, .99), 2)} | "
                         f"{fmt(pct(v, 1), 2)} | {fmt(pct(ev, .5), 2)} | {fmt(pct(ev, .99), 2)} |")
        lines.append(f"| **all** | {len(everything)} | {fmt(pct(everything, .5), 2)} | "
                     f"{fmt(pct(everything, .99), 2)} | {fmt(pct(everything, 1), 2)} | "
                     f"{fmt(pct(all_events, .5), 2)} | {fmt(pct(all_events, .99), 2)} |")
        lines.append("")
        a = added[label]
        lines.append(f"zkdns's own share (answer − ZK event): p50 {fmt(pct(a, .5), 2)} ms, "
                     f"p99 {fmt(pct(a, .99), 2)} ms. Never answered: {missed[label]}.")
        lines.append("")
        p99 = pct(everything, .99)
        targets.append({
            "target": f"propagation p99 ≤ 5 ms ({label})",
            "measured": f"p99 {p99:.2f} ms over {len(everything)} changes (ZooKeeper's own event p99 "
                        f"{pct(all_events, .99):.2f} ms)",
            "pass": p99 <= 5.0 and missed[label] == 0,
        })
    lines += target_lines(targets)
    write(results, "propagation", lines, targets)


# --- cold start, idle and resync ----------------------------------------------------------------
def coldstart(results):
    ready = defaultdict(list)
    rss = defaultdict(list)
    settled = defaultdict(list)
    idle = []
    for r in rows(os.path.join(results, "coldstart.tsv")):
        if r[1] == "idle":
            idle.append(r)
            continue
        label, _run, ms, kb, kb2, _stop = r
        ready[label].append(float(ms))
        rss[label].append(float(kb))
        settled[label].append(float(kb2))
    resync = defaultdict(list)
    stale = defaultdict(list)
    for r in rows(os.path.join(results, "resync.tsv")):
        resync[r[0]].append(float(r[2]))
        stale[r[0]].append(r[3] == "1")
    lines = ["## Cold start, idle and resync", ""]
    targets = []
    if ready:
        lines += [
            "Process start → first correct answer with 100k names (zkdns: read from ZooKeeper; "
            "peers: from their files), medians; RSS when answering and 1 s later.",
            "",
            "| server | ready ms | RSS MiB | RSS after 1 s MiB | runs |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        order = ["zkdns"] + sorted(s for s in ready if s != "zkdns")
        for s in order:
            if s in ready:
                lines.append(f"| {PEER_NAMES.get(s, s)} | {fmt(med(ready[s]), 0)} | "
                             f"{fmt(med(rss[s]) / 1024)} | {fmt(med(settled[s]) / 1024)} | {len(ready[s])} |")
        lines.append("")
        peers = [s for s in ready if s != "zkdns"]
        if "zkdns" in ready:
            z = med(ready["zkdns"])
            extra = ""
            if peers:
                b = min(peers, key=lambda p: med(ready[p]))
                extra = f" = {z / med(ready[b]):.2f}× {PEER_NAMES[b]} ({med(ready[b]):.0f} ms)"
            targets.append({
                "target": "100k names loaded and serving in < 2 s",
                "measured": f"{z:.0f} ms{extra}",
                "pass": z < 2000,
            })
    for r in idle:
        label, _, secs, ticks, cpu_ms, switches = r
        secs, ticks, cpu_ms, switches = int(secs), int(ticks), float(cpu_ms), int(switches)
        lines.append(f"Idle {label} (no queries, no changes) over {secs} s: {ticks} clock ticks, "
                     f"{cpu_ms:.2f} ms CPU, {switches / secs:.1f} wakeups/s.")
        lines.append("")
        if label == "zkdns":
            # "no CPU": not one clock tick over the window (ZooKeeper's session pings aside,
            # which cost microseconds)
            targets.append({
                "target": "an idle stub uses no CPU",
                "measured": f"{ticks} ticks, {cpu_ms:.2f} ms CPU in {secs} s ({cpu_ms / secs / 10:.4f} % of a core), "
                            f"{switches / secs:.1f} wakeups/s",
                "pass": ticks == 0 and cpu_ms / secs < 0.5,
            })
    if resync:
        lines += ["Resync: zkdns's ZooKeeper connection cut through a proxy, a name changed during "
                  "the cut, the connection restored; time from the restore to the first answer with "
                  "the change (median, max).", "",
                  "| scenario | runs | median ms | max ms | old answer served during the cut |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for scen in ["reconnect", "expiry"]:
            if scen in resync:
                v = resync[scen]
                lines.append(f"| {scen} | {len(v)} | {fmt(med(v), 0)} | {fmt(max(v), 0)} | "
                             f"{'yes' if all(stale[scen]) else 'NOT ALWAYS'} |")
        lines.append("")
    lines += target_lines(targets)
    write(results, "coldstart", lines, targets)


# --- hosts --------------------------------------------------------------------------------------
def hosts(results):
    lat, per_change, bursts = [], [], []
    note = None
    for r in rows(os.path.join(results, "hosts.tsv")):
        if r[0] == "skipped":
            note = r[1]
        elif r[0] == "change":
            lat.append(float(r[2]))
            per_change.append(int(r[3]))
        elif r[0] == "burst":
            bursts.append((int(r[2]), float(r[3]), float(r[4])))
    lines = ["## Hosts mode", ""]
    if note:
        lines += [f"Skipped: {note}", ""]
    else:
        lines += [
            "`zkdns hosts --file` with 1k names: ZooKeeper write → the file holding the change "
            "(inotify on the file's directory, then a read).",
            "",
            f"- single changes: n={len(lat)}, p50 {fmt(pct(lat, .5), 1)} ms, p99 {fmt(pct(lat, .99), 1)} ms, "
            f"max {fmt(pct(lat, 1), 1)} ms; file writes per change: {fmt(med(per_change), 0)} (median)",
        ]
        for i, (w, span, last) in enumerate(bursts, 1):
            lines.append(f"- burst {i}: 1000 changes over {span:.0f} ms → **{w} file writes**; "
                         f"last change in the file {last:.0f} ms after it was sent")
        lines.append("")
    write(results, "hosts", lines, [])


# --- criterion ----------------------------------------------------------------------------------
UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def criterion(results):
    path = os.path.join(results, "criterion.txt")
    text = open(path).read() if os.path.exists(path) else ""
    found = {}
    name = None
    times = re.compile(r"time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]")
    skip = ("Benchmarking", "Found", "Gnuplot", "Warning", "Running", "WARNING")
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith(skip):
            name = line.split("time:")[0].strip()
        m = times.search(line)
        if m and name:
            found[name] = float(m.group(3)) * UNITS[m.group(4)]
    lines = ["## Criterion (benches/query_path.rs)", "",
             "Median estimates; 10k-name snapshot for lookups and answers, 100k for builds.", "",
             "| bench | time |", "| --- | ---: |"]
    for k, v in found.items():
        shown = f"{v:,.1f} ns" if v < 1e4 else (f"{v / 1e3:,.1f} µs" if v < 1e7 else f"{v / 1e6:,.1f} ms")
        lines.append(f"| {k} | {shown} |")
    lines.append("")
    heap = re.search(r"snapshot tables at 100k names: .*", text)
    if heap:
        lines += [heap.group(0)[0].upper() + heap.group(0)[1:] + ".", ""]
    inc = [v for k, v in found.items() if "incremental" in k]
    full = [v for k, v in found.items() if "full" in k]
    if inc and full:
        lines.append(f"Applying one changed set at 100k names (and taking the snapshot to publish) is "
                     f"{full[0] / inc[0]:,.0f}× faster than a full build.")
        lines.append("")
    write(results, "criterion", lines, [])


# --- summary ------------------------------------------------------------------------------------
def summary(results, rev, quick):
    lines = [
        "# zkdns benchmark results",
        "",
        f"Written {now()} by `bench/run.sh{' --quick' if quick == '1' else ''}` (last part run: zkdns {rev}). "
        f"Machine: shared {os.cpu_count()}-core VM (other developers compiling and testing at the same time), "
        "so absolute figures drift: compare the ratios, which come from peers measured in the same run. "
        "Each part's section says when it was run.",
        "",
        "## Targets (issue 8)",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
    ]
    body = []
    for part in PARTS:
        j = os.path.join(results, f"{part}.json")
        md = os.path.join(results, f"{part}.md")
        if not os.path.exists(md):
            continue
        meta = json.load(open(j)) if os.path.exists(j) else {"targets": [], "at": "?"}
        for t in meta["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | **{verdict(t['pass'])}** |")
        text = open(md).read().rstrip("\n").split("\n")
        body += [text[0] + f" (run {meta.get('at', '?')}, zkdns {meta.get('rev', '?')})"] + text[1:] + [""]
        raw = {"criterion": "criterion.txt", "coldstart": "coldstart.tsv` and `resync.tsv"}.get(part, f"{part}.tsv")
        body.append(f"Raw numbers: `bench/results/{raw}`")
        body.append("")
    lines.append("")
    text = "\n".join(lines + body)
    with open(os.path.join(results, "latest.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=PARTS + ["summary"])
    ap.add_argument("--results", required=True)
    ap.add_argument("--rev", default="unknown")
    ap.add_argument("--quick", default="0")
    a = ap.parse_args()
    if a.part == "summary":
        summary(a.results, a.rev, a.quick)
    else:
        globals()[a.part](a.results)


if __name__ == "__main__":
    sys.exit(main())
