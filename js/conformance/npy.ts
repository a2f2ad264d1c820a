/**
 * Arrays read through zarrita, written as NumPy `.npy` files (format 1.0) in
 * the data type the document declares: what the conformance runner compares.
 */

import type { Json } from "../src/index.js";

/** What `zarr.get` returns: values in some memory order, described by strides. */
export interface Strided {
  data: unknown;
  shape: number[];
  stride: number[];
}

type Bytes = { buffer: ArrayBufferLike; byteOffset: number; byteLength: number; length: number };

/** The `.npy` file of `array`, whose document declares `dataType`. */
export function toNpy(array: Strided, dataType: Json): Uint8Array {
  const count = array.shape.reduce((a, b) => a * b, 1);
  const order = cOrder(array.shape, array.stride);
  const { descr, items } = Array.isArray(array.data)
    ? variableItems(array.data as (string | Uint8Array)[], dataType)
    : fixedItems(array.data as Bytes, dataType);
  const body = new Uint8Array(count * items.size);
  for (let i = 0; i < count; i++) body.set(items.at(order[i]), i * items.size);
  return concat(header(descr, array.shape), body);
}

interface Items {
  size: number;
  at(index: number): Uint8Array;
}

/** Items of a buffer-backed zarrita array (typed arrays, BoolArray, ByteStringArray, UnicodeStringArray). */
function fixedItems(data: Bytes, dataType: Json): { descr: string; items: Items } {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const size = data.length ? data.byteLength / data.length : 0;
  return { descr: fixedDescr(dataType), items: { size, at: (i) => bytes.subarray(i * size, (i + 1) * size) } };
}

/** Items of `string` (vlen-utf8) or variable-length bytes arrays, padded to the longest. */
function variableItems(data: (string | Uint8Array)[], dataType: Json): { descr: string; items: Items } {
  if (dataType === "string") {
    const points = data.map((s) => Uint32Array.from([...(s as string)].map((c) => c.codePointAt(0)!)));
    const width = Math.max(1, ...points.map((p) => p.length));
    return { descr: `<U${width}`, items: padded(points.map((p) => new Uint8Array(p.buffer)), width * 4) };
  }
  const blobs = data.map((b) => (b instanceof Uint8Array ? b : new Uint8Array(0)));
  const width = Math.max(1, ...blobs.map((b) => b.length));
  return { descr: `|S${width}`, items: padded(blobs, width) };
}

function padded(values: Uint8Array[], size: number): Items {
  return {
    size,
    at: (i) => {
      const out = new Uint8Array(size);
      out.set(values[i]);
      return out;
    },
  };
}

const DESCR: Record<string, string> = {
  bool: "|b1", int8: "|i1", int16: "<i2", int32: "<i4", int64: "<i8",
  uint8: "|u1", uint16: "<u2", uint32: "<u4", uint64: "<u8",
  float16: "<f2", float32: "<f4", float64: "<f8",
};

function fixedDescr(dataType: Json): string {
  if (typeof dataType === "string" && dataType in DESCR) return DESCR[dataType];
  const { name, configuration } = dataType as { name: string; configuration: Record<string, Json> };
  const length = Number(configuration.length_bytes);
  if (name === "fixed_length_utf32") return `<U${length / 4}`;
  if (name === "null_terminated_bytes") return `|S${length}`;
  if (name === "numpy.datetime64" || name === "numpy.timedelta64") {
    const scale = Number(configuration.scale_factor ?? 1);
    return `<${name === "numpy.datetime64" ? "M" : "m"}8[${scale === 1 ? "" : scale}${configuration.unit}]`;
  }
  throw new Error(`no .npy type for ${JSON.stringify(dataType, (_, v) => (typeof v === "bigint" ? Number(v) : v))}`);
}

/** For each C-order position, the index of its value in `data`. */
function cOrder(shape: number[], stride: number[]): number[] {
  const count = shape.reduce((a, b) => a * b, 1);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    let rest = i;
    let at = 0;
    for (let d = shape.length - 1; d >= 0; d--) {
      at += (rest % shape[d]) * stride[d];
      rest = Math.floor(rest / shape[d]);
    }
    out[i] = at;
  }
  return out;
}

function header(descr: string, shape: number[]): Uint8Array {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let text = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const unpadded = 10 + text.length + 1;
  text += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + text.length);
  out.set([0x93, ...new TextEncoder().encode("NUMPY"), 1, 0, text.length & 0xff, text.length >> 8]);
  out.set(new TextEncoder().encode(text), 10);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
