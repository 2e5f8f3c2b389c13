// The baseline of bench/plane-warm: the same handler in a plain Node process,
// called over HTTP on loopback. Prints its port, then serves until killed.
import http from "node:http";
import { work } from "./work.js";

const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    const { n } = JSON.parse(body) as { n: number };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(work(n)));
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: (server.address() as { port: number }).port })));
