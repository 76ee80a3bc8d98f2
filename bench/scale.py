#!/usr/bin/env python3
"""Fleet scale (issue 15): N real `zkdns serve` stubs against a real 3-node ZooKeeper ensemble.

usage: scale.py --zkdns BIN --zone-file FILE --work DIR --out DIR [--ns "1 50 200"]
                [--observers K] [--local-sessions] [--name NAME]

For each N, on a fresh ensemble (data on tmpfs), with a zone of the zone file imported by
`zkdns import` and 10 names with a registered member each:
  idle       the ensemble's packets and bytes a second per idle stub (over 10 s), RSS per stub
             (shared and private)
  propagate  `zkdns set` -> every stub answering the new address: the last stub per change,
             p50 and p99 over 20 changes (the write's own time reported beside)
  leader     SIGKILL of the leader: requests, data reads and bytes per moved stub against a full
             read, the time until every stub is current again, failed lookups meanwhile (a probe
             asks every stub in turn throughout), the ensemble's request rate against idle
  follower   the same for the follower (with --observers: the observer) holding the most
             sessions
  rolling    every server restarted in turn, a probe running: failed lookups, reads

--observers K adds K observers and points the stubs at them alone; --local-sessions turns on
ZooKeeper's local sessions (localSessionsEnabled, localSessionsUpgradingEnabled).

Writes DIR/NAME.tsv, .json, .md and .svg (NAME: scale). Each stub gets its own loopback
address (127.0.x.y:5300, metrics on :9153); bytes are counted on the stubs' ZooKeeper sockets
(`ss -tin`), requests by the stubs' own counters and ZooKeeper's `mntr`.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request

ZONE = "bench.test"
ROOT = "/scale"
DNS_PORT = 5300
METRICS_PORT = 9153


def log(msg):
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def four(port, cmd):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(cmd.encode())
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


def mntr(port):
    out = {}
    for line in four(port, "mntr").splitlines():
        parts = line.split("\t")
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                out[parts[0]] = parts[1]
    return out


class Ensemble:
    """Three voting ZooKeeper servers on loopback, from the Debian package, and `observers`
    more; `local_sessions` turns on ZooKeeper's local sessions (localSessionsEnabled)."""

    def __init__(self, work, observers=0, local_sessions=False):
        self.work = work
        self.size = 3 + observers
        self.observers = list(range(3, self.size))
        self.data = f"/dev/shm/zkdns-scale-{os.getpid()}"
        shutil.rmtree(self.data, ignore_errors=True)
        self.client = [free_port() for _ in range(self.size)]
        self.peer = [(free_port(), free_port()) for _ in range(self.size)]
        self.procs = [None] * self.size
        servers = "".join(
            f"server.{i + 1}=127.0.0.1:{p}:{e}{':observer' if i >= 3 else ''}\n"
            for i, (p, e) in enumerate(self.peer)
        )
        extra = "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n" if local_sessions else ""
        for i in range(self.size):
            d = self.dir(i)
            os.makedirs(f"{self.data}/{i}", exist_ok=True)
            os.makedirs(d, exist_ok=True)
            with open(f"{self.data}/{i}/myid", "w") as f:
                f.write(f"{i + 1}\n")
            with open(f"{d}/zoo.cfg", "w") as f:
                f.write(
                    "tickTime=500\ninitLimit=20\nsyncLimit=10\n"
                    f"dataDir={self.data}/{i}\nclientPort={self.client[i]}\n"
                    "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
                    "admin.enableServer=false\n4lw.commands.whitelist=*\n"
                    "autopurge.purgeInterval=0\nforceSync=no\n" + extra
                    + ("peerType=observer\n" if i >= 3 else "") + servers
                )
        for i in range(self.size):
            self.start(i)
        self.wait_serving()

    def dir(self, i):
        return f"{self.work}/zk{i}"

    def start(self, i):
        env = dict(os.environ, ZOO_LOG_DIR=self.dir(i), SERVER_JVMFLAGS="-Xmx512m")
        self.procs[i] = subprocess.Popen(
            ["/usr/share/zookeeper/bin/zkServer.sh", "start-foreground", f"{self.dir(i)}/zoo.cfg"],
            stdout=open(f"{self.dir(i)}/out.log", "a"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def kill(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def mode(self, i):
        m = re.search(r"Mode: (\w+)", four(self.client[i], "srvr"))
        return m.group(1) if m else None

    def wait_serving(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            modes = [self.mode(i) for i in range(self.size) if self.procs[i]]
            if modes and all(modes) and modes.count("leader") == 1:
                return
            time.sleep(0.2)
        raise SystemExit("the ensemble did not come up")

    def leader(self):
        return next(i for i in range(self.size) if self.procs[i] and self.mode(i) == "leader")

    def sessions(self, i):
        return max(0, len([l for l in four(self.client[i], "cons").splitlines() if "(" in l]) - 1)

    def connect(self):
        """The voters: for the tools and the register daemons."""
        return ",".join(f"127.0.0.1:{p}" for p in self.client[:3])

    def stubs_connect(self):
        """Where the stubs connect: the observers when there are, else the voters."""
        ports = [self.client[i] for i in self.observers] or self.client[:3]
        return ",".join(f"127.0.0.1:{p}" for p in ports)

    def packets(self):
        total = 0.0
        for i in range(self.size):
            if self.procs[i]:
                m = mntr(self.client[i])
                total += m.get("zk_packets_received", 0) + m.get("zk_packets_sent", 0)
        return total

    def received(self):
        return sum(
            mntr(self.client[i]).get("zk_packets_received", 0)
            for i in range(self.size)
            if self.procs[i]
        )

    def reads(self):
        """Reads served, as ZooKeeper counts them (each read inside a multiRead too)."""
        total = 0.0
        for i in range(self.size):
            if self.procs[i]:
                for k, v in mntr(self.client[i]).items():
                    if k.endswith("_read_per_namespace") and "scale" in k and isinstance(v, float):
                        total += v
        return total

    def stop(self):
        for i in range(self.size):
            self.kill(i)
        shutil.rmtree(self.data, ignore_errors=True)


def query(name):
    qid = random.getrandbits(16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return qid, q + b"\x00" + struct.pack(">HH", 1, 1)


def first_a(reply):
    """The first A record's address of a reply, or None."""
    try:
        an = struct.unpack(">H", reply[6:8])[0]
        if an == 0:
            return None
        i = 12
        while reply[i] != 0:
            i += reply[i] + 1
        i += 5
        for _ in range(an):
            if reply[i] & 0xC0 == 0xC0:
                i += 2
            else:
                while reply[i] != 0:
                    i += reply[i] + 1
                i += 1
            rtype, _, _, rdlen = struct.unpack(">HHIH", reply[i : i + 10])
            i += 10
            if rtype == 1 and rdlen == 4:
                return socket.inet_ntoa(reply[i : i + 4])
            i += rdlen
    except (IndexError, struct.error):
        return None
    return None


class Stub:
    def __init__(self, zkdns, connect, i, work, extra=()):
        self.addr = f"127.0.{2 + i // 250}.{1 + i % 250}"
        self.log = open(f"{work}/stub{i}.log", "w")
        self.proc = subprocess.Popen(
            [
                zkdns, "serve", "--zk", connect, "--root", ROOT,
                "--listen", f"{self.addr}:{DNS_PORT}", "--no-upstream",
                "--metrics", f"{self.addr}:{METRICS_PORT}", *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, RUST_LOG="info", NO_COLOR="1"),
        )

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://{self.addr}:{METRICS_PORT}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def rss(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0])
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def zk_sockets(zk_ports, pids=None):
    """Bytes received and sent by clients on each connection to the ensemble (`ss -tinp`, the
    client's side), by (local, peer) address; only those of processes `pids` when given."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True).stdout
    found = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 4 or not any(fields[3].endswith(f":{p}") for p in zk_ports):
            continue
        if pids is not None:
            m = re.search(r"pid=(\d+)", line)
            if not m or int(m.group(1)) not in pids:
                continue
        info = lines[i + 1] if i + 1 < len(lines) else ""
        rx = re.search(r"bytes_received:(\d+)", info)
        tx = re.search(r"bytes_acked:(\d+)", info)
        found[(fields[2], fields[3])] = (int(rx.group(1)) if rx else 0, int(tx.group(1)) if tx else 0)
    return found


def grown(before, after):
    """Bytes received by clients since `before`, on connections open at `after`: new ones
    whole (a new connection may reuse an old one's addresses: it then has fewer bytes)."""
    total = 0
    for k, (rx, _) in after.items():
        old = before.get(k, (0, 0))[0]
        total += rx - old if rx >= old else rx
    return total


def both_ways(before, after):
    total = 0
    for k, (rx, tx) in after.items():
        old = sum(before.get(k, (0, 0)))
        total += rx + tx - old if rx + tx >= old else rx + tx
    return total


class Rate(threading.Thread):
    """The ensemble's client requests a second (packets received, `mntr`), sampled every 0.5 s;
    a window where a server's counters restarted (an election) is left out."""

    def __init__(self, ens):
        super().__init__(daemon=True)
        self.ens, self.running, self.rates = ens, True, []

    def sample(self):
        out = {}
        for i in range(self.ens.size):
            if self.ens.procs[i]:
                m = mntr(self.ens.client[i])
                if "zk_packets_received" in m:
                    out[i] = m["zk_packets_received"]
        return out

    def run(self):
        last, t = self.sample(), time.time()
        while self.running:
            time.sleep(0.5)
            now, t2 = self.sample(), time.time()
            deltas = [now[i] - last[i] for i in now if i in last]
            if deltas and all(d >= 0 for d in deltas) and len(now) >= 2:
                self.rates.append(sum(deltas) / (t2 - t))
            last, t = now, t2

    def stop(self):
        self.running = False
        self.join(5)
        return max(self.rates) if self.rates else None


class Probe(threading.Thread):
    """Asks every stub in turn for a name that does not change; counts failed lookups."""

    def __init__(self, stubs, name, want):
        super().__init__(daemon=True)
        self.stubs, self.name, self.want = stubs, name, want
        self.asked = self.failed = 0
        self.failures = []
        self.running = True

    def run(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        while self.running:
            for st in self.stubs:
                if not self.running:
                    break
                qid, q = query(self.name)
                s.sendto(q, (st.addr, DNS_PORT))
                got = None
                try:
                    while True:
                        data, _ = s.recvfrom(4096)
                        if struct.unpack(">H", data[:2])[0] == qid:
                            got = first_a(data)
                            break
                except socket.timeout:
                    pass
                self.asked += 1
                if got != self.want:
                    self.failed += 1
                    self.failures.append((st.addr, got))
            time.sleep(0.01)

    def stop(self):
        self.running = False
        self.join(10)


def answers_all(stubs, name, want, timeout=60):
    """Polls every stub until each answers `name` with `want`; seconds until the last did."""
    t0 = time.time()
    pending = {st.addr for st in stubs}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    while pending and time.time() - t0 < timeout:
        ids = {}
        for addr in pending:
            qid, q = query(name)
            ids[qid] = addr
            s.sendto(q, (addr, DNS_PORT))
        deadline = time.time() + 0.05
        while time.time() < deadline:
            try:
                data, (addr, _) = s.recvfrom(4096)
            except BlockingIOError:
                time.sleep(0.0005)
                continue
            if first_a(data) == want:
                pending.discard(addr)
            if not pending:
                break
    return time.time() - t0 if not pending else None


def totals(stubs):
    keys = [
        "zkdns_zookeeper_catchups_total",
        "zkdns_zookeeper_catchup_requests_total",
        "zkdns_zookeeper_catchup_data_reads_total",
        "zkdns_zookeeper_resyncs_total",
        "zkdns_zookeeper_sessions_total",
        "zkdns_zookeeper_reconnects_total",
    ]
    out = {k: 0.0 for k in keys}
    per = []
    for st in stubs:
        m = st.metrics()
        per.append(m)
        for k in keys:
            out[k] += m.get(k, 0)
    return out, per


def herd(ens, stubs, kill, label, full_read):
    """Kills server `kill` (or restarts every server in turn, kill=None) under a probe."""
    zk_ports = ens.client
    pids = {st.proc.pid for st in stubs}
    before, per_before = totals(stubs)
    sockets0 = zk_sockets(zk_ports, pids)
    probe = Probe(stubs, "web.bench.test", "10.9.9.9")
    probe.start()
    rate = Rate(ens)
    rate.start()
    t0 = time.time()
    if kill is None:
        for i in range(ens.size):
            ens.kill(i)
            time.sleep(1)
            ens.start(i)
            ens.wait_serving()
    else:
        ens.kill(kill)
    # every stub current: reconnected, caught up or read in full, not stale
    deadline = time.time() + 180
    current_at = None
    while time.time() < deadline:
        _, per = totals(stubs)
        moved = [
            a.get("zkdns_zookeeper_catchups_total", 0) + a.get("zkdns_zookeeper_resyncs_total", 0)
            > b.get("zkdns_zookeeper_catchups_total", 0) + b.get("zkdns_zookeeper_resyncs_total", 0)
            or a.get("zkdns_zookeeper_sessions_total", 0) > b.get("zkdns_zookeeper_sessions_total", 0)
            for a, b in zip(per, per_before)
        ]
        lost = [
            a.get("zkdns_zookeeper_reconnects_total", 0) > b.get("zkdns_zookeeper_reconnects_total", 0)
            or a.get("zkdns_zookeeper_sessions_total", 0) > b.get("zkdns_zookeeper_sessions_total", 0)
            for a, b in zip(per, per_before)
        ]
        stale = [a.get("zkdns_stale", 1) for a in per]
        if all(m or not l for m, l in zip(moved, lost)) and not any(stale) and any(lost):
            current_at = time.time() - t0
            break
        if not any(lost) and time.time() - t0 > 15:
            break  # the server held none of the stubs' sessions
        time.sleep(0.1)
    time.sleep(1)
    probe.stop()
    peak = rate.stop()
    after, per_after = totals(stubs)
    rx = grown(sockets0, zk_sockets(zk_ports, pids))
    secs = time.time() - t0
    moved_n = sum(
        1
        for a, b in zip(per_after, per_before)
        if a.get("zkdns_zookeeper_reconnects_total", 0) > b.get("zkdns_zookeeper_reconnects_total", 0)
        or a.get("zkdns_zookeeper_sessions_total", 0) > b.get("zkdns_zookeeper_sessions_total", 0)
    )
    d = {k: after[k] - before[k] for k in after}
    per_moved = lambda v: v / moved_n if moved_n else 0.0
    if kill is not None:
        ens.start(kill)
        ens.wait_serving()
    return {
        "event": label,
        "moved": moved_n,
        "catchups": d["zkdns_zookeeper_catchups_total"],
        "full_reads": d["zkdns_zookeeper_resyncs_total"],
        "expired": d["zkdns_zookeeper_sessions_total"],
        "requests_per_moved": per_moved(d["zkdns_zookeeper_catchup_requests_total"]),
        "data_reads_per_moved": per_moved(d["zkdns_zookeeper_catchup_data_reads_total"]),
        # what the stubs received (the register daemons' few pings included)
        "bytes_rx_per_moved": per_moved(rx),
        "full_read_bytes": full_read,
        "fraction_of_full_read": per_moved(rx) / full_read if full_read else None,
        "current_after_s": current_at,
        "lookups": probe.asked,
        "failed_lookups": probe.failed,
        # what the moved stubs asked of the ensemble on top of their pings: a connect and a
        # watch each, and the catch-up's (or full read's) requests
        "herd_requests": 2 * moved_n + d["zkdns_zookeeper_catchup_requests_total"],
        "herd_seconds": current_at,
        "peak_requests_per_s": peak,
    }


def measure(args, n, zone_file, names):
    work = f"{args.work}/n{n}"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ens = Ensemble(work, args.observers, args.local_sessions)
    stubs, members = [], []
    try:
        connect = ens.connect()
        stub_connect = ens.stubs_connect()
        subprocess.run(
            [args.zkdns, "import", "--zk", connect, "--root", ROOT, zone_file],
            check=True, capture_output=True,
        )
        subprocess.run(
            [args.zkdns, "set", "--zk", connect, "--root", ROOT, f"web.{ZONE}", "A", "10.9.9.9"],
            check=True, capture_output=True,
        )
        for i in range(10):
            members.append(
                subprocess.Popen(
                    [args.zkdns, "register", "--zk", connect, "--root", ROOT,
                     f"svc-m{i}.{ZONE}", "--addr", f"10.8.0.{i + 1}", "--id", f"m{i}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        # a full read's cost, on one stub's ZooKeeper socket
        extra = args.stub_args.split()
        first = Stub(args.zkdns, stub_connect, 0, work, extra)
        stubs.append(first)
        wait_ready(stubs)
        full_read = grown({}, zk_sockets(ens.client, {first.proc.pid}))
        for i in range(1, n):
            stubs.append(Stub(args.zkdns, stub_connect, i, work, extra))
        wait_ready(stubs)
        log(f"N={n}: {len(stubs)} stubs ready; a full read is {full_read} bytes")
        # idle
        ens_cpu0 = ens_cpu(ens)
        pids = {st.proc.pid for st in stubs}
        p0, b0, r0 = ens.packets(), zk_sockets(ens.client, pids), ens.received()
        time.sleep(10)
        p1, b1, r1 = ens.packets(), zk_sockets(ens.client, pids), ens.received()
        ens_cpu1 = ens_cpu(ens)
        rss = [st.rss() for st in stubs]
        row = {
            "n": n,
            "names": names,
            "full_read_bytes": full_read,
            # the ensemble's client packets, both ways, per client (the stubs and the 10
            # register daemons: the same pings)
            "idle_packets_per_s_per_stub": (p1 - p0) / 10 / (n + len(members)),
            "idle_packets_per_s": (p1 - p0) / 10,
            "idle_requests_per_s": (r1 - r0) / 10,
            "idle_bytes_per_s_per_stub": both_ways(b0, b1) / 10 / n,
            "ensemble_cpu_pct": (ens_cpu1 - ens_cpu0) / os.sysconf("SC_CLK_TCK") / 10 * 100,
            "rss_kb": statistics.mean(r["VmRSS"] for r in rss),
            "rss_anon_kb": statistics.mean(r.get("RssAnon", 0) for r in rss),
            "rss_file_kb": statistics.mean(r.get("RssFile", 0) + r.get("RssShmem", 0) for r in rss),
        }
        # propagation
        lasts, writes = [], []
        for k in range(20):
            ip = f"10.7.{k // 250}.{1 + k % 250}"
            t0 = time.time()
            subprocess.run(
                [args.zkdns, "set", "--zk", connect, "--root", ROOT, f"prop.{ZONE}", "A", ip],
                check=True, capture_output=True,
            )
            t_ack = time.time() - t0
            last = answers_all(stubs, f"prop.{ZONE}", ip)
            if last is not None:
                lasts.append(last * 1000)
                writes.append(t_ack * 1000)
        lasts.sort()
        row["propagation_p50_ms"] = statistics.median(lasts) if lasts else None
        row["propagation_p99_ms"] = lasts[min(len(lasts) - 1, int(len(lasts) * 0.99))] if lasts else None
        row["write_ms"] = statistics.median(writes) if writes else None
        log(f"N={n}: idle {row['idle_packets_per_s_per_stub']:.2f} packets/s/stub, "
            f"RSS {row['rss_kb']:.0f} kB; propagation p50 {row['propagation_p50_ms']:.0f} ms")
        # herds
        events = []
        leader = ens.leader()
        events.append(herd(ens, stubs, leader, "leader killed", full_read))
        log(f"N={n}: {events[-1]}")
        kind = "observer" if ens.observers else "follower"
        busiest = max(
            (i for i in range(ens.size) if ens.mode(i) == kind), key=lambda i: ens.sessions(i)
        )
        events.append(herd(ens, stubs, busiest, f"busiest {kind} killed", full_read))
        log(f"N={n}: {events[-1]}")
        events.append(herd(ens, stubs, None, "rolling restart", full_read))
        log(f"N={n}: {events[-1]}")
        row["events"] = events
        return row
    finally:
        for st in stubs:
            st.stop()
        for m in members:
            m.terminate()
        ens.stop()


def ens_cpu(ens):
    total = 0
    for p in ens.procs:
        if not p:
            continue
        for pid in [p.pid] + children(p.pid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
    return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in children(k)]


def wait_ready(stubs, timeout=300):
    deadline = time.time() + timeout
    for st in stubs:
        while time.time() < deadline:
            if st.metrics().get("zkdns_ready") == 1:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"stub {st.addr} not ready; see its log")


def svg(rows, path):
    """Propagation (p50, p99) and leader-kill herd cost (per moved stub, % of a full read)."""
    w, h, pad = 640, 300, 50
    ns = [r["n"] for r in rows]
    xmax = max(ns)
    def x(n):
        return pad + (w - 2 * pad) * (n / xmax if xmax else 0)
    series = [
        ("propagation p50 (ms)", "#1f77b4", [r["propagation_p50_ms"] or 0 for r in rows]),
        ("propagation p99 (ms)", "#ff7f0e", [r["propagation_p99_ms"] or 0 for r in rows]),
        ("leader-kill herd: % of a full read per moved stub", "#2ca02c",
         [100 * (r["events"][0]["fraction_of_full_read"] or 0) for r in rows]),
    ]
    ymax = max(max(v) for _, _, v in series) or 1
    def y(v):
        return h - pad - (h - 2 * pad) * v / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">stubs (N)</text>']
    for n in ns:
        out.append(f'<text x="{x(n)}" y="{h - pad + 15}" text-anchor="middle">{n}</text>')
    for k in range(5):
        v = ymax * k / 4
        out.append(f'<text x="{pad - 5}" y="{y(v) + 4}" text-anchor="end">{v:.0f}</text>')
    for i, (label, color, vals) in enumerate(series):
        pts = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in zip(ns, vals))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{pad + 10}" y="{pad - 30 + 12 * i}" fill="{color}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def extrapolation(rows, target=10_000, jitter=15.0):
    """10,000 stubs, from the per-stub costs of the largest N measured, with the arithmetic."""
    big, small = rows[-1], rows[0]
    n = big["n"]
    leader = big["events"][0]
    cpu_per = (big["ensemble_cpu_pct"] - small["ensemble_cpu_pct"]) / max(1, n - small["n"])
    single = len(rows) == 1
    req_per_stub = leader["herd_requests"] / max(1, leader["moved"])
    idle_req = big["idle_requests_per_s"] / (n + 10)
    out = [
        "",
        f"## Extrapolated to {target:,} stubs (from N = {n})",
        "",
        f"- Idle: {big['idle_packets_per_s_per_stub']:.2f} packets/s × {target:,} = "
        f"{big['idle_packets_per_s_per_stub'] * target:,.0f} packets/s for the ensemble; "
        f"{big['idle_bytes_per_s_per_stub']:.0f} B/s × {target:,} = "
        f"{big['idle_bytes_per_s_per_stub'] * target / 1e3:,.0f} kB/s.",
        (
            f"- Ensemble CPU: {big['ensemble_cpu_pct']:.1f} % of a core at N = {n} (one N only: "
            "see scale.md for the cost per stub)."
            if single
            else f"- Ensemble CPU: ({big['ensemble_cpu_pct']:.1f} % − {small['ensemble_cpu_pct']:.1f} %) / "
            f"{n - small['n']} stubs = {cpu_per:.3f} % of a core per stub; × {target:,} = "
            f"{cpu_per * target / 100:.1f} cores across the three servers (pings alone; per-host "
            "mode divides it by the containers per host)."
        ),
        f"- Memory: {big['rss_anon_kb'] / 1024:.2f} MB private per stub × {target:,} = "
        f"{big['rss_anon_kb'] * target / 1024 / 1024:.1f} GB across the hosts, plus "
        f"{big['rss_file_kb'] / 1024:.1f} MB of shared binary per host.",
        f"- Leader killed, nothing changed: {leader['bytes_rx_per_moved']:,.0f} B × {target:,} = "
        f"{leader['bytes_rx_per_moved'] * target / 1e6:,.1f} MB from the ensemble, against "
        f"{leader['full_read_bytes']:,} B × {target:,} = "
        f"{leader['full_read_bytes'] * target / 1e9:,.2f} GB for full re-reads; "
        f"{req_per_stub:.0f} requests × {target:,} = {req_per_stub * target:,.0f}, of which "
        f"{req_per_stub - 2:.0f} a stub spreads over `--resync-jitter` ({jitter:.0f} s): "
        f"{(req_per_stub - 2) * target / jitter:,.0f}/s beside an idle "
        f"{idle_req * target:,.0f} requests/s; the reconnects themselves (connect and watch, "
        f"{2 * target:,}) over the reconnect spread, a fifth of the session timeout (1.2 s at "
        f"6 s: {2 * target / 1.2:,.0f}/s; 4 s at 20 s: {2 * target / 4:,.0f}/s).",
    ]
    return out


def report(rows, out, name="scale", title="N stubs on a 3-node ensemble"):
    lines = [
        f"# Fleet scale: {title}",
        "",
        "`bench/run.sh scale`; each stub its own process and loopback address, a zone of "
        f"{rows[0]['names']} names (`zkdns import`) and 10 names with a registered member, "
        "stub settings by default (session timeout 6 s: a stub that loses its server reconnects a "
        "random 0–1.2 s later; `--resync-jitter` 15 s: it catches up a random 0–15 s after that) "
        "unless the title says otherwise. Ensemble on "
        "tmpfs, same 2-core machine as the stubs.",
        "",
        "| N | idle packets/s per stub | idle bytes/s per stub | ensemble CPU % | RSS kB per stub (private / shared) | propagation p50 / p99 ms (write itself) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['idle_packets_per_s_per_stub']:.2f} | {r['idle_bytes_per_s_per_stub']:.0f} | "
            f"{r['ensemble_cpu_pct']:.1f} | {r['rss_kb']:.0f} ({r['rss_anon_kb']:.0f} / {r['rss_file_kb']:.0f}) | "
            f"{r['propagation_p50_ms']:.0f} / {r['propagation_p99_ms']:.0f} ({r['write_ms']:.0f}) |"
        )
    lines += [
        "",
        "| N | event | moved stubs | catch-ups / full reads / new sessions | requests per moved stub | data reads per moved stub | bytes per moved stub (% of a full read) | all current after s | lookups failed / asked | herd requests | peak requests/s (idle) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        for e in r["events"]:
            frac = e["fraction_of_full_read"]
            cur = e["current_after_s"]
            lines.append(
                f"| {r['n']} | {e['event']} | {e['moved']} | {e['catchups']:.0f} / {e['full_reads']:.0f} / {e['expired']:.0f} | "
                f"{e['requests_per_moved']:.1f} | {e['data_reads_per_moved']:.1f} | "
                f"{e['bytes_rx_per_moved']:.0f} ({100 * frac:.1f} %) | "
                f"{'%.1f' % cur if cur is not None else 'n/a'} | {e['failed_lookups']} / {e['lookups']} | "
                f"{e['herd_requests']:.0f} | "
                f"{'%.0f' % e['peak_requests_per_s'] if e['peak_requests_per_s'] else 'n/a'} ({r['idle_requests_per_s']:.0f}) |"
            )
    lines += extrapolation(rows)
    with open(f"{out}/{name}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(rows, f, indent=1)
    with open(f"{out}/{name}.tsv", "w") as f:
        for r in rows:
            for k, v in r.items():
                if k != "events":
                    f.write(f"{r['n']}\t{k}\t{v}\n")
            for e in r["events"]:
                for k, v in e.items():
                    f.write(f"{r['n']}\t{e['event']}\t{k}\t{v}\n")
    svg(rows, f"{out}/{name}.svg")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zkdns", required=True)
    ap.add_argument("--zone-file", required=True)
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ns", default="1 50 200")
    ap.add_argument("--observers", type=int, default=0, help="stubs on this many observers")
    ap.add_argument("--local-sessions", action="store_true", help="localSessionsEnabled")
    ap.add_argument("--name", default="scale", help="the results' file names")
    ap.add_argument("--stub-args", default="", help="more flags for every stub's serve")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from scale.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    title = "N stubs on a 3-node ensemble"
    if args.observers:
        title += f", the stubs on {args.observers} observers only"
    if args.local_sessions:
        title += ", local sessions (localSessionsEnabled)"
    if args.stub_args:
        title += f", stubs with `{args.stub_args}`"
    if args.report_only:
        report(json.load(open(f"{args.out}/{args.name}.json")), args.out, args.name, title)
        return
    rows = []
    for n in [int(v) for v in args.ns.split()]:
        rows.append(measure(args, n, args.zone_file, args.names))
        report(rows, args.out, args.name, title)
    print(open(f"{args.out}/{args.name}.md").read())


if __name__ == "__main__":
    main()
