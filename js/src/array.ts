/**
 * One array of a document: its metadata checked (section 3), the
 * transformer's configuration read (sections 3, 8, 10), and the metadata
 * served to zarrita (without the transformer, in zarrita's dialect).
 */

import { servedType } from "./dtypes.js";
import { ManifestError, UnsupportedError } from "./errors.js";
import { type JsonObject, array, isObject, object, size, string } from "./fields.js";
import type { Json } from "./json.js";
import { MAX_PARTS, type PartSpec } from "./parts.js";

/** Where an array's references are: the JSON or columnar encoding, in a file of the array's folder. */
export interface Transformer {
  encoding: "json" | "columnar" | "parts";
  /** Path of the manifest relative to the array's folder (`manifest.json`, `manifest`, or prior art's). */
  manifest: string;
  /** `configuration.sources` (JSON encoding), unparsed. */
  sources: Json | undefined;
  /** The parts encoding's axis and parts (section 2.1). */
  parts?: { axis: number; parts: PartSpec[] };
}

export interface ArrayNode {
  path: string;
  shape: number[];
  chunkShape: number[];
  /** Number of chunks along each dimension. */
  grid: number[];
  transformer: Transformer;
  /** The array's `data_type` as the document writes it. */
  dataType: Json;
  /** The metadata zarrita is given. */
  served: JsonObject;
  /** Grid coordinates of a chunk key relative to the array, or undefined if it is none. */
  chunkCoords(key: string): number[] | undefined;
}

export const MAJOR_VERSION = 1;

/** Read an array's metadata; `maxChunks` bounds its chunk grid. */
export function readArray(path: string, metadata: JsonObject, maxChunks: number): ArrayNode {
  const where = `${path || "the root array"} (zarr.json)`;
  if (metadata.zarr_format !== 3n) throw new ManifestError(`${where}: zarr_format must be 3`);
  const transformer = readTransformer(metadata.storage_transformers, where);
  const shape = array(metadata.shape, `${where}: shape`).map((n, i) => size(n, `${where}: shape[${i}]`));
  const chunkShape = readChunkGrid(metadata.chunk_grid, shape.length, where);
  const grid = shape.map((n, i) => Math.ceil(n / chunkShape[i]));
  const chunks = grid.reduce((a, b) => a * b, 1);
  if (chunks > maxChunks) {
    throw new ManifestError(`${where}: ${chunks} chunks exceed the bound of ${maxChunks} (raise it with the maxChunks option)`);
  }
  const { dataType, fillValue } = servedType(metadata.data_type, metadata.fill_value, where);
  const encoding = readKeyEncoding(metadata.chunk_key_encoding, where);
  if (transformer.parts) checkParts(transformer.parts, grid, maxChunks, where);
  const codecs = array(metadata.codecs, `${where}: codecs`);
  const { storage_transformers: _t, chunk_manifest: _m, ...rest } = metadata;
  const served = { ...rest, data_type: dataType, fill_value: fillValue, codecs, attributes: metadata.attributes ?? {} };
  return {
    path,
    shape,
    chunkShape,
    grid,
    transformer,
    dataType: metadata.data_type ?? null,
    served,
    chunkCoords: (key) => decodeKey(key, encoding, grid),
  };
}

function readTransformer(value: Json | undefined, where: string): Transformer {
  const list = array(value ?? null, `${where}: storage_transformers`);
  if (list.length !== 1) throw new ManifestError(`${where}: storage_transformers must hold exactly one transformer, not ${list.length}`);
  const entry = object(list[0], `${where}: storage_transformers[0]`);
  const config = object(entry.configuration ?? {}, `${where}: the transformer's configuration`);
  if (entry.name === "chunk-manifest-json") {
    const manifest = string(config.manifest ?? "manifest.json", `${where}: configuration.manifest`);
    return { encoding: "json", manifest: manifest.replace(/^\.\//, ""), sources: undefined };
  }
  if (entry.name !== "chunk-manifest") throw new ManifestError(`${where}: unknown storage transformer ${JSON.stringify(entry.name)}`);
  const version = string(config.version, `${where}: configuration.version`);
  const match = /^(\d{1,9})\.(\d{1,9})$/.exec(version);
  if (!match) throw new ManifestError(`${where}: configuration.version ${JSON.stringify(version)} is not MAJOR.MINOR`);
  if (Number(match[1]) !== MAJOR_VERSION) throw new ManifestError(`${where}: version ${version}: this reader knows major version ${MAJOR_VERSION}`);
  const encoding = config.encoding;
  if (encoding === "parts") return { encoding, manifest: "", sources: undefined, parts: readParts(config, where) };
  if (encoding !== "json" && encoding !== "columnar") throw new ManifestError(`${where}: unknown encoding ${JSON.stringify(encoding)}`);
  if (encoding === "columnar" && config.sources !== undefined) throw new ManifestError(`${where}: a columnar manifest keeps its fingerprints in manifest/zarr.json`);
  return { encoding, manifest: encoding === "json" ? "manifest.json" : "manifest", sources: config.sources };
}

/** The parts encoding's configuration: an axis and 1 to MAX_PARTS parts. */
function readParts(config: JsonObject, where: string): { axis: number; parts: PartSpec[] } {
  if (config.sources !== undefined) throw new ManifestError(`${where}: a manifest in parts records fingerprints with each part`);
  const axis = size(config.axis, `${where}: configuration.axis`);
  const list = array(config.parts ?? null, `${where}: configuration.parts`);
  if (list.length < 1 || list.length > MAX_PARTS) throw new ManifestError(`${where}: configuration.parts: ${list.length} parts, not 1 to ${MAX_PARTS}`);
  const parts = list.map((value, i) => {
    const at = `${where}: configuration.parts[${i}]`;
    const part = object(value, at);
    const encoding = part.encoding;
    if (encoding !== "json" && encoding !== "columnar") throw new ManifestError(`${at}: unknown encoding ${JSON.stringify(encoding)}`);
    if (encoding === "columnar" && part.sources !== undefined) throw new ManifestError(`${at}: a columnar part keeps its fingerprints in its group`);
    const extent = size(part.extent, `${at}.extent`, 1);
    const used = part.used === undefined ? extent : size(part.used, `${at}.used`, 1);
    if (used > extent) throw new ManifestError(`${at}.used: ${used} is more than the extent ${extent}`);
    return { manifest: string(part.manifest, `${at}.manifest`), encoding, extent, used, sources: part.sources } as PartSpec;
  });
  return { axis, parts };
}

/** The parts must give exactly the grid's chunks along their axis, each part's grid bounded. */
function checkParts(spec: { axis: number; parts: PartSpec[] }, grid: number[], maxChunks: number, where: string): void {
  if (spec.axis >= grid.length) throw new ManifestError(`${where}: configuration.axis ${spec.axis} is not an axis of the chunk grid`);
  if (new Set(spec.parts.map((part) => part.manifest)).size !== spec.parts.length) {
    throw new ManifestError(`${where}: two parts name one manifest; each part has its own`);
  }
  const total = spec.parts.reduce((sum, part) => sum + part.used, 0);
  if (total !== grid[spec.axis]) throw new ManifestError(`${where}: the parts give ${total} chunks along axis ${spec.axis}, the grid has ${grid[spec.axis]}`);
  for (const part of spec.parts) {
    const chunks = grid.reduce((a, n, k) => a * (k === spec.axis ? part.extent : n), 1);
    if (chunks > maxChunks) throw new ManifestError(`${where}: a part's grid of ${chunks} chunks exceeds the bound of ${maxChunks} (raise it with the maxChunks option)`);
  }
}

function readChunkGrid(value: Json | undefined, rank: number, where: string): number[] {
  const grid = object(value, `${where}: chunk_grid`);
  if (grid.name === "rectilinear") throw new UnsupportedError(`${where}: zarrita has no rectilinear chunk grid`);
  if (grid.name !== "regular") throw new ManifestError(`${where}: unknown chunk grid ${JSON.stringify(grid.name)}`);
  const config = object(grid.configuration, `${where}: chunk_grid.configuration`);
  const chunks = array(config.chunk_shape, `${where}: chunk_shape`).map((n, i) => size(n, `${where}: chunk_shape[${i}]`, 1));
  if (chunks.length !== rank) throw new ManifestError(`${where}: chunk_shape has ${chunks.length} dimensions, shape ${rank}`);
  return chunks;
}

interface KeyEncoding {
  prefix: string;
  separator: string;
}

function readKeyEncoding(value: Json | undefined, where: string): KeyEncoding {
  const encoding = object(value, `${where}: chunk_key_encoding`);
  const config = isObject(encoding.configuration) ? encoding.configuration : {};
  if (encoding.name !== "default" && encoding.name !== "v2") {
    throw new ManifestError(`${where}: unknown chunk key encoding ${JSON.stringify(encoding.name)}`);
  }
  const separator = config.separator ?? (encoding.name === "default" ? "/" : ".");
  if (separator !== "/" && separator !== ".") throw new ManifestError(`${where}: chunk key separator must be "/" or "."`);
  return { prefix: encoding.name === "default" ? "c" : "", separator };
}

/** Coordinates of a chunk key (`c/0/1`, `0.1`, `c`, `0`), if canonical and inside the grid. */
function decodeKey(key: string, encoding: KeyEncoding, grid: number[]): number[] | undefined {
  let rest = key;
  if (encoding.prefix) {
    if (rest === encoding.prefix) return grid.length === 0 ? [] : undefined;
    if (!rest.startsWith(encoding.prefix + encoding.separator)) return undefined;
    rest = rest.slice(encoding.prefix.length + 1);
  } else if (grid.length === 0) {
    return rest === "0" ? [] : undefined;
  }
  return gridCoords(rest.split(encoding.separator), grid);
}

/** Canonical decimal coordinates inside the grid, or undefined. */
export function gridCoords(parts: string[], grid: number[]): number[] | undefined {
  if (parts.length !== grid.length) return undefined;
  const coords = parts.map((p) => (/^(0|[1-9]\d{0,15})$/.test(p) ? Number(p) : -1));
  return coords.every((c, i) => c >= 0 && c < grid[i]) ? coords : undefined;
}
