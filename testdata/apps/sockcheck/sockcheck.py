"""sockcheck.py: the Python twin of sockcheck (main.go), for a target that
is not Go: it looks at its own outgoing TCP socket (FIONREAD, MSG_PEEK, poll
and epoll readiness, SO_RCVLOWAT) and sends a file with sendfile. /call
makes an HTTP call (urllib), which the agent gives a traceparent."""
import argparse
import fcntl
import json
import select
import socket
import struct
import termios
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

WAITING = 128


def readable(s):
    p = select.poll()
    p.register(s, select.POLLIN)
    return any(ev & select.POLLIN for _, ev in p.poll(0))


def check(peer, path):
    host, port = peer.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    try:
        res = {}
        # Wait until every byte is there (MSG_PEEK), then ask FIONREAD:
        # asked first, it could see fewer bytes than the peek after it.
        deadline = time.time() + 5
        while True:
            try:
                res["peek"] = len(s.recv(2 * WAITING, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except BlockingIOError:
                res["peek"] = 0
            if res["peek"] >= WAITING or time.time() > deadline:
                break
            time.sleep(0.01)
        res["fionread"] = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0" * 4))[0]
        res["poll_in"] = readable(s)
        ep = select.epoll()
        ep.register(s.fileno(), select.EPOLLIN)
        res["epoll_in"] = len(ep.poll(0)) == 1
        ep.close()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, WAITING + 1)
        res["lowat_not_ready"] = not readable(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, WAITING)
        res["lowat_ready"] = readable(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        got = b""
        while len(got) < WAITING:
            got += s.recv(WAITING - len(got))
        res["read"] = len(got)
        with open(path, "rb") as f:
            res["sent"] = s.sendfile(f)
        s.shutdown(socket.SHUT_WR)
        return res
    finally:
        s.close()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        u = urlparse(self.path)
        body = b""
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/check":
            body = json.dumps(check(q["peer"], q["file"])).encode()
        elif u.path == "/call":
            with urllib.request.urlopen("http://127.0.0.1:%s%s" % (q["port"], q["path"]), timeout=10) as r:
                body = r.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-addr", default="127.0.0.1:8080")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
