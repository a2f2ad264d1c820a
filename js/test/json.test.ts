import assert from "node:assert/strict";
import { test } from "node:test";
import { parseJson, stringifyJson } from "../src/json.js";

test("integers are exact bigints, numbers with a fraction or exponent are not", () => {
  assert.deepEqual(parseJson('[16, 16.0, 1.9e1, 9223372036854775807, -0]'), [16n, 16, 19, 9223372036854775807n, 0n]);
});

test("NaN and the infinities are read as numbers (zarr-python writes them)", () => {
  const value = parseJson('{"a": NaN, "b": Infinity, "c": -Infinity}') as Record<string, number>;
  assert.ok(Number.isNaN(value.a));
  assert.equal(value.b, Infinity);
  assert.equal(value.c, -Infinity);
});

test("a repeated member name, trailing text and bare words are refused", () => {
  assert.throws(() => parseJson('{"0.0": 1, "0.0": 2}'), /repeats/);
  assert.throws(() => parseJson("{} x"), /trailing/);
  assert.throws(() => parseJson("[nan]"), /expected a value/);
  assert.throws(() => parseJson('"a\u0001"'), /control character/);
});

test("member names like __proto__ are plain members", () => {
  const value = parseJson('{"__proto__": {"x": 1}}') as object;
  assert.deepEqual(Object.keys(value), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
});

test("stringify writes bigints exactly and non-finite numbers as Zarr v3 strings", () => {
  assert.equal(stringifyJson({ a: 2n ** 63n - 1n, b: [NaN, -Infinity, 1.5] }), '{"a":9223372036854775807,"b":["NaN","-Infinity",1.5]}');
});
