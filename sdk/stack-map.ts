/**
 * Remote stacks that name the user's files, in both tiers: a stack from a
 * bundle is mapped through the bundle's source map, and frames inside Tandem
 * itself (sources the bundler marked `tandem:`) or inside packages are
 * dropped, so a caller sees the lines of their own code.
 */
import { TraceMap, originalPositionFor } from "@jridgewell/trace-mapping";

const FRAME = /^(\s+at )(?:(.*?) \()?(?:file:\/\/)?([^()\s]+?):(\d+):(\d+)\)?$/;
/** What `relativizeSources` (sdk/cli/bundle.ts) calls Tandem's own sources. */
export const RUNTIME_SOURCE_PREFIX = "tandem:";
const RUNTIME_SOURCE = /^tandem:|(^|\/)node_modules\//;

/** Parses a source map; null when it cannot be read (the stack then stays as it is). */
export function traceMap(text: string): TraceMap | null {
  try {
    return new TraceMap(text);
  } catch {
    return null;
  }
}

/**
 * Maps `stack` to the original sources and keeps only the user's frames; with no frame of theirs (a WebAssembly trap,
 * an error thrown by Tandem itself), the error's name and message alone: the bundle's minified frames tell its caller
 * nothing.
 * `module`: the file the map is of, when the stack may hold frames of other modules (a Worker whose runtime is a module
 * of its own: sdk/cli/bundle.ts); those are Tandem's own, and left out.
 */
export function mapStackWith(map: TraceMap | null, stack: string, module?: string): string {
  if (!map) return stack;
  const lines = stack.split("\n");
  // The name and message, which may run over several lines, come before the first frame.
  const firstFrame = lines.findIndex((line) => /^\s+at /.test(line));
  const head = (firstFrame === -1 ? lines : lines.slice(0, firstFrame)).join("\n");
  const frames = firstFrame === -1 ? [] : lines.slice(firstFrame);
  const mapped: string[] = [];
  for (const frame of frames) {
    const m = FRAME.exec(frame);
    if (!m) continue;
    const [, at, fnName, file, line, column] = m;
    // Node's own modules (`node:internal/…`) are not the bundle: mapped through its map, their lines would name
    // whatever of the app's sat at the same place.
    if (file!.startsWith("node:")) continue;
    if (module !== undefined && file !== module && !file!.endsWith(`/${module}`)) continue;
    const pos = originalPositionFor(map, { line: Number(line), column: Number(column) - 1 });
    if (!pos.source || RUNTIME_SOURCE.test(pos.source)) continue;
    const where = `${pos.source}:${pos.line}:${(pos.column ?? 0) + 1}`;
    mapped.push(fnName ? `${at}${fnName} (${where})` : `${at}${where}`);
  }
  return [head, ...mapped].join("\n");
}
