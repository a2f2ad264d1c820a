import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as zarr from "zarrita";
import { readAll } from "../conformance/adapter.js";
import { ForbiddenPathError, ManifestStore, categoryOf } from "../src/index.js";
import { serve } from "./server.js";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));
const CASES = `${REPO}/conformance/cases`;
let http: Awaited<ReturnType<typeof serve>>;

before(async () => {
  http = await serve(REPO);
});
after(() => http.server.close());

/** The example of the spec: int16 (3, 4) in (2, 2) chunks, chunk (0, 1) inline, (1, 1) missing (fill -1). */
const EXAMPLE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1];

for (const encoding of ["json", "columnar"]) {
  test(`the spec's ${encoding} example reads from a folder and over HTTP`, async () => {
    for (const where of [`${REPO}/spec/examples/${encoding}.zarr`, `${http.url}/spec/examples/${encoding}.zarr`]) {
      const store = await ManifestStore.open(where);
      const group = await zarr.open(store, { kind: "group" });
      assert.equal(group.attrs.title, `${encoding} example`);
      const t = await zarr.open(group.resolve("t"), { kind: "array" });
      assert.deepEqual(t.attrs, { units: "K" });
      assert.deepEqual(t.dimensionNames, ["y", "x"]);
      const values = await zarr.get(t);
      assert.deepEqual(Array.from(values.data as Int16Array), EXAMPLE);
      await store.close();
    }
  });
}

test("over HTTP, a chunk is one Range request of exactly its bytes", async () => {
  const store = await ManifestStore.open(`${http.url}/spec/examples/json.zarr`);
  const t = await zarr.open(zarr.root(store).resolve("t"), { kind: "array" });
  http.requests.length = 0;
  await t.getChunk([1, 0]);
  assert.deepEqual(http.requests, ["GET /spec/examples/json.zarr/t/manifest.json", "GET /spec/examples/json.zarr/data/t.bin bytes=36-52"]);
});

test("the store serves metadata without the transformer and no other file of the document", async () => {
  const store = await ManifestStore.open(`${REPO}/spec/examples/json.zarr`);
  const served = JSON.parse(new TextDecoder().decode(await store.get("/t/zarr.json")));
  assert.equal(served.storage_transformers, undefined);
  assert.equal(served.chunk_manifest, undefined);
  assert.equal(await store.get("/t/manifest.json"), undefined);
  assert.equal(await store.get("/data/t.bin"), undefined);
  assert.equal(await store.get("/t/c/1/1"), undefined, "a missing chunk");
  assert.equal(await store.get("/t/c/2/0"), undefined, "outside the grid");
  assert.equal(await store.get("/t/c/01/0"), undefined, "not canonical");
  await store.close();
});

test("a document over HTTP may not read local files it was not allowed", async () => {
  const store = await ManifestStore.open(`${http.url}/conformance/cases/forbidden-etc-passwd/document`);
  const a = await zarr.open(zarr.root(store).resolve("a"), { kind: "array" });
  await assert.rejects(zarr.get(a), ForbiddenPathError);
});

/**
 * Every case whose document names no absolute path reads over HTTP as it
 * reads from its folder: the same arrays, or a refusal of the same category.
 * Not forbidden-symlink: over HTTP, links are the server's business.
 */
test("the conformance cases read the same over HTTP as from their folders", async () => {
  const names = (await readdir(CASES)).filter((n) => n !== "forbidden-symlink").sort();
  let compared = 0;
  for (const name of names) {
    const files = await readdir(`${CASES}/${name}/document`, { recursive: true });
    const texts = await Promise.all(files.filter((f) => f.endsWith(".json")).map((f) => readFile(`${CASES}/${name}/document/${f}`, "utf8")));
    if (texts.some((t) => t.includes("@CASE@"))) continue;
    const local = await outcome(`${CASES}/${name}/document`);
    const remote = await outcome(`${http.url}/conformance/cases/${encodeURIComponent(name)}/document`);
    assert.deepEqual(remote, local, name);
    compared++;
  }
  assert.ok(compared >= 60, `${compared} cases compared`);
});

async function outcome(document: string): Promise<unknown> {
  try {
    const arrays = await readAll(document, []);
    return Object.fromEntries([...arrays].map(([path, npy]) => [path, createHash("sha256").update(npy).digest("hex")]));
  } catch (error) {
    const category = categoryOf(error);
    if (!category) throw error;
    return category;
  }
}
