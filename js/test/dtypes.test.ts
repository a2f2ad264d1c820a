import assert from "node:assert/strict";
import { test } from "node:test";
import { halfBits, servedType } from "../src/dtypes.js";
import { ManifestError, UnsupportedError } from "../src/errors.js";

test("float16 fill values become IEEE half bit patterns, rounded to nearest even", () => {
  const cases: [unknown, number][] = [
    [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [0.1, 0x2e66],
    [2 ** -24, 0x0001], [2 ** -26, 0x0000], ["NaN", 0x7e00], ["-Infinity", 0xfc00], ["0x3555", 0x3555],
  ];
  for (const [value, bits] of cases) assert.equal(halfBits(value as never), bits, String(value));
});

test("zarr-python's data type names are served in zarrita's spelling", () => {
  const name = (dataType: unknown) => servedType(dataType as never, 0n, "x").dataType;
  assert.equal(name({ name: "fixed_length_utf32", configuration: { length_bytes: 24n } }), "v2:U6");
  assert.equal(name({ name: "null_terminated_bytes", configuration: { length_bytes: 6n } }), "v2:S6");
  assert.equal(name({ name: "numpy.datetime64", configuration: { unit: "s", scale_factor: 1n } }), "int64");
  assert.equal(name("variable_length_bytes"), "v2:object");
  assert.equal(servedType("float32", "0x7fc00000", "x").fillValue, NaN);
  assert.throws(() => name("complex64"), UnsupportedError);
  assert.throws(() => name({ name: "struct", configuration: {} }), UnsupportedError);
  assert.throws(() => name("float99"), ManifestError);
  assert.throws(() => name({ name: "fixed_length_utf32", configuration: { length_bytes: 6n } }), ManifestError);
});
