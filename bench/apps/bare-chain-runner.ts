// bench/plane-warm (f), the container's side: connects to the control socket a bare-chain.ts `front` listens on (in
// the folder mounted where a runner finds its plane's), prints one line once connected, then answers each line
// `{"n":…}` with the benchmark's work as JSON, as the plain Node baseline does, with no runner around it.
import net from "node:net";
import { IN_CONTAINER } from "../../gpu-plane/drivers/driver.js";
import { work } from "./work.js";

const socket = net.connect(IN_CONTAINER.controlSocket, () => console.log("connected"));
socket.setEncoding("utf8");
let buffered = "";
socket.on("data", (chunk: string) => {
  buffered += chunk;
  for (let end = buffered.indexOf("\n"); end >= 0; end = buffered.indexOf("\n")) {
    const { n } = JSON.parse(buffered.slice(0, end)) as { n: number };
    buffered = buffered.slice(end + 1);
    socket.write(JSON.stringify(work(n)) + "\n");
  }
});
