/** The load check of named secrets (`tandem serve`, `run`, `deploy`), image build steps' secrets included. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { App } from "../app.js";
import { Image } from "../image.js";
import { Secret } from "../secret.js";
import { checkNamedSecrets, declaresNamedSecrets, localSecretValues } from "./secret-values.js";

const held = (name: string, keys: string[]) => ({ name, keys, createdAt: 0, updatedAt: 0 });

describe("the load check of named secrets", () => {
  it("names a secret an image's build step declares that the gateway lacks, or a key it lacks", () => {
    const app = new App("builds");
    const image = Image.node()
      .secrets([Secret.fromName("npm", { requiredKeys: ["NPM_TOKEN"] })])
      .runCommands("true");
    app.function({ name: "install", image }, () => 1);
    expect(declaresNamedSecrets([app])).toBe(true);
    expect(() => checkNamedSecrets([app], [])).toThrow(
      'app "builds": function "install" (its image) declares secret "npm", which the gateway does not have; make it: tandem secret create npm NPM_TOKEN=…',
    );
    expect(() => checkNamedSecrets([app], [held("npm", ["OTHER"])])).toThrow(
      'app "builds": function "install" (its image) requires key NPM_TOKEN of secret "npm"',
    );
    expect(() => checkNamedSecrets([app], [held("npm", ["NPM_TOKEN"])])).not.toThrow();
  });

  it("names the environment a deploy's --env checked, and makes the secret there", () => {
    const app = new App("shop");
    app.function({ name: "pay", secrets: [Secret.fromName("api"), Secret.fromName("stripe", { requiredKeys: ["KEY"] })] }, () => 1);
    expect(() => checkNamedSecrets([app], [held("stripe", ["OTHER"])], undefined, "main")).toThrow(
      [
        "2 secrets are missing or lack keys:",
        '  app "shop": function "pay" declares secret "api", which environment "main" does not have; make it: tandem secret create api KEY=value --env main',
        '  app "shop": function "pay" requires key KEY of secret "stripe", which has OTHER; add it: tandem secret create stripe KEY=… --force --env main (with the other keys)',
      ].join("\n"),
    );
  });

  it("names KEY=value in the command that makes a missing secret that requires no key", () => {
    const app = new App("loose");
    app.function({ name: "f", secrets: [Secret.fromName("any")] }, () => 1);
    expect(() => checkNamedSecrets([app], [])).toThrow("make it: tandem secret create any KEY=value");
  });

  it("names every missing secret at once, each with all that declare it, so one fix and one reload are enough", () => {
    const app = new App("triala-app");
    app.function({ name: "edgeSecret", secrets: [Secret.fromName("trialasec")] }, () => 1);
    app.function({ name: "planeSecret", gpu: "T4", secrets: [Secret.fromName("trialasec", { requiredKeys: ["TOKEN"] })] }, () => 1);
    app.function({ name: "other", secrets: [Secret.fromName("trialamissing"), Secret.fromName("held", { requiredKeys: ["A", "B"] })] }, () => 1);
    expect(() => checkNamedSecrets([app], [held("held", ["C"])])).toThrow(
      [
        "3 secrets are missing or lack keys:",
        '  app "triala-app": function "edgeSecret" and function "planeSecret" declare secret "trialasec", which the gateway does not have; make it: tandem secret create trialasec TOKEN=…',
        '  app "triala-app": function "other" declares secret "trialamissing", which the gateway does not have; make it: tandem secret create trialamissing KEY=value',
        '  app "triala-app": function "other" requires keys A, B of secret "held", which has C; add them: tandem secret create held A=… B=… --force (with the other keys)',
      ].join("\n"),
    );
  });

  it("asks nothing of the gateway for an app with no named secret anywhere", () => {
    const app = new App("plain");
    app.function({ name: "f", image: Image.node().runCommands("true") }, () => 1);
    expect(declaresNamedSecrets([app])).toBe(false);
  });
});

describe("local secrets read from a dotenv file", () => {
  it("refuses a file that is not UTF-8, naming the function and the file, rather than passing U+FFFD on as the value", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandem-dotenv-"));
    try {
      const app = new App("shop");
      app.function({ name: "report", secrets: [Secret.fromDotenv(".env.latin1")] }, () => 1);
      await writeFile(join(dir, ".env.latin1"), Buffer.concat([Buffer.from("DATABASE_URL=caf"), Buffer.from([0xe9]), Buffer.from("\n")]));
      expect(() => localSecretValues([app], [join(dir, "app.ts")])).toThrow(
        `app "shop": function "report": Secret.fromDotenv(".env.latin1"): ${join(dir, ".env.latin1")} is not UTF-8 text: save it as UTF-8`,
      );
      await writeFile(join(dir, ".env.latin1"), "\ufeffDATABASE_URL=café\n"); // UTF-8, with a byte-order mark
      expect(localSecretValues([app], [join(dir, "app.ts")])).toEqual({ shop: { report: [{ DATABASE_URL: "café" }] } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
