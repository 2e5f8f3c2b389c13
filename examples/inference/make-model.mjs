// examples/inference: writes the tiny model the app serves, with no dependencies.
//   node examples/inference/make-model.mjs
//
// A character-level bigram language model, learned by counting the character
// pairs of the corpus below (add-one smoothing, log-probabilities), saved as
// ONNX: token (int64 [1]) -> Gather(logits_table, token, axis=0) ->
// Softmax(axis=-1) -> probs (float [1, V]). The protobuf is written by hand
// (field numbers from onnx/onnx.proto), so the model is made here rather than
// downloaded. The output is byte-identical on every run.
//
// Writes, beside this script: model.onnx, vocab.json, and model-data.ts (the
// same bytes as base64 plus the vocabulary, which the app imports so that the
// model travels inside the function's bundle).
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Written for this example and released into the public domain. */
const CORPUS = [
  "The sun rose over the quiet harbor, and the fishing boats went out one by one.",
  "The old keeper of the lighthouse watched them from his window, as he had done for forty years.",
  "He knew every sail and every voice that called across the water.",
  "When the wind turned cold, he lit the great lamp early, so that none of them would lose the way home.",
  "At night the town slept under a sky full of stars, and the sea kept its slow time against the stones.",
  "In the morning the children ran down to the shore to see what the tide had left behind.",
  "They found shells and ropes and the bright glass of old bottles, worn smooth by the waves.",
  "Their mother called them back for bread and tea, and they came home with their pockets full of treasure.",
  "The keeper told them stories of the storms he had seen, and of the ships that had found the harbor by his light.",
  "He said that the sea is never the same twice, and that a good sailor listens to it as to an old friend.",
  "So the days went by in that small town, one after another, with the turning of the tides.",
].join(" ");

// ---- a minimal protobuf writer: varints, length-delimited fields, fixed32 ----

/** A varint; negative int64 values take ten bytes (two's complement), as protobuf says. */
function varint(value) {
  let v = BigInt.asUintN(64, BigInt(value));
  const out = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return Buffer.from(out);
}

const key = (field, wireType) => varint((field << 3) | wireType);
/** Wire type 0: int32, int64, enums. */
const int = (field, value) => Buffer.concat([key(field, 0), varint(value)]);
/** Wire type 2: bytes, strings and embedded messages. */
const bytes = (field, data) => Buffer.concat([key(field, 2), varint(data.length), data]);
const str = (field, text) => bytes(field, Buffer.from(text, "utf8"));
const msg = (field, ...parts) => bytes(field, Buffer.concat(parts));

// ---- the onnx.proto messages this model needs ----

const DataType = { FLOAT: 1, INT64: 7 };
const AttributeType = { INT: 2 };

/** TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian). */
function tensor(field, name, dims, dataType, raw) {
  return msg(field, ...dims.map((d) => int(1, d)), int(2, dataType), str(8, name), bytes(9, raw));
}

/** AttributeProto: name = 1, i = 3, type = 20. */
const intAttribute = (name, value) => msg(5, str(1, name), int(3, value), int(20, AttributeType.INT));

/** NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5. */
function node(opType, name, inputs, outputs, attributes = []) {
  return msg(1, ...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(3, name), str(4, opType), ...attributes);
}

/** ValueInfoProto { name = 1, type = 2: TypeProto { tensor_type = 1: { elem_type = 1, shape = 2: { dim = 1: { dim_value = 1 } } } } }. */
function valueInfo(field, name, elemType, dims) {
  const shape = msg(2, ...dims.map((d) => msg(1, int(1, d))));
  return msg(field, str(1, name), msg(2, msg(1, int(1, elemType), shape)));
}

// ---- learning the bigram table ----

const vocab = [...new Set(CORPUS)].sort();
const V = vocab.length;
const index = new Map(vocab.map((ch, i) => [ch, i]));

const counts = Array.from({ length: V }, () => new Array(V).fill(1)); // add-one smoothing
for (let i = 0; i + 1 < CORPUS.length; i++) counts[index.get(CORPUS[i])][index.get(CORPUS[i + 1])]++;

const tableBytes = Buffer.alloc(V * V * 4);
for (let row = 0; row < V; row++) {
  const total = counts[row].reduce((a, b) => a + b, 0);
  for (let col = 0; col < V; col++) tableBytes.writeFloatLE(Math.log(counts[row][col] / total), (row * V + col) * 4);
}

// ---- the model ----

const graph = msg(
  7, // ModelProto.graph
  node("Gather", "next_char_logits", ["logits_table", "token"], ["logits"], [intAttribute("axis", 0)]),
  node("Softmax", "next_char_probs", ["logits"], ["probs"], [intAttribute("axis", -1)]),
  str(2, "bigram"), // GraphProto.name
  tensor(5, "logits_table", [V, V], DataType.FLOAT, tableBytes), // GraphProto.initializer
  valueInfo(11, "token", DataType.INT64, [1]), // GraphProto.input
  valueInfo(12, "probs", DataType.FLOAT, [1, V]), // GraphProto.output
);
const model = Buffer.concat([
  int(1, 8), // ModelProto.ir_version
  str(2, "tandem-examples-inference"), // producer_name
  graph,
  msg(8, str(1, ""), int(2, 13)), // opset_import: the default domain, version 13
]);

const here = dirname(fileURLToPath(import.meta.url));
writeFileSync(join(here, "model.onnx"), model);
writeFileSync(join(here, "vocab.json"), `${JSON.stringify(vocab)}\n`);
writeFileSync(
  join(here, "model-data.ts"),
  [
    "// Generated by make-model.mjs; do not edit. The bigram model and its vocabulary, as data,",
    "// so they travel inside the function's bundle (a container has no copy of this folder).",
    "",
    "/** The ONNX model (model.onnx), base64. */",
    `export const MODEL_BASE64 = ${JSON.stringify(model.toString("base64"))};`,
    "",
    "/** Token id -> character (vocab.json). */",
    `export const VOCAB: readonly string[] = ${JSON.stringify(vocab)};`,
    "",
  ].join("\n"),
);
console.log(`wrote model.onnx (${model.length} bytes, V=${V}), vocab.json and model-data.ts in ${here}`);
