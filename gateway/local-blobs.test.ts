import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { describe, expect, it } from "vitest";
import { TandemError } from "../sdk/errors.js";
import { localBlobRoutes } from "./local-blobs.js";
import type { Env, RouteEnv } from "./env.js";

describe("localBlobRoutes", () => {
  it("is not there on a gateway without LOCAL_BLOBS_KEY (a deployed one)", async () => {
    const put: string[] = [];
    const env = { BLOBS: { put: async (key: string) => void put.push(key) } } as unknown as Env;
    // Errors answered as the gateway's router answers them (gateway/worker.ts).
    const router = new Hono<RouteEnv>().route("/", localBlobRoutes());
    router.onError((err, c) => c.json({ code: (err as TandemError).code }, (err as TandemError).status as ContentfulStatusCode));
    const res = await router.request(`/_local/blobs/bundles/${"ab".repeat(32)}.mjs`, { method: "PUT", body: "x", headers: { authorization: "Bearer " } }, env);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: "not_found" });
    expect(put).toEqual([]);
  });
});
