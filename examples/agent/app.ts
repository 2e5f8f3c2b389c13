// examples/agent: a chat-style WebSocket agent at the edge.
//   npx tandem serve examples/agent/app.ts
//   open http://127.0.0.1:8787/agent/ui
//
// The edge holds each conversation (the session's state, kept through
// hibernation, restarts and reconnects). Each user message calls `generate` on a
// GPU plane, a generator, and its tokens go out over the socket one by one as
// it yields them. `generate` here is a small stand-in that phrases a reply word by
// word; examples/inference shows a real model on a GPU function.
import { App } from "tandem";
import { PAGE } from "./page.js";

const app = new App("agent");

export const generate = app.function({ gpu: "T4", cpu: 0.5, memory: 256 }, async function* (prompt: string, turn: number) {
  const words = prompt.trim().split(/\s+/).slice(0, 12);
  const reply = `You said "${words.join(" ")}". That is message ${turn} of our conversation, and ${words.length} word${words.length === 1 ? "" : "s"} long.`;
  for (const token of reply.split(/(?<= )/)) {
    await new Promise((r) => setTimeout(r, 40)); // a model takes a while per token
    yield token;
  }
});

interface Conversation {
  history: { role: "user" | "assistant"; text: string }[];
}

app.websocket<Conversation>(
  "chat",
  {
    initialState: () => ({ history: [] }),
    onOpen(ctx, { resumed }) {
      ctx.send(JSON.stringify({ type: "hello", sessionId: ctx.sessionId, resumed, history: ctx.state.history }));
    },
    async onMessage(ctx, message) {
      const text = (typeof message === "string" ? message : new TextDecoder().decode(message)).trim();
      if (!text) return;
      ctx.state.history.push({ role: "user", text });
      const turn = ctx.state.history.filter((m) => m.role === "user").length;
      let reply = "";
      for await (const token of generate.remoteGen(text, turn)) {
        reply += token;
        ctx.send(JSON.stringify({ type: "token", token }));
      }
      ctx.state.history.push({ role: "assistant", text: reply });
      ctx.send(JSON.stringify({ type: "done", text: reply }));
    },
  },
  { maxMessageBytes: 4096, maxMessagesPerSecond: 5 },
);

// The page that talks to it: GET /agent/ui
export const ui = app.endpoint({ method: "GET", path: "/" }, (c) => c.html(PAGE));

export default app;
