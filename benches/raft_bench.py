#!/usr/bin/env python3
"""Raft benchmark (issue #13), driven by benches/raft.sh. Loopback only; every phase is
bounded in time. Phases (PHASES, space separated, default all):

  throughput  persistent registrations per second (wrk, WRK_CONNECTIONS connections,
              DURATION s) on one Nacre node and on a 3-member Nacre cluster, beside
              r-nacos single and 3-node (RNACOS_BIN) in alternating pairs (PAIRS), as
              ratios with their median;
  failover    time from SIGKILL of the Raft leader of 3 members to the first write a
              survivor accepts, ROUNDS times;
  restart     a single node holding RESTART_INSTANCES (100,000) persistent instances:
              from exec of the restarted process until it answers readiness and lists
              them all;
  disk        bytes of <data>/raft (log + snapshot) after UPDATES (1,000,000) weight
              updates over 10,000 persistent instances.

Environment: NACRE_BIN (release nacre), DB_URL (mysql://... of an existing empty
database, for the 3-member cluster), RNACOS_BIN (optional), NACRE_TOML_EXTRA (more of
Nacre's settings, TOML, `\n` for new lines; e.g. "[health]\nenabled = false").
"""

import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import Conn, wait

NACRE_BIN = os.environ["NACRE_BIN"]
DB_URL = os.environ.get("DB_URL", "")
RNACOS_BIN = os.environ.get("RNACOS_BIN", "")
PHASES = os.environ.get("PHASES", "throughput failover restart disk").split()
PAIRS = int(os.environ.get("PAIRS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("WRK_CONNECTIONS", "32"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
RESTART_INSTANCES = int(os.environ.get("RESTART_INSTANCES", "100000"))
UPDATES = int(os.environ.get("UPDATES", "1000000"))
HTTP = [18848, 18849, 18850]
DNS = [15353, 15354, 15355]
RNACOS_HTTP = [28848, 28849, 28850]
HERE = os.path.dirname(os.path.abspath(__file__))
WORK = tempfile.mkdtemp(prefix="nacre-raft-bench-")
# One admin password for every Nacre of the run: the 3-member clusters share the
# database, hence the users.
PASSWORD = "bench-" + os.urandom(6).hex()


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def wrk(port, token, seconds, env_extra, max_per_thread=0):
    """Runs wrk with lua/persistent.lua; with `max_per_thread`, until that many answers
    (then interrupted: wrk would wait out its -d), at most `seconds`."""
    env = dict(os.environ, NACOS_TOKEN=token or "", WRK_THREADS="1", **env_extra)
    done_file = os.path.join(WORK, f"wrk-done-{os.urandom(4).hex()}")
    if max_per_thread:
        env["BENCH_MAX"] = str(max_per_thread)
        env["BENCH_DONE_FILE"] = done_file
    proc = subprocess.Popen(
        ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "10s", "-s", "lua/persistent.lua",
         f"http://127.0.0.1:{port}"],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if max_per_thread:
        deadline = time.time() + seconds
        while not os.path.exists(done_file) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=seconds + 60)
    m = re.search(r"RESULT requests=(\d+) non2xx=(\d+) errors=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+)", out)
    if not m:
        raise SystemExit(f"wrk said: {out} {err}")
    req, non2xx, errors, dur, p50, p99 = map(int, m.groups())
    good = req - non2xx - errors
    return {"rate": good / (dur / 1e6), "good": good, "bad": non2xx + errors, "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


class Nacre:
    """One standalone node (n=1) or three members on MariaDB (n=3)."""

    def __init__(self, n, name):
        self.n = n
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        self.secret = base64.b64encode(os.urandom(24)).decode()
        self.key = base64.b64encode(os.urandom(32)).decode()
        self.password = PASSWORD
        self.procs = [None] * n
        self.token = None
        if n > 1:
            with open(os.path.join(self.dir, "cluster.conf"), "w") as f:
                f.write("\n".join(f"127.0.0.1:{p}" for p in HTTP[:n]) + "\n")
        # The defaults cap persistent instances at 1,000 a namespace and 10,000 in all
        # (each is probed); this benchmark holds up to a million.
        self.conf = os.path.join(self.dir, "nacre.toml")
        with open(self.conf, "w") as f:
            f.write("[naming]\nmax_persistent_instances_per_namespace = 100000000\n"
                    "max_persistent_instances = 100000000\n"
                    + os.environ.get("NACRE_TOML_EXTRA", "").replace("\\n", "\n") + "\n")

    def data(self, i):
        return os.path.join(self.dir, f"data{i}")

    def start(self, i):
        env = dict(os.environ, NACRE_AUTH_TOKEN_KEY=self.key, NACRE_ADMIN_PASSWORD=self.password, RUST_LOG="warn")
        args = [NACRE_BIN, "serve", "--config", self.conf, "--http-addr", f"127.0.0.1:{HTTP[i]}",
                "--dns-addr", f"127.0.0.1:{DNS[i]}", "--data-dir", self.data(i)]
        if self.n > 1:
            env["NACRE_CLUSTER_SECRET"] = self.secret
            args += ["--db-url", DB_URL, "--cluster-conf", os.path.join(self.dir, "cluster.conf")]
        log = open(os.path.join(self.dir, f"nacre{i}.log"), "a")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return time.time()

    def ready(self, i):
        return Conn(HTTP[i]).call("GET", "/nacos/v1/console/health/readiness")[0] == 200

    def up(self):
        self.start(0)
        wait(lambda: Conn(HTTP[0]).call("GET", "/nacos/v1/console/health/liveness")[0] == 200, 30, "member 0")
        for i in range(1, self.n):
            self.start(i)
        wait(lambda: all(self.ready(i) for i in range(self.n)), 30, "members ready")
        status, body = Conn(HTTP[0]).call("POST", "/nacos/v1/auth/login", {"username": "nacos", "password": self.password})
        self.token = json.loads(body)["accessToken"]
        if self.n > 1:
            self.leader()

    def raft(self, i):
        status, body = Conn(HTTP[i], self.token).call("GET", "/nacos/v1/core/cluster/raft")
        return json.loads(body)["data"] if status == 200 else None

    def leader(self, alive=None):
        """Index of the member all of `alive` name as leader, waiting for one."""
        alive = alive if alive is not None else [i for i in range(self.n) if self.procs[i]]
        deadline = time.time() + 30
        while time.time() < deadline:
            views = [self.raft(i) for i in alive]
            if all(views) and len({v["leader"] for v in views}) == 1 and views[0]["leader"]:
                for i, v in zip(alive, views):
                    if v["role"] == "Leader" and len(v["voters"]) == self.n:
                        return i
            time.sleep(0.05)
        raise SystemExit("no Raft leader")

    def stop(self, i, sig=signal.SIGTERM):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs[i] = None

    def down(self):
        for i in range(self.n):
            self.stop(i)


class RNacos:
    """r-nacos, one node or three (Raft on the gRPC port + 1000, as its docs), with
    its Open API auth on, as Nacre's is by default: both check a token per request."""

    def __init__(self, n, name):
        self.n = n
        self.dir = os.path.join(WORK, name)
        self.procs = []
        self.password = "bench-" + os.urandom(6).hex()
        self.token = None

    def up(self):
        for i in range(self.n):
            port = RNACOS_HTTP[i]
            d = os.path.join(self.dir, f"rnacos{i}")
            os.makedirs(d, exist_ok=True)
            env = dict(os.environ, RNACOS_HTTP_PORT=str(port), RNACOS_GRPC_PORT=str(port + 1000),
                       RNACOS_HTTP_CONSOLE_PORT="0", RNACOS_SDK_HOST="127.0.0.1", RNACOS_CONSOLE_HOST="127.0.0.1",
                       RNACOS_RAFT_NODE_ID=str(i + 1), RNACOS_RAFT_NODE_ADDR=f"127.0.0.1:{port + 1000}",
                       RNACOS_DATA_DIR=os.path.join(d, "data"), RUST_LOG="warn",
                       RNACOS_ENABLE_OPEN_API_AUTH="true", RNACOS_INIT_ADMIN_USERNAME="admin",
                       RNACOS_INIT_ADMIN_PASSWORD=self.password)
            if i == 0:
                env["RNACOS_RAFT_AUTO_INIT"] = "true"
            else:
                env["RNACOS_RAFT_JOIN_ADDR"] = f"127.0.0.1:{RNACOS_HTTP[0] + 1000}"
            log = open(os.path.join(d, "rnacos.log"), "a")
            self.procs.append(subprocess.Popen([RNACOS_BIN], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=d))
            wait(lambda: Conn(port).call("POST", "/nacos/v1/auth/login",
                                         {"username": "admin", "password": self.password})[0] == 200,
                 30, f"r-nacos {i}")
            time.sleep(2)
        status, body = Conn(RNACOS_HTTP[0]).call("POST", "/nacos/v1/auth/login",
                                                 {"username": "admin", "password": self.password})
        self.token = json.loads(body)["accessToken"]

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def register_rate(server_up, port_of, label, offset):
    server = server_up()
    try:
        r = wrk(port_of(server), getattr(server, "token", None), DURATION,
                {"BENCH_MODE": "register", "BENCH_OFFSET": str(offset)})
    finally:
        server.down()
    print(f"  {label}: {r['rate']:.0f} registrations/s (good {r['good']}, failed {r['bad']}, "
          f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms)")
    return r["rate"]


def up(cls, n, name):
    def make():
        s = cls(n, name + os.urandom(3).hex())
        try:
            s.up()
        except BaseException:
            s.down()
            raise
        return s
    return make


def phase_throughput():
    print(f"persistent register throughput, {PAIRS} alternating pairs, wrk -c{CONNS} -d{DURATION}s")
    for n in (1, 3):
        if n == 3 and not DB_URL:
            continue
        ratios = []
        for p in range(PAIRS):
            a = register_rate(up(Nacre, n, f"nacre{n}-"), lambda s: HTTP[0], f"pair {p + 1} Nacre x{n}", p * 10_000_000)
            if RNACOS_BIN:
                b = register_rate(up(RNacos, n, f"rnacos{n}-"), lambda s: RNACOS_HTTP[0], f"pair {p + 1} r-nacos x{n}",
                                  p * 10_000_000)
                ratios.append(a / b if b else float("inf"))
                print(f"  pair {p + 1} ratio Nacre/r-nacos x{n}: {ratios[-1]:.2f}")
        if ratios:
            print(f"persistent register x{n}: median ratio Nacre/r-nacos {statistics.median(ratios):.2f} "
                  f"({' '.join(f'{r:.2f}' for r in ratios)})")


def write_once(port, token, ip, timeout=10):
    return Conn(port, token, timeout).call("POST", "/nacos/v1/ns/instance",
                                           {"serviceName": "failover", "ip": ip, "port": "5432", "ephemeral": "false"})


def phase_failover():
    nacre = Nacre(3, "failover")
    nacre.up()
    times = []
    try:
        for r in range(ROUNDS):
            lead = nacre.leader()
            survivor = (lead + 1) % 3
            assert write_once(HTTP[survivor], nacre.token, f"127.9.{r}.1") == (200, "ok")
            killed = time.time()
            nacre.stop(lead, signal.SIGKILL)
            k = 0
            while True:
                k += 1
                status, body = write_once(HTTP[survivor], nacre.token, f"127.9.{r}.{k % 250 + 2}")
                if status == 200 and body == "ok":
                    break
                if time.time() - killed > 30:
                    raise SystemExit("no write accepted 30 s after the leader died")
                time.sleep(0.01)
            took = time.time() - killed
            times.append(took)
            print(f"  round {r + 1}: leader member {lead} SIGKILLed, first accepted write after {took:.2f} s ({k} tries)")
            nacre.start(lead)
            wait(lambda: nacre.ready(lead), 30, "restarted member ready")
            nacre.leader([0, 1, 2])
    finally:
        nacre.down()
    print(f"leader kill -> first accepted write: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
          f"over {len(times)} (target <= 2 s)")


def fill(port, token, mode, count, keys, offset=0):
    """Runs wrk until `count` requests were answered (bounded at 30 min)."""
    started = time.time()
    r = wrk(port, token, 1800, {"BENCH_MODE": mode, "BENCH_KEYS": str(keys), "BENCH_OFFSET": str(offset)},
            max_per_thread=count)
    return r, time.time() - started


def phase_restart():
    nacre = Nacre(1, "restart")
    nacre.up()
    try:
        r, took = fill(HTTP[0], nacre.token, "register", RESTART_INSTANCES, RESTART_INSTANCES)
        print(f"  {RESTART_INSTANCES} persistent instances registered in {took:.1f} s ({r['rate']:.0f}/s, failed {r['bad']})")
        raft_dir = os.path.join(nacre.data(0), "raft")
        nacre.stop(0)
        print(f"  <data>/raft holds {du(raft_dir) / 1e6:.1f} MB")
        started = nacre.start(0)
        wait(lambda: nacre.ready(0), 120, "restarted node ready")
        ready = time.time() - started

        def holds_all():
            status, body = Conn(HTTP[0], nacre.token).call("GET", "/nacos/v1/ns/operator/metrics",
                                                           {"onlyStatus": "false"})
            return status == 200 and json.loads(body).get("instanceCount", 0) >= RESTART_INSTANCES
        wait(holds_all, 120, "all instances back")
        complete = time.time() - started
        print(f"restart with {RESTART_INSTANCES} persistent instances: ready after {ready:.2f} s, "
              f"all listed after {complete:.2f} s (from exec)")
    finally:
        nacre.down()


def phase_disk():
    nacre = Nacre(1, "disk")
    nacre.up()
    try:
        keys = 10_000
        fill(HTTP[0], nacre.token, "register", keys, keys)
        r, took = fill(HTTP[0], nacre.token, "update", UPDATES, keys)
        raft_dir = os.path.join(nacre.data(0), "raft")
        log = os.path.getsize(os.path.join(raft_dir, "log.redb"))
        snap = os.path.getsize(os.path.join(raft_dir, "snapshot.bin")) if os.path.exists(os.path.join(raft_dir, "snapshot.bin")) else 0
        status = nacre.raft(0)
        print(f"  {UPDATES} weight updates in {took:.1f} s ({r['rate']:.0f}/s, failed {r['bad']}); raft: "
              f"last log {status['lastLogIndex']}, snapshot at {status['snapshotIndex']}")
        print(f"disk after {UPDATES} updates over {keys} instances: log {log / 1e6:.1f} MB + snapshot "
              f"{snap / 1e6:.2f} MB = {(log + snap) / 1e6:.1f} MB")
    finally:
        nacre.down()


def main():
    sys.stdout.reconfigure(line_buffering=True)
    try:
        for phase in PHASES:
            {"throughput": phase_throughput, "failover": phase_failover,
             "restart": phase_restart, "disk": phase_disk}[phase]()
    finally:
        if os.environ.get("KEEP_LOGS"):
            print(f"logs kept in {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
