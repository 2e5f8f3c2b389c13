// The baseline of bench/ws-agent: a bare Durable Object echo with the WebSocket Hibernation API, no Tandem.
import { DurableObject } from "cloudflare:workers";

interface Env {
  ECHO: DurableObjectNamespace<EchoHub>;
}

export class EchoHub extends DurableObject<Env> {
  override async fetch(): Promise<Response> {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    ws.send(message);
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    ws.close(code === 1005 ? 1000 : code, reason);
  }
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return env.ECHO.get(env.ECHO.idFromName("echo")).fetch(request);
  },
};
