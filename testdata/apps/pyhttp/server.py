"""A Python HTTP service for the wire-path tests: a ThreadingHTTPServer
(one thread per connection) speaking HTTP/1.1 with keep-alive, whose /call
handler calls another service with urllib on the same thread."""
import argparse
import http.server
import urllib.error
import urllib.parse
import urllib.request


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK (40 ms) on a keep-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/status":
            self.reply(int(query.partition("=")[2] or "200"))
        elif path == "/call":
            # /call?port=N&path=/x: GET http://127.0.0.1:N/x from this thread.
            args = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
            url = "http://127.0.0.1:%s%s" % (args["port"], args.get("path", "/"))
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                    code = r.status
            except urllib.error.HTTPError as e:
                code = e.code
            self.reply(200, str(code).encode())
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.reply(200, b"hello from python " + path.encode())

    do_HEAD = do_GET

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.reply(201, body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-addr", default="127.0.0.1:8080")
    a = p.parse_args()
    host, _, port = a.addr.rpartition(":")
    http.server.ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
