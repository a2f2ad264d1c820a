/**
 * Data types: zarr-python's names (Zarr v3 core and zarr-extensions) in the
 * spelling zarrita understands. Where zarrita has no type holding the same
 * values, a type holding the same bytes is served, and the reader's caller
 * learns the original from `ManifestStore.dataType(path)`:
 *
 * - `fixed_length_utf32` / `null_terminated_bytes` → zarrita's `v2:U<n>` / `v2:S<n>`;
 * - `numpy.datetime64` / `numpy.timedelta64` → `int64` (counts of the unit);
 * - `float16` without a `Float16Array` in the runtime (Node < 24) → `uint16` bit patterns;
 * - `variable_length_bytes` → `v2:object` (`Uint8Array` items, codec `vlen-bytes`).
 *
 * Types with no such stand-in are refused as unsupported; names that are
 * neither core nor registered Zarr data types are refused as invalid.
 */

import { ManifestError, UnsupportedError } from "./errors.js";
import { isObject } from "./fields.js";
import type { Json } from "./json.js";

const NATIVE = new Set(["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64", "string"]);

/** Known Zarr data types (core v3 and zarr-extensions) this reader cannot serve. */
const KNOWN_UNSUPPORTED = new Set([
  "complex64", "complex128", "raw_bytes", "struct", "structured", "bfloat16", "complex_bfloat16",
  "complex_float16", "complex_float32", "complex_float64", "float4_e2m1fn", "float6_e2m3fn",
  "float6_e3m2fn", "float8_e3m4", "float8_e4m3", "float8_e4m3b11fnuz", "float8_e4m3fnuz",
  "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "int2", "int4", "uint2", "uint4",
]);

export interface Served {
  dataType: string;
  fillValue: Json;
}

/** The data type and fill value zarrita is given for an array's `data_type` and `fill_value`. */
export function servedType(dataType: Json | undefined, fillValue: Json | undefined, where: string): Served {
  const name = typeof dataType === "string" ? dataType : isObject(dataType) ? dataType.name : undefined;
  const config = isObject(dataType) && isObject(dataType.configuration) ? dataType.configuration : {};
  const fill = fillValue ?? null;
  if (typeof name !== "string") throw new ManifestError(`${where}: data_type must be a name or an object with a name`);
  if (NATIVE.has(name)) return { dataType: name, fillValue: floatFill(name, fill) };
  switch (name) {
    case "float16":
      if ("Float16Array" in globalThis) return { dataType: "float16", fillValue: floatFill(name, fill) };
      return { dataType: "uint16", fillValue: BigInt(halfBits(fill)) };
    case "fixed_length_utf32":
      return { dataType: `v2:U${lengthBytes(config.length_bytes, 4, where) / 4}`, fillValue: fill };
    case "null_terminated_bytes":
      return { dataType: `v2:S${lengthBytes(config.length_bytes, 1, where)}`, fillValue: fill };
    case "numpy.datetime64":
    case "numpy.timedelta64":
      return { dataType: "int64", fillValue: fill === "NaT" ? -(2n ** 63n) : fill };
    case "variable_length_bytes":
    case "bytes":
      return { dataType: "v2:object", fillValue: null };
  }
  if (KNOWN_UNSUPPORTED.has(name) || /^r\d+$/.test(name)) {
    throw new UnsupportedError(`${where}: the data type ${name} has no zarrita equivalent`);
  }
  throw new ManifestError(`${where}: unknown data type ${JSON.stringify(name)}`);
}

function lengthBytes(value: Json | undefined, unit: number, where: string): number {
  if (typeof value !== "bigint" || value <= 0n || value % BigInt(unit) !== 0n) {
    throw new ManifestError(`${where}: data_type.configuration.length_bytes must be a positive multiple of ${unit}`);
  }
  return Number(value);
}

/** A float fill value as zarrita takes it: hex bit patterns (Zarr v3) become numbers. */
function floatFill(name: string, fill: Json): Json {
  if (typeof fill === "bigint" && !name.startsWith("int") && !name.startsWith("uint")) return Number(fill);
  if (typeof fill !== "string" || !fill.startsWith("0x")) return fill;
  const view = new DataView(new ArrayBuffer(8));
  if (name === "float32") {
    view.setUint32(0, parseInt(fill, 16));
    return view.getFloat32(0);
  }
  if (name === "float64") {
    view.setBigUint64(0, BigInt(fill));
    return view.getFloat64(0);
  }
  return fill;
}

/** The IEEE 754 half-precision bits of a fill value (a number, "NaN", "±Infinity" or "0x...."). */
export function halfBits(fill: Json): number {
  if (typeof fill === "string" && fill.startsWith("0x")) return parseInt(fill, 16);
  const special: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
  const value = typeof fill === "string" ? special[fill] : Number(fill ?? 0);
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  let mantissa = bits & 0x7fffff;
  if (((bits >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  if (exponent >= 0x1f) return sign | 0x7c00;
  let shift = 13;
  let half = exponent << 10;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    shift = 14 - exponent;
    half = 0;
  }
  let result = half | (mantissa >>> shift);
  const rest = mantissa & ((1 << shift) - 1);
  const midway = 1 << (shift - 1);
  if (rest > midway || (rest === midway && result & 1)) result++;
  return sign | result;
}
