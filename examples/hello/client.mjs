// A plain Node client of examples/hello. Start the app first:
//   npx tandem serve examples/hello/app.ts
// then: node examples/hello/client.mjs   (TANDEM_GATEWAY picks another gateway)
import { FunctionCall, lookup } from "tandem";

const greet = lookup("hello", "greet");
console.log(await greet.remote("Ada"));

const square = lookup("hello", "square");
const call = await square.spawn(12);
console.log(`spawned ${call.id}`);
// FunctionCall.fromId works from any process that has the id.
console.log(`result of ${call.id}: ${await FunctionCall.fromId(call.id).get({ timeoutMs: 10_000 })}`);

const squares = [];
for await (const y of square.map([1, 2, 3, 4, 5])) squares.push(y);
console.log(`squares: ${squares.join(", ")}`);
