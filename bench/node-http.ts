/**
 * A request over `node:http` with a kept-alive connection, its answer read as
 * JSON: how the SDK sends its calls in Node (sdk/transport.ts). The edge and
 * plane benchmarks call the bare side this way as well as with Node's `fetch`,
 * so a ratio can be read with both sides on one transport.
 */
import http from "node:http";

const agent = new http.Agent({ keepAlive: true, timeout: 4_000 });

export function nodeHttpJson(url: string, init: { method?: "GET" | "POST"; body?: string; headers?: Record<string, string> } = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: init.method ?? "GET",
      agent,
      headers: {
        ...init.headers,
        ...(init.body === undefined ? {} : { "content-type": "application/json", "content-length": String(Buffer.byteLength(init.body)) }),
      },
    });
    req.once("error", reject);
    req.once("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.once("error", reject);
      res.once("end", () => {
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.end(init.body);
  });
}
