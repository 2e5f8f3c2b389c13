// examples/cron: scheduled functions, fired from the edge.
//   npx tandem serve examples/cron/app.ts
//   npx tandem schedule list cron                       # next runs, last outcome
//   npx tandem schedule trigger cron::refreshModelCache  # one run now
//
// `heartbeat` runs at the edge every five minutes; `refreshModelCache` runs once a day
// in a plane container: it rebuilds the inference example's model files in the
// container's cache folder and checks them, as a nightly refresh would.
import { App, Cron, Period, currentCall } from "tandem";
import { MODEL_BASE64, VOCAB } from "../inference/model-data.js";

const app = new App("cron");

export const heartbeat = app.function({ schedule: Cron("*/5 * * * *") }, () => {
  const at = new Date().toISOString();
  console.log(`heartbeat at ${at}`);
  return { ok: true, at };
});

export const refreshModelCache = app.function({ schedule: Period({ days: 1 }), cpu: 1, memory: 512, timeout: 300, retries: 2 }, async () => {
  // Imported here: this file loads at the edge too, where there is no file system.
  const { createHash } = await import("node:crypto");
  const { mkdir, writeFile, readFile } = await import("node:fs/promises");
  const dir = "/tmp/model-cache";
  await mkdir(dir, { recursive: true });
  await writeFile(`${dir}/model.onnx`, Buffer.from(MODEL_BASE64, "base64"));
  await writeFile(`${dir}/vocab.json`, JSON.stringify(VOCAB));
  const model = await readFile(`${dir}/model.onnx`);
  const sha256 = createHash("sha256").update(model).digest("hex");
  console.log(`model cache refreshed in ${dir}: ${model.length} bytes, sha256 ${sha256.slice(0, 12)}…, ${VOCAB.length} tokens (call ${currentCall()?.callId})`);
  return { bytes: model.length, sha256, tokens: VOCAB.length };
});

export default app;
