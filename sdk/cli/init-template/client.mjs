// Calls my-app from another program, as any Node process can: `npx tandem serve` in one terminal, then
// `node client.mjs` in this folder. The gateway is TANDEM_GATEWAY, else the `tandem serve` running in this folder
// (whatever its --port), else http://127.0.0.1:8787; the token is TANDEM_TOKEN, else the one `tandem serve` keeps in
// .tandem/token (sent only to a gateway on this machine).
import { lookup, resolveGatewayUrl } from "tandem";

const gateway = resolveGatewayUrl(); // the gateway lookup() calls, for the plain HTTP request below

console.log(await lookup("my-app", "greet").remote("Ada")); // the edge function
console.log(await lookup("my-app", "countNumbers").remote(["1", "2.5", "x"])); // the plane function, called the same way

const res = await fetch(`${gateway}/my-app/hello/Ada`); // the web endpoint: plain HTTP, no token
console.log(res.status, await res.text());
