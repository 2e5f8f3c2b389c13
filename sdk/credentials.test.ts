import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { findToken, localGatewayUrl, refusedTokenHint, saveToken, tokenFor } from "./credentials.js";
import { gatewayUnreachable, resolveGatewayUrl } from "./client.js";

const A = "tk-aaaaaaaaaaaaaaaa.ts-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B = "tk-bbbbbbbbbbbbbbbb.ts-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const LOCAL = "tk-cccccccccccccccc.ts-cccccccccccccccccccccccccccccccc";

describe("which token a client sends", () => {
  let dir: string;
  let saved: { token?: string; profile?: string; cwd: string };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tandem-credentials-"));
    saved = { token: process.env.TANDEM_TOKEN, profile: process.env.TANDEM_PROFILE, cwd: process.cwd() };
    delete process.env.TANDEM_TOKEN;
    process.env.TANDEM_PROFILE = join(dir, "profile.toml");
    mkdirSync(join(dir, ".tandem"));
    writeFileSync(join(dir, ".tandem", "token"), LOCAL + "\n");
    process.chdir(dir);
  });
  afterEach(() => {
    process.chdir(saved.cwd);
    if (saved.token === undefined) delete process.env.TANDEM_TOKEN;
    else process.env.TANDEM_TOKEN = saved.token;
    if (saved.profile === undefined) delete process.env.TANDEM_PROFILE;
    else process.env.TANDEM_PROFILE = saved.profile;
    rmSync(dir, { recursive: true, force: true });
  });

  it("finds the gateway a serve in this folder says it serves, while its process lives", () => {
    const say = (pid: number) => writeFileSync(join(dir, ".tandem", "gateway.json"), JSON.stringify({ url: "http://127.0.0.1:19555", pid }));
    say(process.pid);
    expect(localGatewayUrl()).toBe("http://127.0.0.1:19555");
    const gatewayVar = process.env.TANDEM_GATEWAY;
    delete process.env.TANDEM_GATEWAY;
    try {
      expect(resolveGatewayUrl()).toBe("http://127.0.0.1:19555");
      expect(resolveGatewayUrl("http://127.0.0.1:1")).toBe("http://127.0.0.1:1"); // the option first
    } finally {
      if (gatewayVar !== undefined) process.env.TANDEM_GATEWAY = gatewayVar;
    }
  });

  it("in a browser, goes to the page's own origin, and says a fetch that failed across origins may be the browser's CORS", () => {
    // Before: 127.0.0.1:8787 from a page served on :9510, and "is tandem serve running?" of a gateway that was.
    const page = globalThis as { document?: unknown; location?: unknown };
    const gatewayVar = process.env.TANDEM_GATEWAY;
    delete process.env.TANDEM_GATEWAY;
    page.document = {};
    page.location = { origin: "http://127.0.0.1:9510" };
    try {
      expect(resolveGatewayUrl()).toBe("http://127.0.0.1:9510");
      const failed = new TypeError("Failed to fetch");
      expect(gatewayUnreachable("http://127.0.0.1:9999", failed).message).toMatch(
        /^could not reach the Tandem gateway at http:\/\/127\.0\.0\.1:9999 from this page \(Failed to fetch\): either it is not running, or the browser kept its answer from this page's origin \(http:\/\/127\.0\.0\.1:9510\)/,
      );
      expect(gatewayUnreachable("http://127.0.0.1:9510", failed).message).toMatch(/is `tandem serve` running\?/);
    } finally {
      delete page.document;
      delete page.location;
      if (gatewayVar !== undefined) process.env.TANDEM_GATEWAY = gatewayVar;
    }
  });

  it("does not take the word of a serve that is gone (killed before it could remove its file)", () => {
    const gone = spawnSync(process.execPath, ["-e", ""]).pid!;
    writeFileSync(join(dir, ".tandem", "gateway.json"), JSON.stringify({ url: "http://127.0.0.1:19555", pid: gone }));
    expect(localGatewayUrl()).toBeUndefined();
  });

  it("sends the local admin token to a gateway on this machine only", () => {
    expect(tokenFor("http://127.0.0.1:8787")).toBe(LOCAL);
    expect(tokenFor("http://localhost:9000")).toBe(LOCAL);
    expect(tokenFor("https://tandem.example.com")).toBeUndefined();
  });

  it("prefers the profile's token for that gateway, then TANDEM_TOKEN, then the option", () => {
    const file = saveToken("https://tandem.example.com/", A, "laptop");
    expect(file).toBe(join(dir, "profile.toml"));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8")).toContain('[gateways."https://tandem.example.com"]');
    expect(tokenFor("https://tandem.example.com")).toBe(A);
    saveToken("http://127.0.0.1:8787", B, "local");
    expect(tokenFor("http://127.0.0.1:8787")).toBe(B); // the profile's, over .tandem/token
    expect(tokenFor("https://tandem.example.com")).toBe(A); // saving another gateway's kept this one
    process.env.TANDEM_TOKEN = B;
    expect(tokenFor("https://tandem.example.com")).toBe(B);
    expect(tokenFor("https://tandem.example.com", A)).toBe(A);
  });

  it("says which saved token a gateway refused, and names this folder's admin token only where there is one", () => {
    saveToken("http://127.0.0.1:8787", B, "laptop");
    const found = findToken("http://127.0.0.1:8787");
    const profile = join(dir, "profile.toml");
    expect(refusedTokenHint(found, "http://127.0.0.1:8787")).toBe(
      `; the token sent is the one saved for http://127.0.0.1:8787 in ${profile}, which comes before this folder's .tandem/token: send another with --token or TANDEM_TOKEN (this folder's admin token: TANDEM_TOKEN=$(cat .tandem/token))`,
    );
    rmSync(join(dir, ".tandem"), { recursive: true });
    expect(refusedTokenHint(found, "http://127.0.0.1:8787")).toBe(
      `; the token sent is the one saved for http://127.0.0.1:8787 in ${profile}: send another with --token or TANDEM_TOKEN`,
    );
    expect(refusedTokenHint({ token: B, source: "TANDEM_TOKEN" }, "http://127.0.0.1:8787")).toBe("");
    // Before: nothing, so "token tk-… is not known to this gateway" from another serve's gateway named no file.
    expect(refusedTokenHint({ token: B, source: "local", file: ".tandem/token" }, "http://127.0.0.1:9551")).toBe(
      "; the token sent is this folder's .tandem/token, the admin token of the tandem serve started here: a gateway started elsewhere has its own (in its folder's .tandem/token): send it with --token (the SDK's token option) or TANDEM_TOKEN",
    );
  });

  it("names where a token that is not a token came from", () => {
    process.env.TANDEM_TOKEN = "hunter2";
    expect(() => tokenFor("http://127.0.0.1:8787")).toThrow("TANDEM_TOKEN does not hold a Tandem token");
    process.env.TANDEM_TOKEN = "ct-eyJhIjoiZWRnZSJ9.c2lnbmF0dXJl";
    expect(() => tokenFor("http://127.0.0.1:8787")).toThrow(
      "TANDEM_TOKEN holds a connect token (ct-…), which opens only a web endpoint or agent that asks for a token, as ?token=",
    );
    delete process.env.TANDEM_TOKEN;
    writeFileSync(join(dir, "profile.toml"), "gateways = [");
    expect(() => tokenFor("http://127.0.0.1:8787")).toThrow("is not valid TOML");
  });

  it("refuses a token option or a profile entry that is not a string as not a token, not with a TypeError", () => {
    expect(() => tokenFor("http://127.0.0.1:8787", 42 as unknown as string)).toThrow(
      expect.objectContaining({ code: "invalid_options", message: expect.stringContaining("the token option does not hold a Tandem token") }),
    );
    writeFileSync(join(dir, "profile.toml"), '[gateways."http://127.0.0.1:8787"]\ntoken = 42\n');
    expect(() => tokenFor("http://127.0.0.1:8787")).toThrow(expect.objectContaining({ code: "invalid_options" }));
  });
});
