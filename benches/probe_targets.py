#!/usr/bin/env python3
"""TCP targets for benches/probe_round.sh: listens on N free ports on 0.0.0.0 (so every
127.x.y.z address reaches them), accepts every connection and closes it at once.
Prints the ports, space-separated, on its first line of output, then serves until
killed."""
import selectors
import socket
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
sel = selectors.DefaultSelector()
ports = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 0))
    s.listen(4096)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)), flush=True)
while True:
    for key, _ in sel.select():
        while True:
            try:
                conn, _ = key.fileobj.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            conn.close()
