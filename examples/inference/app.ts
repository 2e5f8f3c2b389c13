// examples/inference: model inference on a GPU function, behind a web endpoint.
//   tandem serve examples/inference/app.ts
//   curl -X POST http://127.0.0.1:8787/inference/generate -d '{"prompt":"The ","maxTokens":30}'
//
// The model is a tiny character-level bigram model in ONNX, made by
// make-model.mjs and imported as data (model-data.ts) so that it travels inside
// the function's bundle. It runs with onnxruntime-node: on CUDA when the
// container has a GPU and the CUDA provider loads, else on the CPU.
//
// Its weights are cached in a volume mounted at /models, the way a real model's
// would be: the first container writes them there and commits; every container
// after it reads them from local disk (docs/volumes.md). Here "downloading" is
// decoding the bundled bytes; a real model would be fetched once from its hub.
import type { InferenceSession as Session } from "onnxruntime-node";
import { App, Volume } from "tandem";
import { MODEL_BASE64, VOCAB } from "./model-data.js";

const app = new App("inference");
const models = Volume.fromName("inference-models", { createIfMissing: true });
const WEIGHTS = "/models/bigram.onnx";

const MAX_TOKENS = 200;
const TEMPERATURE = 0.5;

interface Model {
  session: Session;
  ort: typeof import("onnxruntime-node");
}

/** Loaded once per container, at the first call, and shared by every call after it. */
let model: Promise<Model> | undefined;

async function loadModel(): Promise<Model> {
  // Imported here, not at the top: this file is loaded at the edge too, where there are no native modules.
  const ort = await import("onnxruntime-node");
  const { existsSync } = await import("node:fs");
  const bytes = await weights();
  const hasGpu = Boolean(process.env.CUDA_VISIBLE_DEVICES) && existsSync("/dev/nvidia0");
  if (hasGpu) {
    try {
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ["cuda", "cpu"] });
      console.log("model loaded on cuda");
      return { session, ort };
    } catch (err) {
      console.log(`cuda provider unavailable (${(err as Error).message.split("\n")[0]}); falling back to cpu`);
    }
  }
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["cpu"] });
  console.log("model loaded on cpu");
  return { session, ort };
}

/** The model's bytes from the volume; the first container to need them puts them there and commits. */
async function weights(): Promise<Uint8Array> {
  const { readFile, writeFile } = await import("node:fs/promises");
  const cached = await readFile(WEIGHTS).catch(() => undefined);
  if (cached) {
    console.log("weights read from the volume");
    return new Uint8Array(cached);
  }
  const bytes = new Uint8Array(Buffer.from(MODEL_BASE64, "base64")); // a real model: fetched from its hub, once
  await writeFile(WEIGHTS, bytes);
  console.log(`weights cached in the volume (version ${await models.commit()})`);
  return bytes;
}

/** mulberry32: a small seeded PRNG, so the same prompt always gives the same completion. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of the prompt: the sampler's seed. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Draws an index from a probability vector, sharpened by `temperature` (below
 * 1 favours likely characters; a bigram table learned from one paragraph is
 * flat enough to need it).
 */
function sample(probs: Float32Array, temperature: number, random: () => number): number {
  const weights = Array.from(probs, (p) => p ** (1 / temperature));
  let r = random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i];
    if (r < 0) return i;
  }
  return weights.length - 1; // rounding left a sliver over
}

/**
 * Continues `prompt` by `maxTokens` characters, sampled from the bigram model
 * at `TEMPERATURE` with a seed taken from the prompt; returns both together.
 */
export const generate = app.function(
  { gpu: "T4", timeout: 60, memory: 1024, volumes: { "/models": models } },
  async (prompt: string, maxTokens: number = 40) => {
    const { session, ort } = await (model ??= loadModel().catch((err: unknown) => {
      model = undefined; // let the next call try again
      throw err;
    }));
    const known = [...prompt].reverse().find((ch) => VOCAB.includes(ch));
    let token = VOCAB.indexOf(known ?? (VOCAB.includes(" ") ? " " : VOCAB[0]));
    const random = seededRandom(hashString(prompt));
    let completion = "";
    for (let i = 0; i < maxTokens; i++) {
      const feeds = { token: new ort.Tensor("int64", BigInt64Array.of(BigInt(token)), [1]) };
      const { probs } = await session.run(feeds);
      token = sample(probs.data as Float32Array, TEMPERATURE, random);
      completion += VOCAB[token];
    }
    return prompt + completion;
  },
);

/** POST /inference/generate with `{ "prompt": "...", "maxTokens": 40 }`. */
export const api = app.endpoint({ method: "POST", path: "/", label: "generate" }, async (c) => {
  const body: unknown = await c.req.json().catch(() => undefined);
  const { prompt, maxTokens = 40 } = (typeof body === "object" && body !== null ? body : {}) as { prompt?: unknown; maxTokens?: unknown };
  if (typeof prompt !== "string") return c.json({ error: 'body must be JSON with a string "prompt"' }, 400);
  if (typeof maxTokens !== "number" || !Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > MAX_TOKENS) {
    return c.json({ error: `"maxTokens" must be a whole number from 1 to ${MAX_TOKENS}` }, 400);
  }
  return { completion: await generate.remote(prompt, maxTokens) };
});

export default app;
