#!/usr/bin/env python3
"""Helper for benches/dns_vs_nsd.sh (standard library only).

Subcommands:
  freeport                      print a 127.0.0.1 port free for both UDP and TCP
  queries FILE N                write a dnsperf query file for N services (shuffled)
  zone FILE N M                 write an NSD zone file for origin svc.: N services x M A records
  wait-http URL SECONDS [PID]   wait until URL answers 200 (exit 1 on deadline or
                                when PID exits)
  register HTTP_PORT N M        register N services x M instances in Nacre (Nacos v1 API)
  cpu PID                       print utime+stime in seconds of PID and all its descendants
  tree PID                      print PID and the pids of all its descendants
  dnsperf-parse FILE            print "completed lost qps" from a dnsperf output

Service i, instance j has IP 10.(i // 256).(i % 256).(j + 1) when j < 254, else
10.(i).(j // 250 + 1).(j % 250 + 1) (big services; i < 256), port 8080; the same
mapping is used for the NSD zone so that both servers hold the same records.
"""

import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

SERVICE_FMT = "bench-svc-{:04d}"
GROUP = "DEFAULT_GROUP"
PORT = 8080
# Nacos ephemeral instances expire without beats (15 s unhealthy, 30 s deleted); the
# benchmark sends no beats, so stretch the per-instance timeouts to an hour.
METADATA = json.dumps(
    {
        "preserved.heart.beat.timeout": "3600000",
        "preserved.ip.delete.timeout": "3600000",
        "preserved.heart.beat.interval": "5000",
    },
    separators=(",", ":"),
)


def ip_of(i, j):
    if j < 254:
        return "10.{}.{}.{}".format(i // 256, i % 256, j + 1)
    return "10.{}.{}.{}".format(i, j // 250 + 1, j % 250 + 1)


def cmd_freeport(_args):
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        print(port)
        return 0
    print("no free port found", file=sys.stderr)
    return 1


def cmd_queries(args):
    path, n = args[0], int(args[1])
    names = [SERVICE_FMT.format(i) for i in range(n)]
    random.Random(42).shuffle(names)
    with open(path, "w") as f:
        for name in names:
            f.write("{}.{}.svc A\n".format(name, GROUP))
    return 0


def cmd_zone(args):
    path, n, m = args[0], int(args[1]), int(args[2])
    with open(path, "w") as f:
        f.write("$ORIGIN svc.\n$TTL 5\n")
        f.write("@ 5 IN SOA ns1.svc. hostmaster.svc. 1 3600 600 86400 5\n")
        f.write("@ 3600 IN NS ns1.svc.\n")
        f.write("ns1 5 IN A 127.0.0.1\n")
        for i in range(n):
            owner = "{}.{}".format(SERVICE_FMT.format(i), GROUP)
            for j in range(m):
                f.write("{} 5 IN A {}\n".format(owner, ip_of(i, j)))
    return 0


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def cmd_wait_http(args):
    url, seconds = args[0], float(args[1])
    pid = int(args[2]) if len(args) > 2 else None
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            print("process {} exited".format(pid), file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return 0
                last = "HTTP {}".format(r.status)
        except Exception as e:  # connection refused while starting, etc.
            last = str(e)
        time.sleep(0.1)
    print("timed out waiting for {}: {}".format(url, last), file=sys.stderr)
    return 1


def cmd_register(args):
    http_port, n, m = int(args[0]), int(args[1]), int(args[2])
    workers = 16
    local = threading.local()
    meta = urllib.parse.quote(METADATA, safe="")

    def conn():
        c = getattr(local, "conn", None)
        if c is None:
            local.conn = None
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local.conn = c
        return c

    token = urllib.parse.quote(os.environ.get("NACRE_TOKEN", ""), safe="")

    def register(task):
        i, j = task
        path = (
            "/nacos/v1/ns/instance?serviceName={}&ip={}&port={}&metadata={}&accessToken={}".format(
                SERVICE_FMT.format(i), ip_of(i, j), PORT, meta, token
            )
        )
        for attempt in range(3):
            try:
                c = conn()
                c.request("POST", path)
                r = c.getresponse()
                body = r.read().decode("utf-8", "replace").strip()
                if r.status == 200 and body == "ok":
                    return None
                return "{} -> HTTP {} {!r}".format(path, r.status, body[:200])
            except (OSError, http.client.HTTPException) as e:
                if local.conn is not None:
                    local.conn.close()
                local.conn = None
                if attempt == 2:
                    return "{} -> {}".format(path, e)
        return None

    tasks = [(i, j) for i in range(n) for j in range(m)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = [e for e in pool.map(register, tasks, chunksize=64) if e]
    dt = time.monotonic() - t0
    if errors:
        print("{} of {} registrations failed, first: {}".format(len(errors), len(tasks), errors[0]),
              file=sys.stderr)
        return 1
    print("registered {} instances in {:.1f} s".format(len(tasks), dt))
    return 0


def proc_tree(root):
    """root and all its descendants (by ppid), from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cmd_tree(args):
    print(" ".join(str(p) for p in proc_tree(int(args[0]))))
    return 0


def cmd_cpu(args):
    root = int(args[0])
    tck = os.sysconf("SC_CLK_TCK")
    ticks = 0
    for pid in proc_tree(root):
        try:
            with open("/proc/{}/stat".format(pid)) as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after "comm)": field 3 (state) is index 0, so utime (14) is 11 and
        # stime (15) is 12. Also count cutime/cstime (16, 17) of reaped children.
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    print("{:.4f}".format(ticks / tck))
    return 0


def cmd_dnsperf_parse(args):
    text = open(args[0]).read()

    def grab(label):
        mo = re.search(r"^\s*" + label + r":\s+([0-9.]+)", text, re.M)
        return mo.group(1) if mo else "0"

    print(grab("Queries completed"), grab("Queries lost"), grab("Queries per second"))
    return 0


COMMANDS = {
    "freeport": cmd_freeport,
    "queries": cmd_queries,
    "zone": cmd_zone,
    "wait-http": cmd_wait_http,
    "register": cmd_register,
    "cpu": cmd_cpu,
    "tree": cmd_tree,
    "dnsperf-parse": cmd_dnsperf_parse,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
