/** Terminal colours, only when writing to a terminal and NO_COLOR is unset. */
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
