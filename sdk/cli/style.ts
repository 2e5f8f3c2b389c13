/**
 * How the CLI's text shows in a terminal: colours, only when writing to a terminal and NO_COLOR is unset; text
 * that came from elsewhere (a function's log line) with its control characters made visible, so it cannot steer the
 * terminal it is printed on; and times as the listing commands show them.
 */
import { styleText } from "node:util";

const enabled = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (format: Parameters<typeof styleText>[0]) => (text: string) => (enabled ? styleText(format, text) : text);

export const style = {
  ok: paint("green"),
  err: paint("red"),
  warn: paint("yellow"),
  bold: paint("bold"),
  dim: paint("dim"),
};

// C0 controls but tab, DEL, C1 controls (xterm reads U+009B as CSI), and the marks that reorder text (bidi overrides
// and isolates: a line that reads backwards).
const CONTROLS = /(?!\t)[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu;

/**
 * `text` with each control character but tab written as an escape: `\r` for a carriage return, `\xNN` for the other
 * C0 and C1 controls and DEL, `\uNNNN` for the marks that reorder text. An escape sequence a function printed
 * (colours, a cursor move, a window title) then shows as text, not as what it would do to the terminal. A backslash
 * is left as it is, so `\x1b` printed as four characters reads the same: the exact text is in `tandem logs --json`.
 * @example visibleControls("\x1b[31mred\x1b[0m\rover"); // "\\x1b[31mred\\x1b[0m\\rover"
 */
export function visibleControls(text: string): string {
  return text.replace(CONTROLS, (c) => {
    const code = c.charCodeAt(0);
    if (c === "\r") return "\\r";
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/**
 * Text from elsewhere of one line or several (what a function printed, in the gateway's or a plane's output) as
 * `tandem serve` and `tandem run` echo it: each line's control characters visible as `visibleControls` writes them,
 * as `tandem logs` shows them, and its line breaks kept.
 * @example visibleLines("[shop.resize fc-01…] \x1b[2Jdone\nnext"); // "[shop.resize fc-01…] \\x1b[2Jdone\nnext"
 */
export function visibleLines(text: string): string {
  return text.split(/\r?\n/).map(visibleControls).join("\n");
}

/**
 * A time as the listing commands (`tandem token list`, `tandem secret list`, …) show it: UTC, to the minute.
 * @example listTime(Date.UTC(2026, 4, 1, 9, 30, 12)); // "2026-05-01 09:30"
 */
export function listTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}
