/** What `tandem deploy` sends of the apps' local secrets: the gateway's own setting, read back as serve's is. */
import { describe, expect, it } from "vitest";
import { App } from "../app.js";
import { Secret } from "../secret.js";
import { parseGatewaySettings } from "../settings.js";
import { deployedLocalSecrets } from "./deploy.js";

const VALUE = "dict-5c1e-secret-value";

function appWith(secrets: Secret[]): App {
  const app = new App("vault");
  app.function({ name: "local", secrets: [Secret.fromName("api"), ...secrets] }, () => process.env.LOCAL);
  app.function({ name: "plain" }, () => 1);
  return app;
}

describe("tandem deploy's local secrets", () => {
  it("are the TANDEM_LOCAL_SECRETS the gateway parses, as the only entry of wrangler's secrets file, named without values", () => {
    const sent = deployedLocalSecrets([appWith([Secret.fromDict({ LOCAL: VALUE, OTHER: "o-1234" })])], ["app.ts"])!;
    expect(JSON.parse(sent.file)).toEqual({ TANDEM_LOCAL_SECRETS: sent.value });
    expect(parseGatewaySettings({ TANDEM_LOCAL_SECRETS: sent.value }).localSecrets).toEqual({
      vault: { local: [null, { LOCAL: VALUE, OTHER: "o-1234" }] },
    });
    expect(sent.summary).toBe("local secrets of vault.local (LOCAL, OTHER)");
    expect(sent.summary).not.toContain(VALUE);
  });

  it("name a web endpoint's and an agent's as what they are (before: vault.web/hook)", () => {
    const app = appWith([Secret.fromDict({ LOCAL: VALUE })]);
    app.endpoint({ label: "hook", secrets: [Secret.fromDict({ HOOK_KEY: "h-1234" })] }, () => "ok");
    app.websocket("chat", { onMessage: () => {} }, { secrets: [Secret.fromDict({ CHAT_KEY: "c-1234" })] });
    expect(deployedLocalSecrets([app], ["app.ts"])!.summary).toBe(
      'local secrets of vault.local (LOCAL), vault\'s endpoint "hook" (HOOK_KEY), vault\'s websocket "chat" (CHAT_KEY)',
    );
  });

  it("are nothing for apps with none, and refused, saying what to do, past what a Worker secret holds", () => {
    expect(deployedLocalSecrets([appWith([])], ["app.ts"])).toBeUndefined();
    expect(() => deployedLocalSecrets([appWith([Secret.fromDict({ BIG: "x".repeat(6000) })])], ["app.ts"])).toThrow(
      /the apps' local secrets are \d+ bytes as JSON, over the 5120 a Worker secret holds: store the larger ones with tandem secret create/,
    );
  });
});
