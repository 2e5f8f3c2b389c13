// The chat page examples/agent serves at /agent/ui: plain HTML and a browser WebSocket. The session id is kept in
// localStorage, so a reload (or a dropped connection) resumes the same conversation.
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tandem agent</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log p { margin: .4rem 0; } .user { color: #555; } .assistant { color: #05a; }
  form { display: flex; gap: .5rem; } input { flex: 1; font: inherit; padding: .3rem; }
  #status { color: #888; font-size: .85rem; }
</style>
</head>
<body>
<h1>Chat</h1>
<div id="status" data-state="connecting">connecting…</div>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something" maxlength="2000"><button>Send</button></form>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
const form = document.getElementById("form");
const input = document.getElementById("text");
const session = localStorage.getItem("tandem-agent-session") || crypto.randomUUID();
localStorage.setItem("tandem-agent-session", session);
let socket, current, retries = 0;

function line(role, text) {
  const p = document.createElement("p");
  p.className = role;
  p.textContent = text;
  log.append(p);
  return p;
}
function setState(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}
function open() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/agent/chat?session=" + session;
  socket = new WebSocket(url);
  socket.onopen = () => { retries = 0; setState("idle", "connected, session " + session.slice(0, 8)); };
  socket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "hello") { log.textContent = ""; for (const h of m.history) line(h.role, h.text); }
    if (m.type === "token") { current = current || line("assistant", ""); current.textContent += m.token; setState("streaming", "answering…"); }
    if (m.type === "done") { current = undefined; setState("idle", "connected, session " + session.slice(0, 8)); }
  };
  socket.onclose = (event) => {
    setState("connecting", "disconnected (" + event.code + "), reconnecting…");
    setTimeout(open, Math.min(10000, 250 * 2 ** retries++));
  };
}
form.onsubmit = (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || socket.readyState !== WebSocket.OPEN) return;
  line("user", text);
  socket.send(text);
  input.value = "";
};
open();
</script>
</body>
</html>
`;
