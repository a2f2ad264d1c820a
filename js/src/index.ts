/**
 * A zarrita.js store for chunk-manifest documents (spec/chunk-manifest.md):
 *
 * ```ts
 * import * as zarr from "zarrita";
 * import { ManifestStore } from "@zarr-manifest/store";
 *
 * const store = await ManifestStore.open("https://example.org/out.zarr", { allow: ["https://example.org/data/"] });
 * const t2m = await zarr.open(zarr.root(store).resolve("t2m"), { kind: "array" });
 * const values = await zarr.get(t2m);
 * ```
 */

export { registerCodecs } from "./codecs.js";
export {
  type Category,
  ChunkManifestError,
  ForbiddenPathError,
  ManifestError,
  MissingSourceError,
  SourceChangedError,
  UnsupportedError,
  categoryOf,
} from "./errors.js";
export { parseJson, type Json } from "./json.js";
export { ManifestStore, type OpenOptions } from "./store.js";
