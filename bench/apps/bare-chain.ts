// bench/plane-warm (f): the processes a warm plane call crosses, with none of Tandem's work in them. `relay PORT`: an
// HTTP server that POSTs each request's body on to PORT over a kept-alive connection and answers with what comes
// back (the gateway's place); `front SOCKET`: an HTTP server that hands each body, as a line, to the one process
// connected to the unix socket SOCKET and answers with the line it gets back (the plane's place; the container's
// side is bare-chain-runner.ts). Each prints its port as JSON once it listens, then serves until killed.
import { chmodSync } from "node:fs";
import http from "node:http";
import net from "node:net";

const [mode, target] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true });
let answer: (body: string, reply: (text: string) => void) => void;

if (mode === "relay") {
  answer = (body, reply) => {
    const out = http.request(
      {
        host: "127.0.0.1",
        port: Number(target),
        method: "POST",
        path: "/",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => reply(text));
      },
    );
    out.end(body);
  };
} else if (mode === "front") {
  // One line out, one line back, in order: the container answers its lines one at a time.
  const waiting: ((text: string) => void)[] = [];
  let runner: net.Socket | undefined;
  const early: string[] = [];
  net
    .createServer((socket) => {
      runner = socket;
      socket.setEncoding("utf8");
      let buffered = "";
      socket.on("data", (chunk: string) => {
        buffered += chunk;
        for (let end = buffered.indexOf("\n"); end >= 0; end = buffered.indexOf("\n")) {
          waiting.shift()?.(buffered.slice(0, end));
          buffered = buffered.slice(end + 1);
        }
      });
      for (const line of early.splice(0)) socket.write(line);
    })
    .listen(target, () => chmodSync(target!, 0o666)); // the container's user is not this process's
  answer = (body, reply) => {
    waiting.push(reply);
    const line = body.replace(/\n/g, " ") + "\n";
    if (runner) runner.write(line);
    else early.push(line);
  };
} else {
  throw new Error(`usage: bare-chain.ts relay PORT | front SOCKET (not ${mode})`);
}

const server = http.createServer((req, res) => {
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (c: string) => (body += c));
  req.on("end", () =>
    answer(body, (text) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    }),
  );
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: (server.address() as { port: number }).port })));
