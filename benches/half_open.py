#!/usr/bin/env python3
"""Half-open HTTP connections and the probes that must still be answered.

  half_open.py flood HOST:PORT COUNT SOURCES HOLD_S
      Opens COUNT connections to HOST:PORT, spread over the source addresses SOURCES
      (comma list of loopback addresses), sends each a request head without its final
      blank line, and holds them for HOLD_S seconds. Prints `ready opened=N failed=M`
      once every connect was tried, then `closed_by_server=K` at the end.

  half_open.py probe HTTP_HOST:PORT DNS_HOST:PORT SECONDS
      Every 100 ms, from 127.0.0.1: a GET of the liveness endpoint on a new connection,
      and a DNS-over-TCP SOA query of `svc.` on a new connection. Prints one line per
      second (`t=.. http_max_ms=.. dns_max_ms=.. failures=..`) and a summary.

Loopback only; every connection is closed when the script ends.
"""
import asyncio
import resource
import struct
import sys
import time

HALF_SENT = b"GET /nacos/v1/console/health/liveness HTTP/1.1\r\nHost: x\r\n"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loopback_only(host):
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        sys.exit(f"refusing non-loopback target {host}")


async def flood(target, count, sources, hold_s):
    host, port = target.rsplit(":", 1)
    loopback_only(host)
    for s in sources:
        loopback_only(s)
    conns = []
    failed = 0
    sem = asyncio.Semaphore(500)

    async def one(i):
        nonlocal failed
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), local_addr=(sources[i % len(sources)], 0)),
                    timeout=10,
                )
                writer.write(HALF_SENT)
                await writer.drain()
                conns.append((reader, writer))
            except Exception:
                failed += 1

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    print(f"ready opened={len(conns)} failed={failed} ramp_s={time.monotonic() - start:.2f}", flush=True)
    await asyncio.sleep(hold_s)
    closed = 0
    for reader, writer in conns:
        # A connection the server closed reads EOF (or is reset) at once.
        try:
            data = await asyncio.wait_for(reader.read(1), timeout=0.001)
            if data == b"":
                closed += 1
        except asyncio.TimeoutError:
            pass
        except Exception:
            closed += 1
        writer.close()
    print(f"closed_by_server={closed} of {len(conns)}", flush=True)


def dns_query():
    # id 0x1234, RD off, one question: svc. SOA IN
    header = struct.pack(">HHHHHH", 0x1234, 0, 1, 0, 0, 0)
    question = b"\x03svc\x00" + struct.pack(">HH", 6, 1)
    msg = header + question
    return struct.pack(">H", len(msg)) + msg


async def timed(coro, timeout=2.0):
    start = time.monotonic()
    try:
        ok = await asyncio.wait_for(coro, timeout)
    except Exception:
        ok = False
    return ok, (time.monotonic() - start) * 1000


async def http_probe(host, port):
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
    writer.write(b"GET /nacos/v1/console/health/liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return line.startswith(b"HTTP/1.1 200")


async def dns_probe(host, port):
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
    writer.write(dns_query())
    await writer.drain()
    length = struct.unpack(">H", await reader.readexactly(2))[0]
    answer = await reader.readexactly(length)
    writer.close()
    return answer[:2] == b"\x12\x34" and struct.unpack(">H", answer[6:8])[0] == 1


async def probe(http_target, dns_target, seconds):
    hh, hp = http_target.rsplit(":", 1)
    dh, dp = dns_target.rsplit(":", 1)
    loopback_only(hh)
    loopback_only(dh)
    all_http, all_dns, failures = [], [], 0
    start = time.monotonic()
    second, sec_http, sec_dns, sec_fail = 1, [], [], 0
    while time.monotonic() - start < seconds:
        (h_ok, h_ms), (d_ok, d_ms) = await asyncio.gather(
            timed(http_probe(hh, int(hp))), timed(dns_probe(dh, int(dp)))
        )
        for ok, ms, bucket, every in ((h_ok, h_ms, sec_http, all_http), (d_ok, d_ms, sec_dns, all_dns)):
            bucket.append(ms)
            every.append(ms)
            if not ok:
                failures += 1
                sec_fail += 1
        if time.monotonic() - start >= second:
            print(f"t={second}s http_max_ms={max(sec_http):.1f} dns_max_ms={max(sec_dns):.1f} failures={sec_fail}", flush=True)
            second += 1
            sec_http, sec_dns, sec_fail = [], [], 0
        await asyncio.sleep(0.1)

    def pct(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, int(len(v) * p))]

    print(
        f"probe_http_ms p50={pct(all_http, 0.5):.1f} p99={pct(all_http, 0.99):.1f} max={max(all_http):.1f} "
        f"probe_dns_ms p50={pct(all_dns, 0.5):.1f} p99={pct(all_dns, 0.99):.1f} max={max(all_dns):.1f} "
        f"probes={len(all_http)} failures={failures}",
        flush=True,
    )


def main():
    raise_fd_limit()
    mode = sys.argv[1]
    if mode == "flood":
        asyncio.run(flood(sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), float(sys.argv[5])))
    elif mode == "probe":
        asyncio.run(probe(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
