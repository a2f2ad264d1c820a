/**
 * The columnar encoding (section 7): `path_index`, `offset`, `length` (and
 * `inline`) are Zarr arrays in the array's `manifest/` group, read one block
 * (one column chunk) at a time, each block checked whole when it is loaded.
 */

import { registry } from "zarrita";
import { stripChecksum } from "./crc32c.js";
import { ManifestError } from "./errors.js";
import { array, isObject, object, size, string } from "./fields.js";
import { type Json, parseJsonFile } from "./json.js";
import { type Chunk, type Manifest, checkRange, readFingerprints } from "./references.js";
import type { Fingerprint } from "./source.js";

/** Reads a file of the document by its path relative to the document folder; undefined if it does not exist. */
export type ReadFile = (path: string) => Promise<Uint8Array | undefined>;

const MISSING = 0xffffffff;
const INLINE = 0xfffffffe;
const MAX_PATHS = 4294967294;
const MAX_DECODED = 64 * 2 ** 20;
const MAX_COLUMN_CHUNKS = 2 ** 20;
const ITEM_SIZE = { uint8: 1, uint32: 4, uint64: 8 } as const;
type ColumnType = keyof typeof ITEM_SIZE;

/** One column array of the restricted profile. */
class Column {
  constructor(
    readonly file: string,
    readonly dataType: ColumnType,
    readonly shape: number[],
    readonly chunkShape: number[],
    readonly key: (block: number[]) => string,
    readonly compressor: { name: string; configuration: Json } | undefined,
  ) {}

  /** The decoded values of one block: checksum verified, decoded size exact. */
  async block(read: ReadFile, block: number[]): Promise<Uint8Array | Uint32Array | BigUint64Array> {
    const key = `${this.file}/${this.key(block)}`;
    const stored = await read(key);
    if (!stored) throw new ManifestError(`${key}: a column chunk is missing (every chunk must be stored)`);
    let bytes = stripChecksum(stored);
    if (!bytes) throw new ManifestError(`${key}: the crc32c checksum does not match`);
    if (this.compressor) bytes = await decompress(this.compressor, bytes, key);
    const count = this.chunkShape.reduce((a, b) => a * b, 1);
    if (bytes.length !== count * ITEM_SIZE[this.dataType]) {
      throw new ManifestError(`${key}: decodes to ${bytes.length} bytes, not the ${count * ITEM_SIZE[this.dataType]} of a chunk`);
    }
    const aligned = bytes.slice().buffer;
    if (this.dataType === "uint8") return new Uint8Array(aligned);
    return this.dataType === "uint32" ? new Uint32Array(aligned) : new BigUint64Array(aligned);
  }
}

async function decompress(compressor: { name: string; configuration: Json }, bytes: Uint8Array, key: string): Promise<Uint8Array> {
  const entry = await registry.get(compressor.name)!();
  const codec = entry.fromConfig(compressor.configuration ?? {}, { dataType: "uint8", shape: [bytes.length], codecs: [], fillValue: 0 } as never);
  try {
    const out = (await codec.decode(bytes)) as Uint8Array;
    if (out.length > MAX_DECODED) throw new ManifestError(`${key}: decodes to more than 64 MiB`);
    return out;
  } catch (cause) {
    throw new ManifestError(`${key}: ${compressor.name} cannot decode it`, { cause });
  }
}

function readColumn(value: Json | undefined, file: string, allowed: ColumnType[]): Column {
  const meta = object(value, `${file}/zarr.json`);
  const where = `${file} (consolidated in manifest/zarr.json)`;
  const dataType = meta.data_type as ColumnType;
  if (meta.node_type !== "array" || !allowed.includes(dataType)) throw new ManifestError(`${where}: must be an array of ${allowed.join(" or ")}`);
  const grid = object(meta.chunk_grid, `${where}: chunk_grid`);
  if (grid.name !== "regular") throw new ManifestError(`${where}: the chunk grid must be regular`);
  const shape = array(meta.shape, `${where}: shape`).map((n, i) => size(n, `${where}: shape[${i}]`));
  const chunkShape = array(object(grid.configuration, `${where}: chunk_grid.configuration`).chunk_shape, `${where}: chunk_shape`).map((n, i) =>
    size(n, `${where}: chunk_shape[${i}]`, 1),
  );
  if (chunkShape.length !== shape.length) throw new ManifestError(`${where}: chunk_shape and shape differ in rank`);
  const blocks = shape.reduce((a, n, i) => a * Math.ceil(n / chunkShape[i]), 1);
  if (blocks > MAX_COLUMN_CHUNKS) throw new ManifestError(`${where}: more than 2^20 chunks`);
  if (chunkShape.reduce((a, b) => a * b, 1) * ITEM_SIZE[dataType] > MAX_DECODED) throw new ManifestError(`${where}: chunks decode to more than 64 MiB`);
  return new Column(file, dataType, shape, chunkShape, keyEncoder(meta.chunk_key_encoding, where), readCodecs(meta.codecs, where));
}

function keyEncoder(value: Json | undefined, where: string): (block: number[]) => string {
  const encoding = object(value, `${where}: chunk_key_encoding`);
  const config = isObject(encoding.configuration) ? encoding.configuration : {};
  if (encoding.name !== "default" && encoding.name !== "v2") throw new ManifestError(`${where}: chunk_key_encoding must be default or v2`);
  const separator = config.separator ?? (encoding.name === "default" ? "/" : ".");
  if (separator !== "/" && separator !== ".") throw new ManifestError(`${where}: the separator must be "/" or "."`);
  if (encoding.name === "default") return (block) => ["c", ...block].join(separator);
  return (block) => block.join(separator) || "0";
}

/** `bytes` (little endian), at most one of blosc / zstd / gzip, then `crc32c`: the compressor, if any. */
function readCodecs(value: Json | undefined, where: string): { name: string; configuration: Json } | undefined {
  const codecs = array(value, `${where}: codecs`).map((c, i) => object(c, `${where}: codecs[${i}]`));
  const names = codecs.map((c) => c.name);
  const endian = isObject(codecs[0]?.configuration) ? codecs[0].configuration.endian : undefined;
  const middle = names.slice(1, -1);
  const valid =
    names[0] === "bytes" &&
    (endian === undefined || endian === "little") &&
    names.at(-1) === "crc32c" &&
    middle.length <= 1 &&
    middle.every((n) => n === "blosc" || n === "zstd" || n === "gzip");
  if (!valid) throw new ManifestError(`${where}: codecs must be bytes (little endian), at most one of blosc, zstd, gzip, then crc32c; found ${names.join(", ")}`);
  return middle.length ? { name: String(middle[0]), configuration: codecs[1].configuration ?? {} } : undefined;
}

interface Block {
  pathIndex: Uint32Array;
  offset: BigUint64Array;
  length: Uint32Array | BigUint64Array;
}

export class ColumnarManifest implements Manifest {
  private readonly blocks = new Map<string, Promise<Block>>();

  private constructor(
    private readonly read: ReadFile,
    readonly paths: readonly string[],
    readonly fingerprints: ReadonlyMap<string, Fingerprint>,
    private readonly grid: number[],
    private readonly columns: { pathIndex: Column; offset: Column; length: Column; inline?: Column },
  ) {}

  /** Read `<folder>/zarr.json` and check the columns' metadata against the array's chunk grid. */
  static async open(read: ReadFile, folder: string, grid: number[]): Promise<ColumnarManifest> {
    const file = `${folder}/zarr.json`;
    const bytes = await read(file);
    if (!bytes) throw new ManifestError(`${file} is missing`);
    const group = object(parseJsonFile(bytes, file), file);
    if (group.node_type !== "group") throw new ManifestError(`${file}: must be a group`);
    const attributes = object(group.attributes, `${file}: attributes`);
    const paths = array(attributes.paths, `${file}: attributes.paths`).map((p, i) => string(p, `${file}: paths[${i}]`));
    if (paths.length > MAX_PATHS) throw new ManifestError(`${file}: more than ${MAX_PATHS} paths`);
    if (paths.some((p) => p === "")) throw new ManifestError(`${file}: an empty path in the path table`);
    const fingerprints = readFingerprints(attributes.sources, `${file}: attributes.sources`);
    const unknown = [...fingerprints.keys()].filter((p) => !paths.includes(p));
    if (unknown.length) throw new ManifestError(`${file}: fingerprints for paths not in the path table: ${unknown.join(", ")}`);
    const consolidated = object(group.consolidated_metadata, `${file}: consolidated_metadata`);
    const meta = object(consolidated.metadata, `${file}: consolidated_metadata.metadata`);
    const columns = {
      pathIndex: readColumn(meta.path_index, `${folder}/path_index`, ["uint32"]),
      offset: readColumn(meta.offset, `${folder}/offset`, ["uint64"]),
      length: readColumn(meta.length, `${folder}/length`, ["uint32", "uint64"]),
      inline: meta.inline === undefined ? undefined : readColumn(meta.inline, `${folder}/inline`, ["uint8"]),
    };
    for (const column of [columns.pathIndex, columns.offset, columns.length]) {
      if (column.shape.join() !== grid.join()) throw new ManifestError(`${column.file}: shape [${column.shape}] is not the chunk grid [${grid}]`);
      if (column.chunkShape.join() !== columns.pathIndex.chunkShape.join()) throw new ManifestError(`${column.file}: the columns' chunk shapes differ`);
    }
    if (columns.inline && columns.inline.shape.length !== 1) throw new ManifestError(`${columns.inline.file}: must be 1-dimensional`);
    return new ColumnarManifest(read, paths, fingerprints, grid, columns);
  }

  async chunk(coords: number[]): Promise<Chunk | undefined> {
    const chunkShape = this.columns.pathIndex.chunkShape;
    const blockCoords = coords.map((c, i) => Math.floor(c / chunkShape[i]));
    const block = await this.block(blockCoords);
    const i = coords.reduce((at, c, d) => at * chunkShape[d] + (c % chunkShape[d]), 0);
    const index = block.pathIndex[i];
    if (index === MISSING) return undefined;
    const offset = block.offset[i];
    const length = BigInt(block.length[i]);
    if (index === INLINE) return { data: await this.inlineBytes(offset, length) };
    return { path: this.paths[index], offset, length };
  }

  private block(coords: number[]): Promise<Block> {
    const key = coords.join(",");
    let block = this.blocks.get(key);
    if (!block) {
      block = this.loadBlock(coords);
      this.blocks.set(key, block);
    }
    return block;
  }

  private async loadBlock(coords: number[]): Promise<Block> {
    const [pathIndex, offset, length] = await Promise.all([
      this.columns.pathIndex.block(this.read, coords),
      this.columns.offset.block(this.read, coords),
      this.columns.length.block(this.read, coords),
    ]);
    const block = { pathIndex, offset, length } as Block;
    this.checkBlock(coords, block);
    return block;
  }

  /** Refuse a block holding a path index outside the table, an inline range past the end, or a range past a recorded size. */
  private checkBlock(coords: number[], block: Block): void {
    const chunkShape = this.columns.pathIndex.chunkShape;
    const inlineSize = BigInt(this.columns.inline?.shape[0] ?? 0);
    const where = `${this.columns.pathIndex.file} block ${coords.join(".")}`;
    forEachInside(coords, chunkShape, this.grid, (i) => {
      const index = block.pathIndex[i];
      const offset = block.offset[i];
      const length = BigInt(block.length[i]);
      if (index === MISSING) return;
      if (index === INLINE) {
        if (offset + length > inlineSize) throw new ManifestError(`${where}: an inline range ends at ${offset + length}, past the ${inlineSize} inline bytes`);
        return;
      }
      if (index >= this.paths.length) throw new ManifestError(`${where}: path_index ${index} is outside the path table (${this.paths.length} paths)`);
      checkRange(this.paths[index], offset, length, this.fingerprints, where);
    });
  }

  private async inlineBytes(offset: bigint, length: bigint): Promise<Uint8Array> {
    const column = this.columns.inline!;
    const size = column.chunkShape[0];
    const start = Number(offset);
    const end = start + Number(length);
    const out = new Uint8Array(end - start);
    for (let b = Math.floor(start / size); b * size < end; b++) {
      const bytes = (await column.block(this.read, [b])) as Uint8Array;
      const from = Math.max(start, b * size);
      const to = Math.min(end, (b + 1) * size);
      out.set(bytes.subarray(from - b * size, to - b * size), from - start);
    }
    return out;
  }
}

/** Call `visit` with the flat index (in the block) of every element of block `coords` that lies inside the grid. */
function forEachInside(coords: number[], chunkShape: number[], grid: number[], visit: (i: number) => void): void {
  const rank = chunkShape.length;
  const total = chunkShape.reduce((a, b) => a * b, 1);
  for (let i = 0; i < total; i++) {
    let rest = i;
    let inside = true;
    for (let d = rank - 1; d >= 0; d--) {
      const local = rest % chunkShape[d];
      rest = Math.floor(rest / chunkShape[d]);
      if (coords[d] * chunkShape[d] + local >= grid[d]) inside = false;
    }
    if (inside) visit(i);
  }
}
