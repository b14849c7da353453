#!/usr/bin/env python3
"""Fault script of the cluster (issues #12 and #13): three real `nacre` processes, each
in its own network namespace on a bridge, so that a partition is a real one.

It registers ephemeral instances that beat, publishes configs (MariaDB, shared by the
three), and writes persistent instances and service settings (Raft) to every member in
turn, while it

  1. SIGKILLs one member and restarts it;
  2. cuts one member off the bridge for 20 s, then heals the partition;
  3. SIGKILLs the Raft leader and restarts it;
  4. SIGKILLs a Raft follower and restarts it;
  5. cuts the Raft leader off from the other members (blackhole routes: the script
     still reaches it) for 10 s, then heals the partition.

After each fault it measures how long the members take to answer the same DNS A sets
and instance lists again (every beating client present), and fails past a bound. At
the end it checks that every acknowledged config publish is what every member serves,
that no beating client was missing from a majority member's DNS for longer than the
owner grace, that every acknowledged persistent write is on every member, and that the
leader cut off in the minority acknowledged no write sent to it during the partition.
It prints its figures, stops by itself, and cleans up after itself.
Traffic stays inside its namespaces, its bridge and loopback (MariaDB is reached
through a socat relay on the bridge address).

Needs root, iproute2, socat, the MariaDB client and a built `nacre` (NACRE_BIN, else
$CARGO_TARGET_DIR/debug/nacre). Run from the repository root:

    sudo scripts/cluster_faults.py
"""

import base64
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("NACRE_BIN", os.path.join(TARGET, "debug", "nacre"))
TAG = f"nf{os.getpid() % 100000}"
SUBNET = "10.213.77"
BRIDGE_IP = f"{SUBNET}.1"
NODES = [f"{SUBNET}.{11 + i}" for i in range(3)]
HTTP_PORT = 8848
DNS_PORT = 5353
MEMBERS = [f"{ip}:{HTTP_PORT}" for ip in NODES]
DB = f"nacre_fault_{os.getpid()}"
SECRET = base64.b64encode(os.urandom(24)).decode()
TOKEN_KEY = base64.b64encode(os.urandom(32)).decode()
ADMIN_PASSWORD = "fault-" + base64.b16encode(os.urandom(6)).decode().lower()
GRACE_S = 30.0  # cluster.owner_grace_ms, the default
CONVERGE_BOUND_S = 20.0
PARTITION_S = 20.0
SERVICES = [f"fault-svc{i}" for i in range(6)]
CLIENTS_PER_SERVICE = 4
CONFIGS = [f"fault-cfg{i}" for i in range(4)]
PERSISTENT = "fault-db"
MINORITY_S = 10.0


def sh(*args, check=True, quiet=False):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    if not quiet and r.returncode != 0:
        print(f"  ({' '.join(args)}: {r.stderr.strip()})", file=sys.stderr)
    return r


def ns(i):
    return f"{TAG}n{i}"


class Net:
    """The bridge, three namespaces with a veth each, and the MariaDB relay."""

    def __init__(self):
        self.relay = None

    def up(self):
        br = f"{TAG}br"
        sh("ip", "link", "add", br, "type", "bridge")
        sh("ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", br)
        sh("ip", "link", "set", br, "up")
        for i, ip in enumerate(NODES):
            host, peer = f"{TAG}h{i}", f"{TAG}p{i}"
            sh("ip", "netns", "add", ns(i))
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", host, "master", br)
            sh("ip", "link", "set", host, "up")
            sh("ip", "link", "set", peer, "netns", ns(i))
            sh("ip", "netns", "exec", ns(i), "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns(i), "ip", "link", "set", peer, "name", "eth0")
            sh("ip", "netns", "exec", ns(i), "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns(i), "ip", "link", "set", "eth0", "up")
        # MariaDB listens on loopback only: relay the bridge address to it.
        self.relay = subprocess.Popen(
            ["socat", f"TCP-LISTEN:3306,bind={BRIDGE_IP},fork,reuseaddr", "TCP:127.0.0.1:3306"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def cut(self, i):
        sh("ip", "netns", "exec", ns(i), "ip", "link", "set", "eth0", "down")

    def isolate(self, i, heal=False):
        """Blackhole routes between member i and the other members, both ways: the
        members cannot reach each other, the script (on the bridge) reaches all."""
        verb = "del" if heal else "add"
        for j in range(len(NODES)):
            if j != i:
                sh("ip", "netns", "exec", ns(i), "ip", "route", verb, "blackhole", f"{NODES[j]}/32")
                sh("ip", "netns", "exec", ns(j), "ip", "route", verb, "blackhole", f"{NODES[i]}/32")

    def heal(self, i):
        sh("ip", "netns", "exec", ns(i), "ip", "link", "set", "eth0", "up")

    def down(self):
        if self.relay:
            self.relay.terminate()
            try:
                self.relay.wait(5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
        for i in range(len(NODES)):
            sh("ip", "netns", "del", ns(i), check=False, quiet=True)
        sh("ip", "link", "del", f"{TAG}br", check=False, quiet=True)


class Node:
    def __init__(self, i, work):
        self.i = i
        self.ip = NODES[i]
        self.dir = os.path.join(work, f"node{i}")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.log = os.path.join(self.dir, "nacre.log")
        conf = os.path.join(self.dir, "cluster.conf")
        with open(conf, "w") as f:
            f.write("# the three members\n" + "\n".join(MEMBERS) + "\n")
        self.toml = os.path.join(self.dir, "nacre.toml")
        with open(self.toml, "w") as f:
            f.write(
                f'[http]\naddr = "{self.ip}:{HTTP_PORT}"\n'
                f'[dns]\naddr = "{self.ip}:{DNS_PORT}"\nzones_dir = "{self.dir}/zones"\n'
                f'[data]\ndir = "{self.dir}/data"\n'
                f'[config_store]\nurl = "mysql://root@{BRIDGE_IP}:3306/{DB}"\n'
                f'[cluster]\nconfig_check_interval_ms = 5000\n'
            )
        self.conf = conf

    def start(self):
        env = dict(os.environ)
        env.update(
            NACRE_CLUSTER_SECRET=SECRET,
            NACRE_AUTH_TOKEN_KEY=TOKEN_KEY,
            NACRE_ADMIN_PASSWORD=ADMIN_PASSWORD,
            RUST_LOG=os.environ.get("RUST_LOG", "nacre=info"),
        )
        log = open(self.log, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns(self.i), BIN, "serve", "--config", self.toml,
             "--cluster-conf", self.conf, "--node-addr", f"{self.ip}:{HTTP_PORT}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )

    def kill(self):
        if self.proc and self.proc.poll() is None:
            # `ip netns exec` execs the binary: this PID is nacre's.
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def base(self):
        return f"http://{self.ip}:{HTTP_PORT}"


def http(method, url, params=None, token=None, timeout=1.5):
    params = dict(params or {})
    if token:
        params["accessToken"] = token
    data = None
    if method in ("POST", "PUT", "DELETE"):
        data = urllib.parse.urlencode(params).encode()
    else:
        url = url + "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError):
        return None, ""


def dns_a(ip, name, timeout=1.0):
    """The A addresses answered for `name`, or the rcode (int) when not NOERROR; None
    without an answer."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (ip, DNS_PORT))
        data, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        return None
    rcode = flags & 0xF
    if rcode != 0:
        return rcode
    pos = 12

    def skip_name(p):
        while True:
            n = data[p]
            if n == 0:
                return p + 1
            if n & 0xC0 == 0xC0:
                return p + 2
            p += n + 1

    for _ in range(qd):
        pos = skip_name(pos) + 4
    out = set()
    for _ in range(an):
        pos = skip_name(pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.add(socket.inet_ntoa(data[pos:pos + 4]))
        pos += rdlen
    return frozenset(out)


class Cluster:
    def __init__(self, work):
        self.nodes = [Node(i, work) for i in range(3)]
        self.down = set()  # members the script has killed or cut off
        self.token = None
        self.lock = threading.Lock()
        self.avoid = {}  # member -> time until which the driver skips it
        self.minority = None  # the member cut off in the minority, still written to

    def reachable(self):
        now = time.time()
        with self.lock:
            order = [i for i in range(3) if i not in self.down and self.avoid.get(i, 0) < now]
        random.shuffle(order)
        return order or [i for i in range(3) if i not in self.down]

    def call(self, method, path, params):
        """Calls some member, failing over as a Nacos client does."""
        for i in self.reachable():
            status, body = http(method, self.nodes[i].base() + path, params, self.token)
            if status is not None and status < 500:
                return status, body
            with self.lock:
                self.avoid[i] = time.time() + 3
        return None, ""

    def ready(self, i):
        status, _ = http("GET", self.nodes[i].base() + "/nacos/v1/console/health/readiness")
        return status == 200


def raft_leader(cluster, exclude=()):
    """The member every reachable member (outside `exclude`) names as the Raft leader,
    or None."""
    ids, named = {}, set()
    for i in range(3):
        if i in exclude:
            continue
        status, body = http("GET", cluster.nodes[i].base() + "/nacos/v1/core/cluster/raft", {}, cluster.token)
        if status != 200:
            return None
        data = json.loads(body)["data"]
        ids[data["nodeId"]] = i
        named.add(data["leader"])
    if len(named) != 1:
        return None
    leader_id = named.pop()
    if leader_id is None:
        return None
    if leader_id not in ids:
        # The leader is among the excluded: look its id up there.
        for i in exclude:
            status, body = http("GET", cluster.nodes[i].base() + "/nacos/v1/core/cluster/raft", {}, cluster.token)
            if status == 200 and json.loads(body)["data"]["nodeId"] == leader_id:
                return i
        return None
    return ids[leader_id]


def wait_leader(cluster, exclude=()):
    started = time.time()
    while time.time() - started < CONVERGE_BOUND_S:
        leader = raft_leader(cluster, exclude)
        if leader is not None and leader not in exclude:
            return leader
        time.sleep(0.1)
    raise AssertionError(f"no Raft leader outside {exclude} within {CONVERGE_BOUND_S} s")


def persistent_ips(cluster, i):
    status, body = http("GET", cluster.nodes[i].base() + "/nacos/v1/ns/instance/list",
                        {"serviceName": PERSISTENT, "healthyOnly": "false"}, cluster.token, timeout=5)
    if status != 200:
        return None
    return frozenset(h["ip"] for h in json.loads(body).get("hosts", []))


def persistent_threshold(cluster, i):
    status, body = http("GET", cluster.nodes[i].base() + "/nacos/v1/ns/service",
                        {"serviceName": PERSISTENT}, cluster.token, timeout=5)
    if status != 200:
        return None
    return json.loads(body).get("protectThreshold")


def clients():
    for s, svc in enumerate(SERVICES):
        for k in range(CLIENTS_PER_SERVICE):
            yield svc, f"10.50.{s}.{k + 1}"


def expected_sets():
    out = {svc: set() for svc in SERVICES}
    for svc, ip in clients():
        out[svc].add(ip)
    return {k: frozenset(v) for k, v in out.items()}


def answers(cluster, i):
    """Member i's DNS A sets and instance lists, per service."""
    node = cluster.nodes[i]
    dns, lists = {}, {}
    for svc in SERVICES:
        dns[svc] = dns_a(node.ip, f"{svc}.DEFAULT_GROUP.svc.")
        status, body = http("GET", node.base() + "/nacos/v1/ns/instance/list",
                            {"serviceName": svc, "healthyOnly": "true"}, cluster.token)
        if status == 200:
            lists[svc] = frozenset(h["ip"] for h in json.loads(body).get("hosts", []))
        else:
            lists[svc] = None
    return dns, lists


def wait_converged(cluster, members, what):
    """Seconds until every member in `members` answers the expected sets over DNS and
    the list API; fails past CONVERGE_BOUND_S."""
    want = expected_sets()
    started = time.time()
    while True:
        ok = True
        for i in members:
            dns, lists = answers(cluster, i)
            if any(dns[s] != want[s] or lists[s] != want[s] for s in SERVICES):
                ok = False
                break
        elapsed = time.time() - started
        if ok:
            print(f"  converged after {what}: {elapsed:.2f} s")
            return elapsed
        if elapsed > CONVERGE_BOUND_S:
            raise AssertionError(f"members {members} did not converge within {CONVERGE_BOUND_S} s after {what}: {answers(cluster, i)}")
        time.sleep(0.2)


class Load:
    """Beats every client, publishes configs and samples the majority's DNS."""

    def __init__(self, cluster):
        self.c = cluster
        self.stop = threading.Event()
        self.acked = {}  # dataId -> last acknowledged content
        self.publishes = 0
        self.beats = 0
        self.beat_failures = 0
        self.absent_since = {}  # (member, ip) -> time first seen missing
        self.max_absence = 0.0
        self.max_absence_at = None
        self.episodes = []  # (time, member, ip, answer) when a client went missing
        self.t0 = time.time()
        self.writes = []  # (ip, member, status, acked, sent, done) of persistent registrations
        self.settings = []  # (threshold, member, status, sent) of service updates
        self.extra_acked = set()  # ips the fault steps themselves wrote
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self.beat, self.publish, self.sample, self.persist)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def beat(self):
        while not self.stop.is_set():
            started = time.time()
            for svc, ip in clients():
                beat = json.dumps({"ip": ip, "port": 8080, "serviceName": f"DEFAULT_GROUP@@{svc}",
                                   "cluster": "DEFAULT", "weight": 1, "metadata": {}, "scheduled": True})
                status, body = self.c.call("PUT", "/nacos/v1/ns/instance/beat",
                                           {"serviceName": svc, "ip": ip, "port": "8080", "beat": beat})
                if status == 200:
                    self.beats += 1
                else:
                    self.beat_failures += 1
            self.stop.wait(max(0.0, 2.0 - (time.time() - started)))

    def publish(self):
        n = 0
        while not self.stop.is_set():
            data_id = CONFIGS[n % len(CONFIGS)]
            content = f"seq: {n}"
            status, body = self.c.call("POST", "/nacos/v1/cs/configs",
                                       {"dataId": data_id, "group": "DEFAULT_GROUP", "content": content})
            if status == 200 and body == "true":
                self.acked[data_id] = content
                self.publishes += 1
            n += 1
            self.stop.wait(0.3)

    def persist(self):
        """Persistent registrations (a new ip each) and protect threshold updates,
        sent to every member in turn (also the one cut off in the minority), one at a
        time."""
        n = 0
        while not self.stop.is_set():
            i = n % 3
            with self.c.lock:
                skip = i in self.c.down and i != self.c.minority
            if skip:
                n += 1
                continue
            base = self.c.nodes[i].base()
            if n % 4 == 3:
                threshold = f"{(n % 997) / 1000:.3f}"
                sent = time.time()
                status, _ = http("PUT", base + "/nacos/v1/ns/service",
                                 {"serviceName": PERSISTENT, "protectThreshold": threshold},
                                 self.c.token, timeout=8)
                self.settings.append((threshold, i, status, sent))
            else:
                ip = f"10.60.{(n // 250) % 250}.{n % 250 + 1}"
                sent = time.time()
                status, body = http("POST", base + "/nacos/v1/ns/instance",
                                    {"serviceName": PERSISTENT, "ip": ip, "port": "5432",
                                     "ephemeral": "false"}, self.c.token, timeout=8)
                acked = status == 200 and body == "ok"
                self.writes.append((ip, i, status, acked, sent, time.time()))
            n += 1
            self.stop.wait(0.05)

    def sample(self):
        want = expected_sets()
        while not self.stop.is_set():
            with self.c.lock:
                majority = [i for i in range(3) if i not in self.c.down]
            now = time.time()
            for i in majority:
                for svc in SERVICES:
                    raw = dns_a(self.c.nodes[i].ip, f"{svc}.DEFAULT_GROUP.svc.")
                    with self.c.lock:
                        gone = i in self.c.down
                    if gone and raw is None:
                        # Killed or cut off while this round ran: no longer a majority member.
                        continue
                    got = raw if isinstance(raw, frozenset) else frozenset()
                    for ip in want[svc]:
                        key = (i, ip)
                        if ip in got:
                            self.absent_since.pop(key, None)
                        else:
                            if key not in self.absent_since:
                                self.episodes.append((round(now - self.t0, 2), i, ip, raw))
                            since = self.absent_since.setdefault(key, now)
                            if now - since > self.max_absence:
                                self.max_absence = now - since
                                self.max_absence_at = key
            self.stop.wait(0.25)


def main():
    if os.geteuid() != 0:
        sys.exit("cluster_faults.py needs root (network namespaces)")
    for tool in ("ip", "socat", "mysql"):
        if not shutil.which(tool):
            sys.exit(f"cluster_faults.py needs {tool}")
    if not os.path.exists(BIN):
        sys.exit(f"no nacre binary at {BIN} (cargo build, or set NACRE_BIN)")
    work = tempfile.mkdtemp(prefix="nacre-faults-")
    net = Net()
    cluster = Cluster(work)
    load = None
    deadline = time.time() + 600
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("the fault script ran 10 minutes")))
    signal.alarm(600)
    sh("mysql", "-h127.0.0.1", "-uroot", "-e", f"CREATE DATABASE {DB}")
    ok = False
    try:
        net.up()
        # The first member creates the admin user in the shared database; the others
        # start once it serves.
        t0 = time.time()
        cluster.nodes[0].start()
        while http("GET", cluster.nodes[0].base() + "/nacos/v1/console/health/liveness")[0] != 200:
            if time.time() - t0 > 30:
                raise AssertionError("member 0 did not start within 30 s")
            time.sleep(0.1)
        for node in cluster.nodes[1:]:
            node.start()
        while not all(cluster.ready(i) for i in range(3)):
            if time.time() - t0 > 30:
                raise AssertionError("the members did not become ready within 30 s")
            time.sleep(0.2)
        print(f"three members ready in {time.time() - t0:.2f} s")
        for _ in range(50):
            status, body = http("POST", cluster.nodes[0].base() + "/nacos/v1/auth/login",
                                {"username": "nacos", "password": ADMIN_PASSWORD})
            if status == 200:
                cluster.token = json.loads(body)["accessToken"]
                break
            time.sleep(0.2)
        assert cluster.token, "login failed"
        for svc, ip in clients():
            status, body = cluster.call("POST", "/nacos/v1/ns/instance",
                                        {"serviceName": svc, "ip": ip, "port": "8080"})
            assert (status, body) == (200, "ok"), f"register {svc} {ip}: {status} {body}"
        wait_converged(cluster, [0, 1, 2], "registration")
        load = Load(cluster)
        load.start()
        time.sleep(3)

        print(f"fault 1 at {time.time() - load.t0:.1f} s: SIGKILL member 1, restart it after 5 s")
        with cluster.lock:
            cluster.down.add(1)
        cluster.nodes[1].kill()
        time.sleep(5)
        cluster.nodes[1].start()
        t1 = time.time()
        saw_not_ready = False
        while not cluster.ready(1):
            got = dns_a(NODES[1], f"{SERVICES[0]}.DEFAULT_GROUP.svc.")
            if got == 2:
                saw_not_ready = True
            elif isinstance(got, frozenset):
                assert got == expected_sets()[SERVICES[0]], f"a loading member answered {got}"
            if time.time() - t1 > CONVERGE_BOUND_S:
                raise AssertionError("member 1 did not become ready")
            time.sleep(0.05)
        print(f"  restarted member ready after {time.time() - t1:.2f} s (SERVFAIL seen while loading: {saw_not_ready})")
        with cluster.lock:
            cluster.down.discard(1)
        converge_kill = wait_converged(cluster, [0, 1, 2], "the restart")

        print(f"fault 2 at {time.time() - load.t0:.1f} s: cut member 2 off for {PARTITION_S:.0f} s")
        with cluster.lock:
            cluster.down.add(2)
        net.cut(2)
        time.sleep(PARTITION_S)
        net.heal(2)
        with cluster.lock:
            cluster.down.discard(2)
        converge_partition = wait_converged(cluster, [0, 1, 2], "the partition healed")

        # Raft faults: the leader, then a follower, SIGKILLed and restarted.
        kills = {}
        for what in ("leader", "follower"):
            leader = wait_leader(cluster)
            victim = leader if what == "leader" else (leader + 1) % 3
            print(f"fault {3 if what == 'leader' else 4} at {time.time() - load.t0:.1f} s: "
                  f"SIGKILL the Raft {what} (member {victim}), restart it after 5 s")
            with cluster.lock:
                cluster.down.add(victim)
            killed_at = time.time()
            cluster.nodes[victim].kill()
            # The first persistent write a surviving member accepts.
            first_ok = None
            while first_ok is None and time.time() - killed_at < CONVERGE_BOUND_S:
                other = (victim + 1) % 3
                status, body = http("POST", cluster.nodes[other].base() + "/nacos/v1/ns/instance",
                                    {"serviceName": PERSISTENT, "ip": "10.61.0.1", "port": "5432",
                                     "ephemeral": "false"}, cluster.token, timeout=8)
                if status == 200 and body == "ok":
                    first_ok = time.time() - killed_at
            assert first_ok is not None, f"no write accepted after the {what} died"
            load.extra_acked.add("10.61.0.1")
            kills[what] = first_ok
            print(f"  first persistent write accepted {first_ok:.2f} s after the kill")
            time.sleep(max(0.0, 5 - (time.time() - killed_at)))
            cluster.nodes[victim].start()
            t1 = time.time()
            while not cluster.ready(victim):
                if time.time() - t1 > CONVERGE_BOUND_S:
                    raise AssertionError(f"member {victim} did not become ready")
                time.sleep(0.1)
            with cluster.lock:
                cluster.down.discard(victim)
            wait_converged(cluster, [0, 1, 2], f"the {what}'s restart")

        # The leader cut off from both followers; the script still writes to it.
        leader = wait_leader(cluster)
        print(f"fault 5 at {time.time() - load.t0:.1f} s: cut the Raft leader (member {leader}) "
              f"off from the others for {MINORITY_S:.0f} s")
        with cluster.lock:
            cluster.down.add(leader)
            cluster.minority = leader
        cut_at = time.time()
        net.isolate(leader)
        # Besides the load's turn, writes aimed only at the cut-off leader, several at
        # a time, for the whole partition.
        probing = threading.Event()

        def probe_minority(k):
            n = 0
            while not probing.is_set():
                ip = f"10.62.{k}.{n % 250 + 1}"
                sent = time.time()
                status, body = http("POST", cluster.nodes[leader].base() + "/nacos/v1/ns/instance",
                                    {"serviceName": PERSISTENT, "ip": ip, "port": "5432",
                                     "ephemeral": "false"}, cluster.token, timeout=8)
                load.writes.append((ip, leader, status, status == 200 and body == "ok", sent, time.time()))
                n += 1
                probing.wait(0.2)

        probes = [threading.Thread(target=probe_minority, args=(k,), daemon=True) for k in range(4)]
        for t in probes:
            t.start()
        new_leader = wait_leader(cluster, exclude=(leader,))
        elected = time.time() - cut_at
        print(f"  the majority elected member {new_leader} after {elected:.2f} s")
        time.sleep(max(0.0, MINORITY_S - (time.time() - cut_at)))
        probing.set()
        for t in probes:
            t.join(10)
        healed_at = time.time()
        net.isolate(leader, heal=True)
        with cluster.lock:
            cluster.down.discard(leader)
            cluster.minority = None
        wait_converged(cluster, [0, 1, 2], "the Raft partition healed")

        time.sleep(2)
        load.finish()
        # Every acknowledged publish is what every member serves (the last one of each
        # dataId, publishes being sequential).
        time.sleep(1)
        for data_id, content in load.acked.items():
            for i in range(3):
                deadline_cfg = time.time() + CONVERGE_BOUND_S
                while True:
                    status, body = http("GET", cluster.nodes[i].base() + "/nacos/v1/cs/configs",
                                        {"dataId": data_id, "group": "DEFAULT_GROUP"}, cluster.token)
                    if (status, body) == (200, content):
                        break
                    if time.time() > deadline_cfg:
                        raise AssertionError(f"member {i} serves {data_id} = {body!r} ({status}), acknowledged {content!r}")
                    time.sleep(0.2)
        # Every acknowledged persistent write is on every member; members agree; nothing
        # appears that was never sent; the minority acknowledged nothing sent to it
        # while cut off.
        acked = {w[0] for w in load.writes if w[3]} | load.extra_acked
        sent = {w[0] for w in load.writes} | load.extra_acked
        deadline_cp = time.time() + CONVERGE_BOUND_S
        while True:
            views = [persistent_ips(cluster, i) for i in range(3)]
            if all(v is not None and v == views[0] for v in views) and acked <= views[0]:
                break
            if time.time() > deadline_cp:
                missing = [sorted(acked - (v or frozenset()))[:5] for v in views]
                raise AssertionError(f"persistent writes lost or members differ: missing {missing}, sizes {[len(v or ()) for v in views]}")
            time.sleep(0.2)
        assert views[0] <= sent, f"instances never sent: {sorted(views[0] - sent)[:5]}"
        # Writes sent to the leader cut off in the minority while it was cut off: it
        # may acknowledge none of them.
        minority_writes = [w for w in load.writes if w[1] == leader and cut_at < w[4] < healed_at]
        minority_writes += [(x[0], x[1], x[2], x[2] == 200, x[3], None) for x in load.settings
                            if x[1] == leader and cut_at < x[3] < healed_at]
        minority_acked = [w for w in minority_writes if w[3]]
        assert not minority_acked, f"the minority acknowledged {len(minority_acked)} writes: {minority_acked[:3]}"
        thresholds = {persistent_threshold(cluster, i) for i in range(3)}
        assert len(thresholds) == 1, f"members disagree on the protect threshold: {thresholds}"
        final = thresholds.pop()
        acked_settings = [x for x in load.settings if x[2] == 200]
        if acked_settings:
            last = acked_settings[-1]
            allowed = {float(last[0])} | {float(x[0]) for x in load.settings if x[3] > last[3] and x[2] != 200}
            assert final in allowed, f"protect threshold {final}, last acknowledged {last[0]}"
        print("figures:")
        print(f"  beats acknowledged {load.beats}, failed {load.beat_failures}")
        print(f"  config publishes acknowledged {load.publishes}, all served by every member")
        print(f"  convergence after SIGKILL + restart {converge_kill:.2f} s, after the partition {converge_partition:.2f} s (bound {CONVERGE_BOUND_S:.0f} s)")
        refused = sum(1 for w in load.writes if not w[3])
        print(f"  persistent registrations sent {len(load.writes)}, acknowledged {len(acked) - len(load.extra_acked)}, "
              f"not acknowledged {refused}; all acknowledged ones on every member ({len(views[0])} listed)")
        print(f"  service setting updates sent {len(load.settings)}, acknowledged {len(acked_settings)}; "
              f"every member has threshold {final}")
        print(f"  writes sent to the leader cut off in the minority: {len(minority_writes)}, acknowledged 0")
        print(f"  first persistent write after SIGKILL of the leader {kills['leader']:.2f} s, "
              f"of a follower {kills['follower']:.2f} s; majority elected a leader {elected:.2f} s after the cut")
        print(f"  longest absence of a beating client from a majority member's DNS: {load.max_absence:.2f} s {load.max_absence_at or ''} (bound: grace {GRACE_S:.0f} s)")
        for t, i, ip, raw in load.episodes[:10]:
            print(f"    missing at {t} s: {ip} from member {i}'s answer {sorted(raw) if isinstance(raw, frozenset) else raw}")
        assert load.max_absence <= GRACE_S, "a beating client was missing longer than the grace"
        ok = True
        print("cluster fault script: PASS")
    finally:
        signal.alarm(0)
        if load:
            load.stop.set()
        for node in cluster.nodes:
            node.stop()
        net.down()
        sh("mysql", "-h127.0.0.1", "-uroot", "-e", f"DROP DATABASE IF EXISTS {DB}", check=False)
        if not ok:
            for node in cluster.nodes:
                print(f"--- {node.log} (last 30 lines)")
                try:
                    with open(node.log) as f:
                        print("".join(f.readlines()[-30:]))
                except OSError:
                    pass
        if os.environ.get("KEEP_LOGS"):
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        _ = deadline


if __name__ == "__main__":
    main()
