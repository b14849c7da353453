#!/usr/bin/env python3
"""Cluster benchmark (issue #12), driven by benches/cluster.sh. Loopback only; every
phase is bounded in time.

Figures:
  1. register on member A -> DNS answer on member B: p50/p99/max over N registrations
     (each a new service, so each answer is a fresh NXDOMAIN -> A transition);
  2. register on A -> visible in B's instance list: the same, for Nacre and, when
     RNACOS_BIN is set, for a 3-node r-nacos cluster started the same way, as a ratio;
  3. a restarted member with 10,000 instances: from its start until it is ready and
     holds all 10,000;
  4. CPU per member of a 3-member cluster holding 10,000 instances beating every 5 s.

Environment: NACRE_BIN (release nacre), DB_URL (mysql://... of an existing empty
database), N (registrations, default 1000), INSTANCES (10000), CPU_SECONDS (20),
RNACOS_BIN (optional).
"""

import base64
import json
import os
import random
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from benchlib import Conn, wait

NACRE_BIN = os.environ["NACRE_BIN"]
DB_URL = os.environ["DB_URL"]
N = int(os.environ.get("N", "1000"))
INSTANCES = int(os.environ.get("INSTANCES", "10000"))
CPU_SECONDS = float(os.environ.get("CPU_SECONDS", "20"))
RNACOS_BIN = os.environ.get("RNACOS_BIN", "")
HTTP = [18848, 18849, 18850]
DNS = [15353, 15354, 15355]
WORK = tempfile.mkdtemp(prefix="nacre-cluster-bench-")
LONG_LIVED = json.dumps({"preserved.heart.beat.timeout": "600000", "preserved.ip.delete.timeout": "600000"})


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def summary(name, ms):
    print(f"{name}: p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms over {len(ms)}")


def dns_has(port, name, ip):
    q = struct.pack(">HHHHHH", random.randrange(65536), 0, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(q, ("127.0.0.1", port))
        data = s.recv(4096)
    except OSError:
        return False
    finally:
        s.close()
    return socket.inet_aton(ip) in data[12:] and (struct.unpack(">H", data[2:4])[0] & 0xF) == 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Nacre:
    def __init__(self):
        self.secret = base64.b64encode(os.urandom(24)).decode()
        self.key = base64.b64encode(os.urandom(32)).decode()
        self.password = "bench-" + os.urandom(6).hex()
        self.procs = [None] * 3
        self.token = None
        with open(os.path.join(WORK, "cluster.conf"), "w") as f:
            f.write("\n".join(f"127.0.0.1:{p}" for p in HTTP) + "\n")

    def start(self, i):
        env = dict(os.environ, NACRE_CLUSTER_SECRET=self.secret, NACRE_AUTH_TOKEN_KEY=self.key,
                   NACRE_ADMIN_PASSWORD=self.password, RUST_LOG="warn")
        log = open(os.path.join(WORK, f"nacre{i}.log"), "a")
        self.procs[i] = subprocess.Popen(
            [NACRE_BIN, "serve", "--http-addr", f"127.0.0.1:{HTTP[i]}", "--dns-addr", f"127.0.0.1:{DNS[i]}",
             "--data-dir", os.path.join(WORK, f"data{i}"), "--db-url", DB_URL,
             "--cluster-conf", os.path.join(WORK, "cluster.conf")],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        return time.time()

    def ready(self, i):
        status, _ = Conn(HTTP[i]).call("GET", "/nacos/v1/console/health/readiness", {})
        return status == 200

    def up(self):
        self.start(0)
        wait(lambda: Conn(HTTP[0]).call("GET", "/nacos/v1/console/health/liveness", {})[0] == 200, 30, "member 0")
        self.start(1)
        self.start(2)
        wait(lambda: all(self.ready(i) for i in range(3)), 30, "three members ready")
        status, body = Conn(HTTP[0]).call("POST", "/nacos/v1/auth/login", {"username": "nacos", "password": self.password})
        self.token = json.loads(body)["accessToken"]

    def stop(self, i, sig=signal.SIGTERM):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs[i] = None

    def down(self):
        for i in range(3):
            self.stop(i)


class RNacos:
    """Three r-nacos nodes on 127.0.0.1:28848-28850 (gRPC and Raft on +1000), node 1
    initializing the Raft group and the others joining it."""

    def __init__(self):
        self.procs = []
        self.http = [28848, 28849, 28850]

    def up(self):
        for i, port in enumerate(self.http):
            d = os.path.join(WORK, f"rnacos{i}")
            os.makedirs(d, exist_ok=True)
            env = dict(os.environ, RNACOS_HTTP_PORT=str(port), RNACOS_GRPC_PORT=str(port + 1000),
                       RNACOS_HTTP_CONSOLE_PORT="0", RNACOS_SDK_HOST="127.0.0.1", RNACOS_CONSOLE_HOST="127.0.0.1",
                       RNACOS_RAFT_NODE_ID=str(i + 1), RNACOS_RAFT_NODE_ADDR=f"127.0.0.1:{port + 1000}",
                       RNACOS_DATA_DIR=os.path.join(d, "data"), RUST_LOG="warn")
            if i == 0:
                env["RNACOS_RAFT_AUTO_INIT"] = "true"
            else:
                env["RNACOS_RAFT_JOIN_ADDR"] = f"127.0.0.1:{self.http[0] + 1000}"
            log = open(os.path.join(d, "rnacos.log"), "a")
            self.procs.append(subprocess.Popen([RNACOS_BIN], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=d))
            wait(lambda: Conn(port).call("GET", "/nacos/v1/ns/operator/metrics", {})[0] == 200, 30, f"r-nacos {i}")
            time.sleep(2)

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def listed(conn, service, ip):
    status, body = conn.call("GET", "/nacos/v1/ns/instance/list", {"serviceName": service})
    return status == 200 and f'"ip":"{ip}"' in body


def latencies(a, b_check, register, n, prefix):
    out = []
    for k in range(n):
        service = f"{prefix}-{k}"
        ip = f"10.{60 + k // 65536}.{(k // 256) % 256}.{k % 256}"
        t0 = time.perf_counter()
        status, body = register(service, ip)
        if status != 200:
            raise SystemExit(f"register failed: {status} {body}")
        deadline = t0 + 5
        while not b_check(service, ip):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{service} {ip} not visible on B within 5 s")
            time.sleep(0.0005)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main():
    nacre = Nacre()
    rnacos = None
    try:
        nacre.up()
        a = Conn(HTTP[0], nacre.token)
        b = Conn(HTTP[1], nacre.token)
        reg = lambda service, ip: a.call("POST", "/nacos/v1/ns/instance",
                                         {"serviceName": service, "ip": ip, "port": "8080", "metadata": LONG_LIVED})
        dns_ms = latencies(a, lambda s, ip: dns_has(DNS[1], f"{s}.DEFAULT_GROUP.svc", ip), reg, N, "lat-dns")
        summary("nacre register on A -> DNS answer on B", dns_ms)
        list_ms = latencies(a, lambda s, ip: listed(b, s, ip), reg, N, "lat-list")
        summary("nacre register on A -> listed on B", list_ms)

        # 10,000 instances (100 services), long-lived, registered on A.
        per = max(1, INSTANCES // 100)
        t0 = time.time()
        for k in range(INSTANCES):
            status, body = a.call("POST", "/nacos/v1/ns/instance",
                                  {"serviceName": f"big-{k // per}", "ip": f"10.90.{k // 256}.{k % 256}",
                                   "port": "8080", "metadata": LONG_LIVED})
            assert status == 200, body
        print(f"# registered {INSTANCES} instances in {time.time() - t0:.1f} s")

        def holds(i, n):
            status, body = Conn(HTTP[i], nacre.token).call("GET", "/nacos/v1/ns/operator/metrics", {"onlyStatus": "false"})
            return status == 200 and json.loads(body).get("instanceCount", 0) >= n

        total = INSTANCES + 2 * N
        wait(lambda: all(holds(i, total) for i in range(3)), 30, "every member holds every instance")
        nacre.stop(2, signal.SIGKILL)
        time.sleep(1)
        started = nacre.start(2)
        wait(lambda: nacre.ready(2) and holds(2, total), 30, "the restarted member converges")
        print(f"nacre restarted member converged with {total} instances: {time.time() - started:.2f} s (from exec, incl. process start)")

        # CPU per member while every instance beats every 5 s (light beats, spread
        # over the three members), measured over CPU_SECONDS.
        keys = [(f"big-{k // per}", f"10.90.{k // 256}.{k % 256}") for k in range(INSTANCES)]
        stop = threading.Event()
        sent = [0]

        def beater(part):
            conns = [Conn(p, nacre.token) for p in HTTP]
            mine = keys[part::4]
            interval = 5.0
            while not stop.is_set():
                t = time.time()
                for j, (svc, ip) in enumerate(mine):
                    if stop.is_set():
                        return
                    conns[j % 3].call("PUT", "/nacos/v1/ns/instance/beat", {"serviceName": svc, "ip": ip, "port": "8080"})
                    sent[0] += 1
                    # Pace: the whole slice over the interval.
                    target = t + interval * (j + 1) / len(mine)
                    if target > time.time():
                        time.sleep(target - time.time())

        threads = [threading.Thread(target=beater, args=(p,), daemon=True) for p in range(4)]
        for t in threads:
            t.start()
        time.sleep(5)  # one full beat round first
        pids = [p.pid for p in nacre.procs]
        before = [cpu_ticks(pid) for pid in pids]
        sent0, t0 = sent[0], time.time()
        time.sleep(CPU_SECONDS)
        after = [cpu_ticks(pid) for pid in pids]
        elapsed = time.time() - t0
        rate = (sent[0] - sent0) / elapsed
        stop.set()
        hz = os.sysconf("SC_CLK_TCK")
        for i, (x, y) in enumerate(zip(before, after)):
            print(f"nacre member {i} CPU with {INSTANCES} beating instances ({rate:.0f} beats/s to the cluster): {100 * (y - x) / hz / elapsed:.1f} % of a core")
        nacre.down()

        if RNACOS_BIN:
            rnacos = RNacos()
            rnacos.up()
            ra = Conn(rnacos.http[0])
            rb = Conn(rnacos.http[1])
            rreg = lambda service, ip: ra.call("POST", "/nacos/v1/ns/instance",
                                               {"serviceName": service, "ip": ip, "port": "8080"})
            r_ms = latencies(ra, lambda s, ip: listed(rb, s, ip), rreg, N, "lat-list")
            summary("r-nacos register on A -> listed on B", r_ms)
            print(f"ratio r-nacos / nacre, register -> listed on B: p50 {pct(r_ms, 50) / pct(list_ms, 50):.2f}, p99 {pct(r_ms, 99) / pct(list_ms, 99):.2f}")
    finally:
        nacre.down()
        if rnacos:
            rnacos.down()
        if os.environ.get("KEEP_LOGS"):
            print(f"# logs in {WORK}")
        else:
            subprocess.run(["rm", "-rf", WORK])


if __name__ == "__main__":
    main()
