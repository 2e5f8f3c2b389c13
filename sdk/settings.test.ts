import { describe, expect, it } from "vitest";
import { InvalidOptionsError } from "./errors.js";
import { parseGatewaySettings, parseOtlpSettings } from "./settings.js";

describe("parseOtlpSettings", () => {
  it("reads the endpoint without its trailing slash, and headers as OTEL_EXPORTER_OTLP_HEADERS writes them", () => {
    expect(
      parseOtlpSettings({ TANDEM_OTLP_ENDPOINT: "http://127.0.0.1:4318/", TANDEM_OTLP_HEADERS: "Authorization=Bearer%20abc, x-scope = team-a ,x-eq=a%3Db" }),
    ).toEqual({
      endpoint: "http://127.0.0.1:4318",
      headers: { authorization: "Bearer abc", "x-scope": "team-a", "x-eq": "a=b" },
    });
    expect(parseOtlpSettings({ TANDEM_OTLP_ENDPOINT: "https://otel.example.com/otlp" })).toEqual({ endpoint: "https://otel.example.com/otlp", headers: {} });
    expect(parseOtlpSettings({})).toBeUndefined();
  });

  it("refuses a malformed endpoint or header, naming the setting", () => {
    const bad = (vars: Record<string, string>) => () => parseOtlpSettings(vars);
    expect(bad({ TANDEM_OTLP_ENDPOINT: "127.0.0.1:4318" })).toThrow(/TANDEM_OTLP_ENDPOINT must be an http\(s\) URL/);
    expect(bad({ TANDEM_OTLP_ENDPOINT: "grpc://collector:4317" })).toThrow(InvalidOptionsError);
    expect(bad({ TANDEM_OTLP_ENDPOINT: "http://c:4318", TANDEM_OTLP_HEADERS: "novalue" })).toThrow(
      /TANDEM_OTLP_HEADERS must be key=value pairs .* "novalue" is not one/,
    );
    expect(bad({ TANDEM_OTLP_ENDPOINT: "http://c:4318", TANDEM_OTLP_HEADERS: "k=%E0%A4%A" })).toThrow(/TANDEM_OTLP_HEADERS/);
    expect(bad({ TANDEM_OTLP_HEADERS: "k=v" })).toThrow(/without TANDEM_OTLP_ENDPOINT/);
  });

  it("refuses a signal's own URL, which would get the signal's path twice, naming the base URL to set", () => {
    const bad = (endpoint: string) => () => parseOtlpSettings({ TANDEM_OTLP_ENDPOINT: endpoint });
    expect(bad("http://127.0.0.1:4318/v1/logs")).toThrow(/base URL.*set it to http:\/\/127\.0\.0\.1:4318, not "http:\/\/127\.0\.0\.1:4318\/v1\/logs"/);
    expect(bad("https://otel.example.com/otlp/v1/metrics/")).toThrow(/set it to https:\/\/otel\.example\.com\/otlp, not/);
    expect(bad("http://c:4318/?tenant=a")).toThrow(/set it to http:\/\/c:4318, not/);
    expect(parseOtlpSettings({ TANDEM_OTLP_ENDPOINT: "http://c:4318/v1" })).toEqual({ endpoint: "http://c:4318/v1", headers: {} });
  });
});

describe("a gateway's OTLP settings", () => {
  it("are read with its other TANDEM_* variables, and absent without an endpoint", () => {
    expect(parseGatewaySettings({ TANDEM_OTLP_ENDPOINT: "http://127.0.0.1:4318", TANDEM_OTLP_HEADERS: "k=v" }).otlp).toEqual({
      endpoint: "http://127.0.0.1:4318",
      headers: { k: "v" },
    });
    expect(parseGatewaySettings({}).otlp).toBeUndefined();
    expect(() => parseGatewaySettings({ TANDEM_OTLP_ENDPOINT: "nope" })).toThrow(/TANDEM_OTLP_ENDPOINT/);
  });
});
