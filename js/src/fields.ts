/** Typed access to parsed JSON, refusing values of the wrong type with a ManifestError naming the field. */

import { ManifestError } from "./errors.js";
import type { Json } from "./json.js";

export type JsonObject = { [key: string]: Json };

export const MAX_BYTE = 2n ** 63n - 1n;

export function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function object(value: Json | undefined, where: string): JsonObject {
  if (!isObject(value)) throw new ManifestError(`${where} must be a JSON object`);
  return value;
}

export function string(value: Json | undefined, where: string): string {
  if (typeof value !== "string") throw new ManifestError(`${where} must be a string`);
  return value;
}

export function array(value: Json | undefined, where: string): Json[] {
  if (!Array.isArray(value)) throw new ManifestError(`${where} must be an array`);
  return value;
}

/** An integer written without fraction or exponent, in [min, max]. */
export function integer(value: Json | undefined, where: string, min: bigint, max: bigint): bigint {
  if (typeof value !== "bigint") throw new ManifestError(`${where} must be an integer (no fraction, no exponent, not a string)`);
  if (value < min || value > max) throw new ManifestError(`${where} = ${value} is outside [${min}, ${max}]`);
  return value;
}

/** A byte position or count: an integer in [0, 2^63 - 1]. */
export function byteCount(value: Json | undefined, where: string): bigint {
  return integer(value, where, 0n, MAX_BYTE);
}

/** A small non-negative integer (a shape, a chunk size) as a number. */
export function size(value: Json | undefined, where: string, min = 0): number {
  const n = integer(value, where, BigInt(min), MAX_BYTE);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ManifestError(`${where} = ${n} is too large`);
  return Number(n);
}
