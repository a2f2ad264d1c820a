/**
 * The conformance adapter (conformance/README.md):
 *
 *     node js/conformance-adapter.js DOCUMENT OUTPUT [--allow PREFIX]...
 *
 * Reads every array of the document through zarrita and this package's
 * store, and writes `OUTPUT/result.json` with the arrays (`.npy` files) or
 * the refusal's category.
 */

import { mkdir, writeFile } from "node:fs/promises";
import * as zarr from "zarrita";
import { ManifestStore, categoryOf } from "../src/index.js";
import { type Strided, toNpy } from "./npy.js";

/** Every array of the document, read in full, as `.npy` bytes by array path. */
export async function readAll(document: string, allow: string[]): Promise<Map<string, Uint8Array>> {
  const store = await ManifestStore.open(document, { allow });
  try {
    const out = new Map<string, Uint8Array>();
    for (const path of await store.arrays()) {
      const array = await zarr.open(zarr.root(store).resolve(path), { kind: "array" });
      out.set(path, toNpy(await values(array), await store.dataType(path)));
    }
    return out;
  } finally {
    await store.close();
  }
}

/** All values of an array, in the strided form `zarr.get` gives. */
async function values(array: zarr.Array<zarr.DataType, zarr.Readable>): Promise<Strided> {
  if (array.shape.length === 0) return (await array.getChunk([])) as Strided;
  if (array.shape.includes(0)) {
    // zarr.get (zarrita 0.7.5) throws on a zero-length dimension; such an array holds no value to read
    const data = array.dtype === "string" || array.dtype === "v2:object" ? [] : new Uint8Array(0);
    return { data, shape: array.shape, stride: array.shape.map(() => 1) };
  }
  return (await zarr.get(array)) as Strided;
}

export async function main(argv: string[]): Promise<void> {
  const [document, output, ...rest] = argv;
  const allow = rest.flatMap((arg, i) => (rest[i - 1] === "--allow" ? [arg] : []));
  await mkdir(output, { recursive: true });
  let result: object;
  try {
    const arrays = await readAll(document, allow);
    const files: Record<string, string> = {};
    let i = 0;
    for (const [path, npy] of arrays) {
      files[path] = `array${i++}.npy`;
      await writeFile(`${output}/${files[path]}`, npy);
    }
    result = { arrays: files };
  } catch (error) {
    const category = categoryOf(error);
    if (!category) throw error;
    result = { error: category, message: String((error as Error).message) };
  }
  await writeFile(`${output}/result.json`, JSON.stringify(result));
}
