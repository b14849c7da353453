#!/usr/bin/env python3
"""Register/deregister memory cycles against a Nacos-compatible server.

  mem_cycle.py HOST:PORT PID TOKEN CYCLES INSTANCES

Each cycle registers INSTANCES ephemeral instances (100 services, distinct IPs, beat
and delete timeouts of one hour in their metadata, as in issue 10's repro) and then
deregisters every one of them, over 32 keep-alive connections. After each cycle it
prints the server's VmRSS (from /proc/PID/status) and the cycle's request rate.
Loopback only.
"""
import asyncio
import json
import sys
import time
import urllib.parse

CONNECTIONS = 32
METADATA = json.dumps(
    {"preserved.heart.beat.timeout": "3600000", "preserved.ip.delete.timeout": "3600000"}
)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def target(i):
    return f"cycle-svc-{i % 100:03d}", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


async def worker(host, port, token, method, indices, errors):
    reader, writer = await asyncio.open_connection(host, port)
    for i in indices:
        service, ip = target(i)
        params = {"serviceName": service, "ip": ip, "port": "8080", "accessToken": token}
        if method == "POST":
            params["metadata"] = METADATA
        query = urllib.parse.urlencode(params)
        writer.write(
            f"{method} /nacos/v1/ns/instance?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        body = await reader.readexactly(length)
        if not status.startswith(b"HTTP/1.1 200") or body != b"ok":
            errors.append((status, body))
    writer.close()


async def phase(host, port, token, method, n):
    errors = []
    start = time.monotonic()
    await asyncio.gather(
        *(
            worker(host, port, token, method, range(c, n, CONNECTIONS), errors)
            for c in range(CONNECTIONS)
        )
    )
    elapsed = time.monotonic() - start
    if errors:
        sys.exit(f"{method}: {len(errors)} errors, first {errors[0]}")
    return n / elapsed


async def main():
    addr, pid, token, cycles, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    host, port = addr.rsplit(":", 1)
    if not host.startswith("127."):
        sys.exit("loopback only")
    print(f"rss_before_mb {rss_mb(pid):.1f}", flush=True)
    first = None
    for c in range(1, cycles + 1):
        reg = await phase(host, int(port), token, "POST", n)
        peak = rss_mb(pid)
        dereg = await phase(host, int(port), token, "DELETE", n)
        await asyncio.sleep(2)
        rss = rss_mb(pid)
        first = first or rss
        print(
            f"cycle {c}: registered {reg:.0f}/s (rss {peak:.1f} MB), deregistered {dereg:.0f}/s, "
            f"rss_after_mb {rss:.1f} ({rss / first:.2f} of cycle 1)",
            flush=True,
        )
    print(f"rss_after_cycle_1_mb {first:.1f} rss_after_cycle_{cycles}_mb {rss:.1f} ratio {rss / first:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
