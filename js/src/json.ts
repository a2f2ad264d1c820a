/**
 * A strict JSON parser for the document's files.
 *
 * `JSON.parse` cannot serve a chunk-manifest reader: it rounds integers past
 * 2^53 (offsets and sizes go to 2^63 - 1), it cannot tell `16` from `16.0`
 * (the latter is not an integer, section 9), and it rejects the tokens `NaN`,
 * `Infinity` and `-Infinity` that zarr-python writes for non-finite
 * attributes (section 2); and it lets a repeated member name win silently
 * (section 6 refuses it). This parser returns integers (numbers written
 * without fraction or exponent) as `bigint`, every other number as `number`.
 */

import { ManifestError } from "./errors.js";

export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

/** Parse `text`; throws a SyntaxError naming the position of the first fault. */
export function parseJson(text: string): Json {
  const parser = new Parser(text);
  const value = parser.value();
  parser.skipSpace();
  if (parser.at < text.length) parser.fail("trailing characters");
  return value;
}

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const SPECIAL: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

class Parser {
  at = 0;
  constructor(private readonly text: string) {}

  fail(what: string): never {
    throw new SyntaxError(`invalid JSON at character ${this.at}: ${what}`);
  }

  skipSpace(): void {
    while (" \t\n\r".includes(this.text[this.at] ?? "x")) this.at++;
  }

  value(): Json {
    this.skipSpace();
    const c = this.text[this.at];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    for (const [word, value] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    for (const [word, value] of Object.entries(SPECIAL)) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    return this.number();
  }

  number(): number | bigint {
    NUMBER.lastIndex = this.at;
    const match = NUMBER.exec(this.text);
    if (!match) this.fail("expected a value");
    this.at += match[0].length;
    return match[1] || match[2] ? Number(match[0]) : BigInt(match[0]);
  }

  string(): string {
    const start = this.at;
    this.at++;
    while (this.text[this.at] !== '"') {
      const c = this.text.charCodeAt(this.at);
      if (Number.isNaN(c)) this.fail("unterminated string");
      if (c < 0x20) this.fail("control character in a string");
      this.at += c === 0x5c ? 2 : 1;
    }
    this.at++;
    try {
      return JSON.parse(this.text.slice(start, this.at));
    } catch {
      this.at = start;
      return this.fail("malformed string");
    }
  }

  array(): Json[] {
    const out: Json[] = [];
    this.at++;
    this.skipSpace();
    if (this.text[this.at] === "]") {
      this.at++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.skipSpace();
      const c = this.text[this.at++];
      if (c === "]") return out;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  object(): { [key: string]: Json } {
    const out: { [key: string]: Json } = {};
    this.at++;
    this.skipSpace();
    if (this.text[this.at] === "}") {
      this.at++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.at] !== '"') this.fail("expected a member name");
      const key = this.string();
      if (Object.hasOwn(out, key)) this.fail(`the member name ${JSON.stringify(key)} repeats`);
      this.skipSpace();
      if (this.text[this.at++] !== ":") this.fail("expected ':'");
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.text[this.at++];
      if (c === "}") return out;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }
}

/** `value` as JSON text: bigints as integers, non-finite numbers as the strings Zarr v3 uses. */
export function stringifyJson(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (Number.isFinite(value)) return JSON.stringify(value);
    return JSON.stringify(Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
  }
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${stringifyJson(v)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

/** Parse a document's JSON file, refusing what is not JSON. */
export function parseJsonFile(bytes: Uint8Array, file: string): Json {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ManifestError(`${file} is not UTF-8 text`);
  }
  try {
    return parseJson(text);
  } catch (cause) {
    throw new ManifestError(`${file} is not JSON: ${(cause as Error).message}`, { cause });
  }
}
