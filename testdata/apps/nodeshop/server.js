// A Node.js service for the wire-path tests: one event loop serving HTTP,
// calling another service with http.get and PostgreSQL through pg. /check is
// the Node twin of sockcheck: what Node can see of its own outgoing TCP
// socket (the bytes read) and a file piped into it.
"use strict";
const fs = require("fs");
const http = require("http");
const net = require("net");
const { Client } = require("pg");

const addr = process.argv[process.argv.indexOf("-addr") + 1] || "127.0.0.1:8080";
const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];

// One connection, made at start: a connection the agent may see only later.
const db = process.env.PGHOST ? new Client() : null;
const ready = db ? db.connect() : Promise.resolve();

function reply(res, code, body) {
  res.writeHead(code, { "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

http
  .createServer((req, res) => {
    const u = new URL(req.url, "http://x");
    if (u.pathname === "/call") {
      // GET http://127.0.0.1:PORT/PATH, after waiting ms (another request
      // may then be in flight on the loop too).
      setTimeout(() => http
        .get({ host: "127.0.0.1", port: u.searchParams.get("port"), path: u.searchParams.get("path") }, (r) => {
          r.resume();
          r.on("end", () => reply(res, 200, String(r.statusCode)));
        })
        .on("error", (e) => reply(res, 502, e.message)), Number(u.searchParams.get("ms") || 0));
    } else if (u.pathname === "/check") {
      // The peer sends 128 bytes first, then reads until EOF.
      const [h, p] = [u.searchParams.get("peer").split(":")[0], Number(u.searchParams.get("peer").split(":")[1])];
      const s = net.connect(p, h);
      let read = 0;
      const onData = (b) => {
        read += b.length;
        if (read < 128) return;
        s.off("data", onData);
        fs.createReadStream(u.searchParams.get("file"))
          .on("end", () => s.end(() => reply(res, 200, JSON.stringify({ read, sent: s.bytesWritten }))))
          .pipe(s, { end: false });
      };
      s.on("data", onData).on("error", (e) => reply(res, 500, e.message));
    } else if (u.pathname === "/wait") {
      setTimeout(() => reply(res, 200, "waited"), Number(u.searchParams.get("ms")));
    } else if (u.pathname === "/db") {
      ready
        .then(() => db.query("SELECT name FROM wire_users WHERE id = $1", [Number(u.searchParams.get("id"))]))
        .then((r) => reply(res, 200, JSON.stringify(r.rows)))
        .catch((e) => reply(res, 500, e.message));
    } else {
      reply(res, 200, "hello from node " + u.pathname);
    }
  })
  .listen(port, host);
