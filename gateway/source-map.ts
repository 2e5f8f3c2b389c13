/**
 * Remote stacks that name the user's files. The bundle's source map ships
 * beside the Worker as a text module; the first stack to map parses it (once
 * per isolate), then frames inside the runtime are dropped so that a caller
 * sees the lines of their own code.
 */
import { TraceMap, originalPositionFor } from "@jridgewell/trace-mapping";

let mapText: string | undefined;
let traceMap: TraceMap | undefined | null;

/** Called once by the generated Worker entry, when the bundle has a source map. */
export function installSourceMap(text: string | undefined): void {
  mapText = text;
  traceMap = undefined;
}

const FRAME = /^(\s+at )(?:(.*?) \()?(?:file:\/\/)?([^()\s]+?):(\d+):(\d+)\)?$/;
const RUNTIME_SOURCE = /(^|\/)(gateway|sdk|node_modules)\//;

/** Maps `stack` to the original sources and keeps only the user's frames. */
export function mapStack(stack: string): string {
  const map = load();
  if (!map) return stack;
  const [head, ...frames] = stack.split("\n");
  const mapped: string[] = [];
  for (const frame of frames) {
    const m = FRAME.exec(frame);
    if (!m) continue;
    const [, at, fnName, , line, column] = m;
    const pos = originalPositionFor(map, { line: Number(line), column: Number(column) - 1 });
    if (!pos.source || RUNTIME_SOURCE.test(pos.source)) continue;
    const where = `${pos.source}:${pos.line}:${(pos.column ?? 0) + 1}`;
    mapped.push(fnName ? `${at}${fnName} (${where})` : `${at}${where}`);
  }
  return mapped.length ? [head, ...mapped].join("\n") : stack;
}

function load(): TraceMap | null {
  if (traceMap !== undefined) return traceMap;
  try {
    traceMap = mapText ? new TraceMap(mapText) : null;
  } catch {
    traceMap = null;
  }
  return traceMap;
}
