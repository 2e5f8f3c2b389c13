// bench/ws-agent: a Tandem WebSocket agent that echoes every frame.
import { App } from "tandem";

const app = new App("wsbench");
app.websocket("echo", { onMessage: (ctx, message) => ctx.send(message) }, { maxMessagesPerSecond: 10_000 });
export default app;
