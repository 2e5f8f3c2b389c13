import { describe, expect, it } from "vitest";
import { connect } from "./agent-client.js";
import { InvalidOptionsError } from "./errors.js";

const gateway = "http://127.0.0.1:9";

describe("connect", () => {
  it("refuses an app or label that is not a name before it makes a URL, so no token goes to another host", () => {
    // An empty app made the path `//attacker.example`: a URL of that host, sent the gateway's token.
    expect(() => connect("", "attacker.example", { gateway, reconnect: false })).toThrow(InvalidOptionsError);
    expect(() => connect("", "attacker.example", { gateway, reconnect: false })).toThrow('connect: app name "" is not a valid name');
    expect(() => connect("", "", { gateway, reconnect: false })).toThrow(InvalidOptionsError);
    expect(() => connect(null as unknown as string, "chat", { gateway, reconnect: false })).toThrow("connect: app name null is not a valid name");
    expect(() => connect("..", "chat", { gateway, reconnect: false })).toThrow(InvalidOptionsError);
    expect(() => connect("shop", "a/b", { gateway, reconnect: false })).toThrow('connect: label "a/b" is not a valid name');
  });

  it("connects to the agent's path on the gateway it was given", () => {
    const socket = connect("shop", "chat", { gateway, reconnect: false, sessionId: "session-0001" });
    try {
      expect(socket.url).toBe("ws://127.0.0.1:9/shop/chat?session=session-0001");
    } finally {
      socket.close();
    }
  });
});
