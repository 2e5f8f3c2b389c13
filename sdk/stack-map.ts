/**
 * Remote stacks that name the user's files, in both tiers: a stack from a
 * bundle is mapped through the bundle's source map, and frames inside Tandem
 * itself (sources the bundler marked `tandem:`) or inside packages are
 * dropped, so a caller sees the lines of their own code.
 */
import { TraceMap, originalPositionFor } from "@jridgewell/trace-mapping";

const FRAME = /^(\s+at (?:async )?)(?:(.*?) \()?(?:file:\/\/)?([^()\s]+?):(\d+):(\d+)\)?$/;
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
 * nothing. A stack mapped already comes back as it is.
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
    const m = mappedFrame(map, frame, module);
    if (typeof m === "string") mapped.push(m);
  }
  return [head, ...mapped].join("\n");
}

/**
 * A printed line (a log line) with a bundle's stack frame in it mapped as {@link mapStackWith} maps one: to the user's
 * file, or null for a frame of Tandem's own (bundled, or in the runtime's module where `module` names the app's) or of
 * a bundled package, which is left out. A line that is no such frame (text, a frame of Node's own, or of a package
 * the bundle left out, named by its own file) stays as it is.
 * @example mapFrameLine(map, "    at resize (file:///tandem/app/bundle.mjs:9:3)"); // "    at resize (app.ts:12:11)"
 */
export function mapFrameLine(map: TraceMap | null, line: string, module?: string): string | null {
  if (!map || !line.includes(" at ")) return line;
  const m = mappedFrame(map, line, module);
  return m === NOT_THE_BUNDLES ? line : m;
}

/**
 * Every line of `text` through {@link mapFrameLine}: a printed stack, mapped, its frames of Tandem's and packages' left
 * out. An error printed whole with fields of its own ends its last frame with ` {` (`    at f (worker.mjs:9:3) {`,
 * then `  code: …`): that frame is mapped too, and the brace kept, on the frame kept before it when it is left out.
 */
export function mapFramesIn(map: TraceMap | null, text: string, module?: string): string {
  if (!map || !text.includes(" at ")) return text;
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    const brace = line.endsWith(" {") && isFrameLine(line.slice(0, -2));
    const m = mapFrameLine(map, brace ? line.slice(0, -2) : line, module);
    if (m !== null) lines.push(brace ? `${m} {` : m);
    else if (brace && lines.length > 0) lines[lines.length - 1] += " {";
  }
  return lines.join("\n");
}

/** Whether `line` reads as a stack frame (`    at f (file:1:2)`): a printed line that a source map may change. */
export function isFrameLine(line: string): boolean {
  return line.includes(" at ") && FRAME.test(line);
}

const NOT_THE_BUNDLES = Symbol("not a frame of the bundle");

const sourceSets = new WeakMap<TraceMap, Set<string>>();
/** The files a map maps to, as mapped frames name them. */
function sourcesOf(map: TraceMap): Set<string> {
  let sources = sourceSets.get(map);
  if (!sources) sourceSets.set(map, (sources = new Set(map.sources.filter((s): s is string => s !== null))));
  return sources;
}

/** One frame mapped; null for one of Tandem's own, a package's or one the map has no place for. */
function mappedFrame(map: TraceMap, frame: string, module: string | undefined): string | null | typeof NOT_THE_BUNDLES {
  const m = FRAME.exec(frame);
  if (!m) return NOT_THE_BUNDLES;
  const [, at, fnName, file, line, column] = m;
  // Node's own modules (`node:internal/…`) are not the bundle: mapped through its map, their lines would name
  // whatever of the app's sat at the same place. Nor is a package the bundle left out (its own file, named as it is).
  if (file!.startsWith("node:") || file!.includes("/node_modules/")) return NOT_THE_BUNDLES;
  // A frame already mapped names one of the map's own sources: it stays as it is, so that a stack mapped twice (a
  // printed one, or an inner call's error that a plane function passed on) keeps its frames.
  if (sourcesOf(map).has(file!)) return frame;
  if (module !== undefined && file !== module && !file!.endsWith(`/${module}`)) return null; // Tandem's runtime, a module of its own
  const pos = originalPositionFor(map, { line: Number(line), column: Number(column) - 1 });
  if (!pos.source || RUNTIME_SOURCE.test(pos.source)) return null;
  const where = `${pos.source}:${pos.line}:${(pos.column ?? 0) + 1}`;
  return fnName ? `${at}${fnName} (${where})` : `${at}${where}`;
}
