/** Images built on the plane (real Docker): every step kind, and a failing step. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageBuildError, lookup } from "../sdk/index.js";
import { startTestStack, type TestStack } from "./helpers/stack.js";

let stack: TestStack;
beforeAll(async () => {
  stack = await startTestStack(new URL("./fixtures/image-app.ts", import.meta.url).pathname);
});
afterAll(async () => {
  await stack?.dispose();
});

describe("images", () => {
  it("runs a function on its image: apt and npm packages, env, workdir, local files, a build command", async () => {
    const out = await lookup("images", "inspect", { gateway: stack.url }).remote();
    expect(out).toEqual({
      greeting: "hi from the image",
      token: 'p$HOME "q" \\ ${X}z', // as written (before: "p \"q\" \\ z", its $HOME and ${X} expanded to nothing)
      cwd: "/srv",
      files: ["a.txt", "b.txt"],
      built: "first file",
      hello: "Hello, world!",
      isNumber: true,
    });
  });

  it("names the failing build step and shows its log tail", async () => {
    const err = await lookup("images", "badBuild", { gateway: stack.url })
      .remote()
      .catch((e) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    // Its second step as written (runCommands), though it is the fifth instruction Docker runs.
    expect(err.message).toMatch(
      /failed to build at step 2 \(run\), at RUN \["\/bin\/sh", "-c", "exit 3"\]: The command '\/bin\/sh -c exit 3' returned a non-zero code: 3/,
    );
    expect(err.details.step).toBe(2);
    expect(err.message).toContain("about to fail");
  });
});
