#!/usr/bin/env python3
"""Generates one data set of N A records and renders it for every server in the benchmark.

usage: gen.py N OUTDIR [ZONE]

Writes into OUTDIR:
  names.tsv         NAME<TAB>IP, every record (absolute names, no trailing dot)
  zone.zone         RFC 1035 zone file: Knot, hickory-dns and `zkdns import`
  unbound.conf      local-zone + local-data lines, included by Unbound's config
  hosts             hosts-file lines for dnsmasq (--addn-hosts)
  queries.txt       dnsperf input: names of the set in random order, "NAME A" per line
  probe             "NAME IP" of one record, to tell when a server has loaded the set

The same seed gives the same set, so every server and every run serves the same names.
"""

import os
import random
import sys


def main() -> None:
    n = int(sys.argv[1])
    out = sys.argv[2]
    zone = sys.argv[3] if len(sys.argv) > 3 else "bench.test"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20240601 + n)
    records = []
    for i in range(n):
        # varied, realistic-looking labels: service-ish word, index, a hash-like tail
        label = f"svc{i:06d}-{rng.getrandbits(24):06x}"
        v = i + 1
        ip = f"10.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"
        records.append((label, ip))

    with open(os.path.join(out, "names.tsv"), "w") as f:
        for label, ip in records:
            f.write(f"{label}.{zone}\t{ip}\n")

    with open(os.path.join(out, "zone.zone"), "w") as f:
        f.write(f"$ORIGIN {zone}.\n$TTL 300\n")
        f.write(f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n")
        f.write("@ IN NS ns\nns IN A 10.255.255.254\n")
        for label, ip in records:
            f.write(f"{label} IN A {ip}\n")

    with open(os.path.join(out, "unbound.conf"), "w") as f:
        f.write(f'local-zone: "{zone}." static\n')
        for label, ip in records:
            f.write(f'local-data: "{label}.{zone}. 300 IN A {ip}"\n')

    with open(os.path.join(out, "hosts"), "w") as f:
        for label, ip in records:
            f.write(f"{ip} {label}.{zone}\n")

    queries = [f"{label}.{zone} A\n" for label, _ in records]
    lines = []
    while len(lines) < 200_000:
        rng.shuffle(queries)
        lines.extend(queries)
    with open(os.path.join(out, "queries.txt"), "w") as f:
        f.writelines(lines[:200_000])

    label, ip = records[-1]
    with open(os.path.join(out, "probe"), "w") as f:
        f.write(f"{label}.{zone} {ip}\n")


if __name__ == "__main__":
    main()
