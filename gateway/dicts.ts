/**
 * Dicts at the edge: what the `/v1/dicts` routes and the SDK's `Dict` inside
 * the gateway both do. Names and keys are checked here (keys put in their
 * canonical JSON), values measured as the call codec encoded them; each
 * dict's `DictStore` does the rest.
 */
import { DICT_LIMITS } from "../sdk/defaults.js";
import { AlreadyExistsError, fromWireError, InvalidRequestError, type WireError } from "../sdk/errors.js";
import { valueTooLarge } from "../sdk/store-client.js";
import {
  DICT_NAME_PATTERN,
  canonicalKey,
  type DictAnswers,
  type DictEntry,
  type DictInfo,
  type DictOp,
  type DictRequest,
  type EncodedValue,
} from "../sdk/protocol.js";
import { missingDict, type DictCommand, type StoredAnswers, type StoredEntry, type StoredValue } from "./dict-store.js";
import type { Env } from "./env.js";
import { inEnvironment, lookedIn } from "./environments.js";
import { STORE_CATALOG, stubIn, type Outcome } from "./store-catalog.js";

/** A dict's name, checked: a 400 naming the rule otherwise. */
export function checkedDictName(name: string): string {
  if (!DICT_NAME_PATTERN.test(name)) {
    throw new InvalidRequestError(`"${name}" is not a dict name: letters, digits, '-' and '_', up to 64, starting with a letter or digit`, { dict: name });
  }
  return name;
}

/** Each dict's object id by its name in its environment: `idFromName` hashes, and the id never changes. */
const ids = new Map<string, DurableObjectId>();

function store(env: Env, name: string, work?: object) {
  const objectName = inEnvironment(env, `dict:${checkedDictName(name)}`);
  return stubIn(work, objectName, () => {
    let id = ids.get(objectName);
    if (!id) {
      if (ids.size >= 1024) ids.clear();
      id = env.DICTS.idFromName(objectName);
      ids.set(objectName, id);
    }
    return env.DICTS.get(id);
  });
}

function catalog(env: Env) {
  return env.DICTS.get(env.DICTS.idFromName(inEnvironment(env, STORE_CATALOG)));
}

function unwrap<T>(env: Env, outcome: Outcome<T>): T {
  if ("error" in outcome) throw revived(env, outcome.error);
  return outcome.ok;
}

/** An object's error, a dict it does not hold said again with the environment it was looked for in. */
function revived(env: Env, error: WireError): Error {
  const missing = error.code === "not_found" ? error.details?.dict : undefined;
  return typeof missing === "string" ? missingDict(missing, lookedIn(env)) : fromWireError(error);
}

/** Makes a dict; an existing one is answered as it is when `existOk`, else refused. */
export async function createDict(env: Env, name: string, existOk: boolean): Promise<{ created: boolean; info: DictInfo }> {
  const made = unwrap(env, await store(env, name).create(name));
  if (!made.created && !existOk)
    throw new AlreadyExistsError(`dict "${name}" already exists (to use it as it is: --exist-ok, or existOk: true)`, { dict: name });
  if (!(await catalog(env).catalogAdd(name, made.info.createdAt))) {
    if (made.created) await store(env, name).drop(name);
    throw new InvalidRequestError(`this gateway holds ${DICT_LIMITS.maxDicts} dicts, the most it keeps; delete one first`, { maxDicts: DICT_LIMITS.maxDicts });
  }
  return made;
}

export async function dictInfo(env: Env, name: string): Promise<DictInfo> {
  return unwrap(env, await store(env, name).info(name));
}

export async function deleteDict(env: Env, name: string): Promise<DictInfo> {
  const info = unwrap(env, await store(env, name).drop(name));
  await catalog(env).catalogRemove(name);
  return info;
}

/** Every dict, by name. */
export async function listDicts(env: Env): Promise<DictInfo[]> {
  const names = await catalog(env).catalogList();
  const infos: DictInfo[] = [];
  for (let i = 0; i < names.length; i += 32) {
    const outcomes = await Promise.all(names.slice(i, i + 32).map((name) => store(env, name).info(name)));
    for (const outcome of outcomes) if ("ok" in outcome) infos.push(outcome.ok); // one deleted meanwhile is left out
  }
  return infos;
}

/**
 * One operation on a dict's entries, its request already in its wire shape (`DictRequestSchemas[op]`). `work`:
 * the `RunContext` of the code that asks (see `stubIn`).
 */
export function dictOp<O extends DictOp>(env: Env, name: string, op: O, request: DictRequest<O>, work?: object): Promise<DictAnswers[O]> {
  const command = commandOf(name, op, request as DictRequest<DictOp>);
  const key = (request as { key?: unknown }).key;
  if (command.op === "get")
    return store(env, name, work)
      .get(name, command.key)
      .then((found) => gotten(env, found, command.key, key) as DictAnswers[O]);
  return store(env, name, work)
    .run(name, command)
    .then((outcome) => parsed(unwrap(env, outcome), key) as DictAnswers[O]);
}

/** `get`'s answer, from the object's flat one. */
function gotten(env: Env, found: StoredValue | null | { error: WireError }, stored: string, asked: unknown): DictAnswers["get"] {
  if (found === null) return { found: false };
  if ("error" in found) throw revived(env, found.error);
  return { found: true, entry: parsedEntry({ key: stored, ...found }, asked) };
}

/**
 * An answer with its entries' stored texts parsed (the object sends them as they are stored). `key`: the key the
 * caller asked for, which a string key's entry shows as it is (it is its own canonical form).
 */
function parsed(answer: StoredAnswers[DictOp], key: unknown): DictAnswers[DictOp] {
  if ("entries" in answer) {
    const entries = answer.entries.map((entry) => parsedEntry(entry, undefined));
    return answer.next === undefined ? { entries } : { entries, next: answer.next };
  }
  if ("entry" in answer && answer.entry) return { found: answer.found, entry: parsedEntry(answer.entry, key) };
  return answer as DictAnswers[DictOp];
}

function parsedEntry(entry: StoredEntry, asked: unknown): DictEntry {
  const key = typeof asked === "string" ? asked : (JSON.parse(entry.key) as unknown);
  const { version, expiresAt } = entry;
  return entry.value === undefined ? { key, version, expiresAt } : { key, value: JSON.parse(entry.value) as EncodedValue, version, expiresAt };
}

function commandOf(name: string, op: DictOp, request: DictRequest<DictOp>): DictCommand {
  const r = request as Partial<DictRequest<"put"> & DictRequest<"update"> & DictRequest<"entries">>;
  switch (op) {
    case "get":
    case "contains":
    case "pop":
    case "delete":
      return { op, key: checkedKey(r.key) };
    case "put":
      return {
        op,
        key: checkedKey(r.key),
        value: checkedValue(name, r.value!),
        ...(r.ttlSeconds === undefined ? {} : { ttlSeconds: r.ttlSeconds }),
        ...(r.ifAbsent ? { ifAbsent: true } : {}),
        ...(r.ifVersion === undefined ? {} : { ifVersion: r.ifVersion }),
      };
    case "update":
      return {
        op,
        entries: r.entries!.map((e) => ({ key: checkedKey(e.key), value: checkedValue(name, e.value) })),
        ...(r.ttlSeconds === undefined ? {} : { ttlSeconds: r.ttlSeconds }),
      };
    case "len":
    case "clear":
      return { op };
    case "entries":
      return { op, ...(r.after === undefined ? {} : { after: checkedCursor(r.after) }), limit: r.limit ?? DICT_LIMITS.pageSize, keysOnly: r.keysOnly ?? false };
  }
}

/** An `entries` cursor: the previous page's `next`, a key as stored (its canonical JSON), or a 400 as the queue's `peek` answers. */
function checkedCursor(after: string): string {
  let key: unknown;
  try {
    key = JSON.parse(after);
  } catch {
    key = undefined;
  }
  const checked = key === undefined ? undefined : canonicalKey(key);
  if (!checked || !("key" in checked) || checked.key !== after) throw new InvalidRequestError(`field "after" must be the previous page's next`);
  return after;
}

function checkedKey(key: unknown): string {
  const checked = canonicalKey(key);
  if ("problem" in checked) throw new InvalidRequestError(`a dict key ${checked.problem}`);
  return checked.key;
}

/** A value's text as stored, or `value_too_large` (413) over `DICT_LIMITS.maxValueBytes`. */
function checkedValue(name: string, value: EncodedValue): string {
  const text = encodedText(value);
  if (text.length * 3 <= DICT_LIMITS.maxValueBytes) return text; // each UTF-16 unit is at most 3 bytes of UTF-8
  const bytes = new TextEncoder().encode(text).byteLength;
  if (bytes > DICT_LIMITS.maxValueBytes) throw valueTooLarge("dict", name, bytes);
  return text;
}

/** An encoded value as text, as dicts and queues store it: `json`, and `meta` when there is one. */
export function encodedText(value: EncodedValue): string {
  return JSON.stringify(value.meta === undefined || value.meta === null ? { json: value.json } : { json: value.json, meta: value.meta });
}
