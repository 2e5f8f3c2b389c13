/**
 * The Worker's remote stacks, mapped to the user's files (sdk/stack-map.ts).
 * The bundle's source map ships beside the Worker as a text module; the first
 * stack to map parses it, once per isolate.
 */
import type { TraceMap } from "@jridgewell/trace-mapping";
import { mapFramesIn, mapStackWith, traceMap } from "../sdk/stack-map.js";

let mapText: string | undefined;
let mapModule: string | undefined;
let parsed: TraceMap | undefined | null;

/**
 * Called once by the generated Worker entry, when the bundle has a source map. `module`: the module it maps, when the
 * Worker's runtime is a module of its own (`tandem run`): frames in other modules are Tandem's, and left out.
 */
export function installSourceMap(text: string | undefined, module?: string): void {
  mapText = text;
  mapModule = module;
  parsed = undefined;
}

/** Maps `stack` to the original sources and keeps only the user's frames. */
export function mapStack(stack: string): string {
  if (parsed === undefined) parsed = mapText ? traceMap(mapText) : null;
  return mapStackWith(parsed, stack, mapModule);
}

/** A printed line's stack frames (an error logged whole, or its `stack`) mapped as {@link mapStack} maps a stack's. */
export function mapPrinted(text: string): string {
  if (!/^\s+at /m.test(text)) return text;
  if (parsed === undefined) parsed = mapText ? traceMap(mapText) : null;
  return mapFramesIn(parsed, text, mapModule);
}
