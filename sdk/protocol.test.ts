import { SuperJSON } from "superjson";
import { describe, expect, it } from "vitest";
import { DICT_LIMITS, PLANE_DEFAULTS } from "./defaults.js";
import {
  CALL_ID_PATTERN,
  ROUTE_METHODS,
  callIdTime,
  cutLogLine,
  ConnectTokenRequestSchema,
  LogQuerySchema,
  logQueryString,
  ROUTES,
  SINCE_FORMS,
  TokenCreateRequestSchema,
  UsageQuerySchema,
  canonicalKey,
  decodeValue,
  encodeValue,
  isValidCloseCode,
  newCallId,
  planeDropped,
  planeState,
  type PlaneHeartbeat,
} from "./protocol.js";
import { describeIssues } from "./zod-issues.js";

describe("the value codec", () => {
  it("leaves plain JSON as it is, with no meta", () => {
    const value = { a: [1, "two", null, true], b: { c: 1.5 } };
    expect(encodeValue(value)).toEqual({ json: value });
  });

  it("round-trips what JSON cannot carry", () => {
    const value = {
      bytes: new Uint8Array([0, 127, 128, 255]),
      when: new Date("2020-02-29T12:00:00Z"),
      map: new Map<unknown, unknown>([
        ["k", new Set([1, 2])],
        [3, "three"],
      ]),
      missing: undefined,
      list: [undefined, 1],
      big: 12345678901234567890n,
    };
    const { json, meta } = encodeValue(value);
    const back = decodeValue(JSON.parse(JSON.stringify(json)), JSON.parse(JSON.stringify(meta))) as typeof value;
    expect(back).toEqual(value);
    expect(back.bytes).toBeInstanceOf(Uint8Array);
    expect("missing" in back).toBe(true);
  });

  it("writes what its codec would for values at the edge of plain JSON", () => {
    const shared = { x: 1 };
    const nullProto = Object.assign(Object.create(null) as object, { a: 1 });
    const values: unknown[] = [
      "s",
      0,
      -0,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      null,
      undefined,
      true,
      [],
      [1, [2, [3]]],
      { a: undefined },
      { a: shared, b: shared }, // one object twice
      [shared, shared],
      nullProto,
      JSON.parse('{"__proto__": {"polluted": true}}'),
      { deep: JSON.parse("[".repeat(100) + "]".repeat(100)) as unknown },
      new Date(0),
    ];
    const codec = new SuperJSON();
    const outcome = (encode: () => unknown) => {
      try {
        return encode();
      } catch (err) {
        return { threw: (err as Error).message };
      }
    };
    for (const value of values) {
      const expected = outcome(() => {
        const { json, meta } = codec.serialize(value);
        return meta === undefined ? { json } : { json, meta };
      });
      expect(
        outcome(() => encodeValue(value)),
        String(JSON.stringify(value)),
      ).toEqual(expected);
    }
  });

  it("carries an array's holes as undefined, at any depth, leaving the value sent as it was", () => {
    const shared = [1, , 3]; // eslint-disable-line no-sparse-arrays -- the hole is the point
    const cyclic: Record<string, unknown> = { list: [, 2] }; // eslint-disable-line no-sparse-arrays
    cyclic.self = cyclic;
    const value = { shared, again: shared, empty: new Array(3), map: new Map([["k", [, "v"]]]), cyclic }; // eslint-disable-line no-sparse-arrays
    const { json, meta } = encodeValue(value);
    const back = decodeValue(JSON.parse(JSON.stringify(json)), JSON.parse(JSON.stringify(meta))) as typeof value;
    expect(back.shared).toEqual([1, undefined, 3]);
    expect(1 in back.shared).toBe(true);
    expect(back.again).toBe(back.shared); // one array, as sent
    expect(back.empty).toEqual([undefined, undefined, undefined]);
    expect(back.map.get("k")).toEqual([undefined, "v"]);
    expect((back.cyclic.list as unknown[]).length).toBe(2);
    expect(back.cyclic.self).toBe(back.cyclic);
    expect(1 in shared).toBe(false); // the caller's array keeps its hole
    // eslint-disable-next-line no-sparse-arrays
    expect(decodeValue(...(Object.values(encodeValue([, 1])) as [unknown, unknown]))).toEqual([undefined, 1]);
  });

  it("carries an invalid Date as an invalid Date", () => {
    const { json, meta } = encodeValue({ when: new Date(Number.NaN), ok: new Date(0) });
    const back = decodeValue(JSON.parse(JSON.stringify(json)), JSON.parse(JSON.stringify(meta))) as { when: Date; ok: Date };
    expect(back.when).toBeInstanceOf(Date);
    expect(back.when.getTime()).toBeNaN();
    expect(back.ok).toEqual(new Date(0));
    expect(Number.isNaN((decodeValue(...(Object.values(encodeValue(new Date(Number.NaN))) as [unknown, unknown])) as Date).getTime())).toBe(true);
  });

  it("carries a Buffer as a Buffer, and other bytes as a Uint8Array", () => {
    const { json, meta } = encodeValue({ buffer: Buffer.from("hi"), bytes: new Uint8Array([1, 2]) });
    expect(meta).toEqual({ values: { buffer: [["custom", "buffer"]], bytes: [["custom", "bytes"]] }, v: 1 });
    const back = decodeValue(JSON.parse(JSON.stringify(json)), meta) as { buffer: Buffer; bytes: Uint8Array };
    expect(Buffer.isBuffer(back.buffer)).toBe(true);
    expect(back.buffer.toString()).toBe("hi");
    expect(Buffer.isBuffer(back.bytes)).toBe(false);
    expect(back.bytes).toEqual(new Uint8Array([1, 2]));
  });

  it("leaves out symbol-keyed and non-enumerable properties, as it does a class instance's prototype", () => {
    const value = Object.defineProperty({ [Symbol("s")]: 1, ok: 2, when: new Date(0) }, "hidden", { value: 3, enumerable: false });
    const { json, meta } = encodeValue(value);
    expect(decodeValue(json, meta)).toEqual({ ok: 2, when: new Date(0) });
  });

  it("carries large byte arrays", () => {
    const bytes = new Uint8Array(200_000).map((_, i) => i % 256);
    const { json, meta } = encodeValue(bytes);
    expect(decodeValue(json, meta)).toEqual(bytes);
  });
});

describe("call ids", () => {
  it("are well formed, unique and ordered by time", () => {
    const a = newCallId(1_000);
    const b = newCallId(2_000);
    expect(a).toMatch(CALL_ID_PATTERN);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newCallId())).size).toBe(1000);
  });

  it("tell the time they were made", () => {
    expect(callIdTime(newCallId(1_764_748_800_123))).toBe(1_764_748_800_123);
    const before = Date.now();
    expect(callIdTime(newCallId())).toBeGreaterThanOrEqual(before);
    expect(callIdTime("fc-not-a-call-id")).toBeUndefined();
  });
});

describe("close codes", () => {
  it("are valid in a close frame only where RFC 6455 section 7.4 allows", () => {
    const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999];
    const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535];
    expect(valid.filter((c) => !isValidCloseCode(c))).toEqual([]);
    expect(invalid.filter((c) => isValidCloseCode(c))).toEqual([]);
  });
});

describe("routes", () => {
  it("say which methods each takes, for every route", () => {
    expect(Object.keys(ROUTE_METHODS).sort()).toEqual(Object.keys(ROUTES).sort());
  });
});

describe("canonicalKey", () => {
  it("writes JSON keys in one form: object keys sorted, no spaces", () => {
    expect(canonicalKey({ b: [1, { d: 2, c: 3 }], a: "x" })).toEqual({ key: '{"a":"x","b":[1,{"c":3,"d":2}]}' });
    expect(canonicalKey("a")).toEqual({ key: '"a"' });
    expect(canonicalKey(-0)).toEqual({ key: "0" });
  });

  it("refuses what JSON cannot say, and keys over the limit", () => {
    expect(canonicalKey(new Date(0))).toEqual({ problem: "must be a string or a JSON value (got a Date)" });
    expect(canonicalKey(undefined)).toEqual({ problem: "must be a string or a JSON value (got undefined)" });
    expect(canonicalKey(Number.NaN)).toEqual({ problem: "must be JSON: NaN is not a JSON number" });
    expect(canonicalKey("x".repeat(DICT_LIMITS.maxKeyBytes))).toEqual({ problem: `must be at most ${DICT_LIMITS.maxKeyBytes} bytes as JSON` });
  });
});

describe("the usage query", () => {
  it("takes ?since= as the log query does: a duration back from now, ms since the epoch, or a date", () => {
    expect(UsageQuerySchema.parse({ app: "shop", since: "1796400000000" })).toEqual({ app: "shop", since: 1796400000000 });
    const before = Date.now();
    const hourAgo = UsageQuerySchema.parse({ since: "1h" }).since!;
    expect(hourAgo).toBeGreaterThanOrEqual(before - 3600e3);
    expect(hourAgo).toBeLessThanOrEqual(Date.now() - 3600e3);
    expect(UsageQuerySchema.parse({ since: "2026-12-05T09:00:00Z" }).since).toBe(Date.parse("2026-12-05T09:00:00Z"));
  });

  it("refuses a since the log query refuses, with the same words, echoing it as it was sent", () => {
    for (const since of ["zzz", "", "1w", "99999999999d"]) {
      const usage = UsageQuerySchema.safeParse({ since }, { reportInput: true });
      const logs = LogQuerySchema.safeParse({ since }, { reportInput: true });
      expect(usage.success).toBe(false);
      expect(describeIssues(usage.error!, "field")).toBe(describeIssues(logs.error!, "field"));
    }
    const parsed = UsageQuerySchema.safeParse({ since: "zzz" }, { reportInput: true });
    expect(describeIssues(parsed.error!, "field")).toBe(`field "since" must be ${SINCE_FORMS} (got "zzz")`);
  });
});

describe("cutLogLine", () => {
  it("leaves a line of 16 KiB or less as it is", () => {
    const line = "x".repeat(16 * 1024);
    expect(cutLogLine(line)).toBe(line);
  });

  it("cuts a longer line to 16 KiB, its note included, naming the length printed", () => {
    const cut = cutLogLine("x".repeat(20_000));
    expect(cut).toHaveLength(16 * 1024);
    expect(cut.endsWith("x… (cut: 20000 characters)")).toBe(true);
  });

  it("leaves a line it cut as it is, so each hop a plane line passes keeps the first note", () => {
    const cut = cutLogLine("x".repeat(20_000));
    expect(cutLogLine(cutLogLine(cut))).toBe(cut);
  });

  it("never cuts between the halves of a surrogate pair", () => {
    const cut = cutLogLine("🚀".repeat(10_000));
    expect(cut.endsWith("🚀… (cut: 20000 characters)")).toBe(true);
    expect(cut.length).toBeLessThanOrEqual(16 * 1024);
  });
});

describe("the log query", () => {
  const say = (query: Record<string, string>) => describeIssues(LogQuerySchema.safeParse(query, { reportInput: true }).error!, "field");

  it("takes ?limit= as a whole number from 1 to 10000", () => {
    expect(LogQuerySchema.parse({ limit: "1" })).toEqual({ limit: 1 });
    expect(LogQuerySchema.parse({ limit: "10000" })).toEqual({ limit: 10000 });
  });

  it("echoes a limit it refuses as it was sent, not as the number it made of it", () => {
    for (const limit of ["abc", "", " 100", "1e3", "0x10", "1.5", "-3"]) {
      expect(say({ limit }), limit).toBe(`field "limit" must be a whole number from 1 to 10000 (got ${JSON.stringify(limit)})`);
    }
    expect(say({ limit: "0" })).toBe('field "limit" must be a whole number from 1 to 10000 (got 0)');
    expect(say({ limit: "10001" })).toBe('field "limit" must be a whole number from 1 to 10000 (got 10001)');
  });

  it("refuses a since outside 1970 to a day from now, saying so, and takes one within it", () => {
    const huge = "9".repeat(400);
    for (const since of [
      "99999999999d",
      `${huge}d`,
      `${huge}s`,
      "99999999999999999999",
      huge,
      "8640000000000001",
      "-000001-01-01",
      "+275760-09-13",
      "2300-01-01",
    ]) {
      expect(say({ since }), since).toBe(
        `field "since" must be a time from 1970-01-01T00:00:00Z to a day from now (got ${JSON.stringify(since).slice(0, 80)}${since.length > 78 ? "…" : ""})`,
      );
    }
    const now = Date.now();
    for (const since of ["0", "30d", "20000d", "0s", "1970-01-01T00:00:00Z", new Date(now + 3_600_000).toISOString()]) {
      expect(LogQuerySchema.safeParse({ since }).success, since).toBe(true);
    }
  });

  it("is sent with a date without a zone as the time it names where it is written, a duration as written", () => {
    const zone = process.env.TZ;
    process.env.TZ = "America/New_York";
    try {
      expect(logQueryString({ since: "2026-12-05 09:00" })).toBe(`?since=${Date.UTC(2026, 11, 5, 14, 0)}`);
      expect(logQueryString({ since: "2h", limit: 5 })).toBe("?since=2h&limit=5");
      expect(logQueryString({ since: 1796431424014 })).toBe("?since=1796431424014");
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  it("takes follow as 1 or true, 0 or false, and says so of another value", () => {
    for (const [follow, on] of [
      ["1", true],
      ["true", true],
      ["0", false],
      ["false", false],
    ] as const) {
      expect(LogQuerySchema.parse({ follow }), follow).toEqual({ follow: on });
    }
    for (const follow of ["yes", "TRUE", "", "2"])
      expect(say({ follow }), follow).toBe(`field "follow" must be 1 or true, 0 or false (got ${JSON.stringify(follow)})`);
  });

  it("says what an empty filter must be, in its own words", () => {
    expect(say({ function: "" })).toBe('field "function" must be a function name (got "")');
    expect(say({ container: "" })).toBe('field "container" must be a container id (got "")');
    expect(say({ search: "" })).toBe('field "search" must be 1 to 256 characters (got "")');
  });
});

describe("the token requests", () => {
  it("say what each field must be when it has the wrong type, in the words of its other checks", () => {
    const say = (schema: typeof TokenCreateRequestSchema | typeof ConnectTokenRequestSchema, body: unknown) =>
      describeIssues(schema.safeParse(body, { reportInput: true }).error!, "field");
    expect(say(TokenCreateRequestSchema, { name: 5, apps: [5], env: 5 })).toBe(
      [
        'field "name" must be a string (got 5)',
        'field "apps.0" must be app names (got 5)',
        "field \"env\" must be an environment name: lowercase letters, digits and '-', up to 32 (got 5)",
      ].join("; "),
    );
    expect(say(ConnectTokenRequestSchema, { label: 5, ttlSeconds: "x" })).toBe(
      'field "label" must be a label (got 5); field "ttlSeconds" must be a number of seconds, 10 to 3600 (got "x")',
    );
  });
});

describe("a plane's state in the gateway's list", () => {
  const heartbeat: PlaneHeartbeat = {
    planeId: "pl-0123456789ab",
    url: "http://127.0.0.1:8790",
    region: "local",
    runtime: "process",
    simulated: true,
    gpus: {},
    cpu: { total: 4, free: 4 },
    memoryMiB: { total: 4096, free: 4096 },
    protocol: "1",
  };
  const now = Date.now();

  it("is stopped once it said so, however lately it reported; stale once silent for staleMs; else as it reports", () => {
    expect(planeState({ ...heartbeat, stopped: true }, now, now)).toBe("stopped");
    expect(planeState({ ...heartbeat, draining: true }, now - PLANE_DEFAULTS.staleMs, now)).toBe("stale");
    expect(planeState({ ...heartbeat, draining: true }, now, now)).toBe("draining");
    expect(planeState({ ...heartbeat, unavailable: "no Docker engine" }, now, now)).toBe("unavailable");
    expect(planeState(heartbeat, now - PLANE_DEFAULTS.staleMs + 1, now)).toBe("healthy");
  });

  it("is dropped stoppedDropMs after it said it stopped, and staleDropMs after it went silent without a word", () => {
    const stopped = { ...heartbeat, stopped: true as const };
    expect(planeDropped(stopped, now - PLANE_DEFAULTS.stoppedDropMs, now)).toBe(false);
    expect(planeDropped(stopped, now - PLANE_DEFAULTS.stoppedDropMs - 1, now)).toBe(true);
    expect(planeDropped(heartbeat, now - PLANE_DEFAULTS.stoppedDropMs - 1, now)).toBe(false);
    expect(planeDropped(heartbeat, now - PLANE_DEFAULTS.staleDropMs - 1, now)).toBe(true);
  });
});
