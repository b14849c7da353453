"""Helpers shared by the Python benchmarks of benches/ (loopback only)."""

import http.client
import time
import urllib.parse


class Conn:
    """A keep-alive HTTP connection to one server."""

    def __init__(self, port, token=None, timeout=5):
        self.port = port
        self.token = token
        self.timeout = timeout
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method, path, params=None):
        params = dict(params or {})
        if self.token:
            params["accessToken"] = self.token
        q = urllib.parse.urlencode(params)
        for attempt in range(2):
            try:
                if method == "GET":
                    self.c.request("GET", f"{path}?{q}")
                else:
                    self.c.request(method, path, body=q,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
                r = self.c.getresponse()
                return r.status, r.read().decode(errors="replace")
            except (OSError, http.client.HTTPException):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt:
                    return None, ""
        return None, ""


def wait(check, seconds, what):
    deadline = time.time() + seconds
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.05)
