/** Loopback ports for what a test or benchmark starts itself (a bare container on the host's network, a serve). */
import { createServer, type AddressInfo } from "node:net";

/**
 * A loopback port nothing listens on now, as the system picks one.
 * @example const port = await freePort(); // then listen on 127.0.0.1:port
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
