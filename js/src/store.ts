/**
 * `ManifestStore`: a read-only zarrita store over a chunk-manifest document.
 *
 * It serves each node's `zarr.json` (arrays without the transformer, in
 * zarrita's dialect) and answers chunk keys from the arrays' manifests:
 * missing chunks as `undefined` (zarrita fills them), inline chunks from the
 * manifest, references as byte-range reads of local files or HTTP(S) URLs.
 */

import type { AbsolutePath, AsyncReadable } from "@zarrita/storage";
import { AllowList } from "./allow.js";
import { type ArrayNode, readArray } from "./array.js";
import { registerCodecs } from "./codecs.js";
import { ColumnarManifest } from "./columnar.js";
import { ManifestError, MissingSourceError } from "./errors.js";
import { type JsonObject, isObject, object } from "./fields.js";
import { type Json, parseJsonFile, stringifyJson } from "./json.js";
import { JsonManifest } from "./manifest-json.js";
import { PartsManifest } from "./parts.js";
import { type Location, absoluteLocation, checkRelative, documentLocation, isAbsolute, isInside, join } from "./paths.js";
import type { Manifest } from "./references.js";
import type { Source } from "./source.js";
import { defaultFetch, openSource } from "./sources.js";

export interface OpenOptions {
  /** Prefixes (local paths, `file://` or `http(s)://` URLs) sources may be read from, besides the document folder. */
  allow?: readonly string[];
  /** The `fetch` used for HTTP(S) documents and sources (default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** The largest chunk grid an array may have (default 2^32 chunks). */
  maxChunks?: number;
}

type Node = { kind: "group"; served: JsonObject } | { kind: "array"; array: ArrayNode };

const encoder = new TextEncoder();

/** How deep a document's hierarchy may be: a node path names at most this many nodes. */
export const MAX_DEPTH = 32;

/** A node path names folders of the document: a relative path (section 4.2), at most MAX_DEPTH deep. */
function checkNodePath(path: string): void {
  if (checkRelative(path).length > MAX_DEPTH) {
    throw new ManifestError(`zarr.json: consolidated metadata: node path ${JSON.stringify(path.slice(0, 100))}... is deeper than ${MAX_DEPTH} levels`);
  }
}

export class ManifestStore implements AsyncReadable {
  private readonly nodes = new Map<string, Promise<Node | undefined>>();
  private readonly manifests = new Map<string, Promise<Manifest>>();
  private readonly sources = new Map<string, Promise<Source>>();
  private readonly allow: AllowList;

  private constructor(
    readonly location: Location,
    private readonly options: OpenOptions,
    private readonly consolidated: boolean,
  ) {
    this.allow = new AllowList(location, options.allow);
  }

  /** Open the document whose root `zarr.json` is in `document` (a local folder or an HTTP(S) URL). */
  static async open(document: string | URL, options: OpenOptions = {}): Promise<ManifestStore> {
    registerCodecs();
    const location = documentLocation(document);
    const probe = new ManifestStore(location, options, false);
    const root = await probe.readJson("zarr.json");
    if (root === undefined) throw new ManifestError(`${document}: there is no zarr.json`);
    const consolidated = isObject(root.consolidated_metadata) ? root.consolidated_metadata : undefined;
    const store = new ManifestStore(location, options, consolidated !== undefined);
    store.nodes.set("", Promise.resolve(store.readNode("", root)));
    if (consolidated) {
      if (consolidated.kind !== "inline") throw new ManifestError("zarr.json: consolidated_metadata.kind must be inline");
      const members = object(consolidated.metadata, "zarr.json: consolidated_metadata.metadata");
      for (const [path, metadata] of Object.entries(members)) {
        checkNodePath(path);
        store.nodes.set(path, Promise.resolve(store.readNode(path, object(metadata, `zarr.json: consolidated metadata of ${path}`))));
      }
    }
    return store;
  }

  /** The `data_type` an array's document writes (zarrita may be served a stand-in, see dtypes.ts). */
  async dataType(path: string): Promise<Json> {
    const node = await this.node(path);
    if (node?.kind !== "array") throw new ManifestError(`${path} is not an array of the document`);
    return node.array.dataType;
  }

  /** The path of every array of the document (`""` for a root array). */
  async arrays(): Promise<string[]> {
    if ((await this.node(""))?.kind === "array") return [""];
    let paths = [...this.nodes.keys()];
    if (!this.consolidated) {
      if (this.location.kind !== "file") throw new ManifestError("without consolidated metadata, a document over HTTP cannot be listed");
      const { listNodes } = await import("./local.js");
      paths = await listNodes(this.location.path);
    }
    const found: string[] = [];
    for (const path of paths.sort()) {
      if (found.some((a) => isInside(path, a))) continue; // the manifest group inside an array
      if ((await this.node(path))?.kind === "array") found.push(path);
    }
    return found;
  }

  /** Close the sources opened so far (local file handles). */
  async close(): Promise<void> {
    const opened = [...this.sources.values()];
    this.sources.clear();
    await Promise.all(opened.map((s) => s.then((source) => source.close(), () => undefined)));
  }

  async get(key: AbsolutePath): Promise<Uint8Array | undefined> {
    const path = key.replace(/^\/+/, "");
    if (path === "zarr.json" || path.endsWith("/zarr.json")) {
      const node = await this.node(path.slice(0, -"zarr.json".length).replace(/\/$/, ""));
      return node && encoder.encode(stringifyJson(node.kind === "array" ? node.array.served : node.served));
    }
    const target = await this.arrayOf(path);
    if (!target) return undefined;
    const chunk = await (await this.manifest(target.array)).chunk(target.coords);
    if (chunk === undefined) return undefined;
    if ("data" in chunk) return chunk.data.slice();
    const source = await this.source(target.array, chunk.path);
    return source.read(chunk.offset, chunk.length);
  }

  /** The array a chunk key belongs to, and the chunk's grid coordinates. */
  private async arrayOf(key: string): Promise<{ array: ArrayNode; coords: number[] } | undefined> {
    for (let cut = key.lastIndexOf("/"); ; cut = key.lastIndexOf("/", cut - 1)) {
      const node = await this.node(cut < 0 ? "" : key.slice(0, cut), false);
      if (node?.kind === "array") {
        const coords = node.array.chunkCoords(key.slice(cut + 1));
        return coords && { array: node.array, coords };
      }
      if (cut < 0) return undefined;
    }
  }

  /** A node by path; without consolidated metadata, read from its `zarr.json` (if `load`). */
  private node(path: string, load = true): Promise<Node | undefined> {
    let node = this.nodes.get(path);
    if (!node && !this.consolidated && load) {
      node = this.readJson(path ? `${path}/zarr.json` : "zarr.json").then((m) => m && this.readNode(path, m));
      this.nodes.set(path, node);
    }
    return node ?? Promise.resolve(undefined);
  }

  private readNode(path: string, metadata: JsonObject): Node {
    if (metadata.node_type === "array") return { kind: "array", array: readArray(path, metadata, this.options.maxChunks ?? 2 ** 32) };
    if (metadata.node_type !== "group") throw new ManifestError(`${path || "the root"}: node_type must be array or group`);
    const served: JsonObject = { zarr_format: 3n, node_type: "group", attributes: object(metadata.attributes ?? {}, `${path}: attributes`) };
    return { kind: "group", served };
  }

  private manifest(array: ArrayNode): Promise<Manifest> {
    let manifest = this.manifests.get(array.path);
    if (!manifest) {
      manifest = this.loadManifest(array);
      this.manifests.set(array.path, manifest);
    }
    return manifest;
  }

  private async loadManifest(array: ArrayNode): Promise<Manifest> {
    const { encoding, manifest: name, sources, parts } = array.transformer;
    let manifest: Manifest;
    if (parts) {
      const grids = parts.parts.map((part) => array.grid.map((n, k) => (k === parts.axis ? part.extent : n)));
      const opened = await Promise.all(parts.parts.map((part, i) => this.openManifest(array, part.encoding, part.manifest, part.sources, grids[i])));
      manifest = new PartsManifest(parts.axis, parts.parts, opened, `${array.path}/zarr.json`);
    } else {
      manifest = await this.openManifest(array, encoding as "json" | "columnar", name, sources, array.grid);
    }
    for (const path of manifest.paths) this.resolve(path);
    return manifest;
  }

  /** One manifest (an array's, or one part of it) in the array's folder, over `grid`. */
  private async openManifest(array: ArrayNode, encoding: "json" | "columnar", name: string, sources: Json | undefined, grid: number[]): Promise<Manifest> {
    const folder = [array.path, ...checkRelative(name)].filter(Boolean).join("/");
    if (encoding === "columnar") return ColumnarManifest.open((file) => this.readFile(file), folder, grid);
    const bytes = await this.readFile(folder);
    if (!bytes) throw new ManifestError(`${folder} is missing`);
    return JsonManifest.read(parseJsonFile(bytes, folder), grid, sources, folder);
  }

  /** Where a reference's path points, or a ForbiddenPathError (section 4.2). */
  private resolve(path: string): Location {
    if (!isAbsolute(path)) return join(this.location, checkRelative(path));
    const location = absoluteLocation(path);
    this.allow.check(location, path);
    return location;
  }

  private source(array: ArrayNode, path: string): Promise<Source> {
    let source = this.sources.get(path);
    if (!source) {
      source = this.openSource(array, path);
      this.sources.set(path, source);
    }
    return source;
  }

  private async openSource(array: ArrayNode, path: string): Promise<Source> {
    const manifest = await this.manifest(array);
    const location = this.resolve(path);
    const folders = isAbsolute(path) ? [this.location, ...this.allow.prefixes] : [this.location];
    return openSource(location, path, manifest.fingerprints.get(path), {
      fetch: this.options.fetch,
      insideReal: (real) => insideReal(real, folders),
    });
  }

  private async readJson(file: string): Promise<JsonObject | undefined> {
    const bytes = await this.readFile(file);
    return bytes && object(parseJsonFile(bytes, file), file);
  }

  /** A file of the document by its path relative to the document folder; undefined if it does not exist. */
  private async readFile(file: string): Promise<Uint8Array | undefined> {
    const location = join(this.location, file.split("/"));
    if (location.kind === "file") return (await import("./local.js")).readLocalFile(location.path);
    const response = await (this.options.fetch ?? defaultFetch)(location.url);
    if (response.status === 404 || response.status === 403) return undefined;
    if (!response.ok) throw new MissingSourceError(`${location.url} answers ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }
}

/** Whether a real local path lies inside the real path of one of `folders`. */
async function insideReal(real: string, folders: Location[]): Promise<boolean> {
  const { realPathOf } = await import("./local.js");
  for (const folder of folders) {
    if (folder.kind === "file" && isInside(real, await realPathOf(folder.path))) return true;
  }
  return false;
}
