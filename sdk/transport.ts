/**
 * How the SDK's HTTP clients reach the gateway: `fetch`, unless the runtime
 * installed another way. Inside a plane container (no network) the runner
 * installs one that sends each request over the unix socket to its plane,
 * which carries it to the gateway (docs/security.md).
 */

/** A `fetch` for the gateway's `/v1` routes. */
export type GatewayFetch = (url: string, init: RequestInit) => Promise<Response>;

let installed: GatewayFetch | undefined;

/** Used by the plane's runner: every request the SDK sends to a gateway goes through `transport`. */
export function installGatewayFetch(transport: GatewayFetch | undefined): void {
  installed = transport;
}

/** Sends a request to the gateway, through the installed transport or `fetch`. */
export function gatewayFetch(url: string, init: RequestInit): Promise<Response> {
  return installed ? installed(url, init) : fetch(url, init);
}
