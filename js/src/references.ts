/** Chunk references (section 4) and source fingerprints (section 5), as the manifests give them. */

import { ManifestError } from "./errors.js";
import { MAX_BYTE, byteCount, integer, object, string } from "./fields.js";
import type { Json } from "./json.js";
import type { Fingerprint } from "./source.js";

/** A chunk's bytes: a byte range of a source, or bytes held in the manifest itself. */
export type Chunk = { path: string; offset: bigint; length: bigint } | { data: Uint8Array };

/** The references of one array: a chunk by grid coordinates, or undefined if it is missing. */
export interface Manifest {
  /** Every source path the manifest may reference (the path table, or the JSON manifest's paths). */
  readonly paths: readonly string[];
  readonly fingerprints: ReadonlyMap<string, Fingerprint>;
  chunk(coords: number[]): Promise<Chunk | undefined>;
}

const INT64 = 2n ** 63n;

/** Fingerprints by path (`sources`), checked field by field; unknown members are ignored. */
export function readFingerprints(value: Json | undefined, where: string): Map<string, Fingerprint> {
  const out = new Map<string, Fingerprint>();
  if (value === undefined) return out;
  for (const [path, entry] of Object.entries(object(value, where))) {
    const at = `${where}[${JSON.stringify(path)}]`;
    if (path === "") throw new ManifestError(`${where}: a fingerprint for the empty path`);
    const fields = object(entry, at);
    out.set(path, {
      size: fields.size === undefined ? undefined : byteCount(fields.size, `${at}.size`),
      mtimeNs: fields.mtime_ns === undefined ? undefined : integer(fields.mtime_ns, `${at}.mtime_ns`, -INT64, INT64 - 1n),
      etag: fields.etag === undefined ? undefined : string(fields.etag, `${at}.etag`),
    });
  }
  return out;
}

/** Refuse a reference that ends past 2^63 - 1 or past its source's recorded size. */
export function checkRange(path: string, offset: bigint, length: bigint, fingerprints: ReadonlyMap<string, Fingerprint>, where: string): void {
  const end = offset + length;
  if (end > MAX_BYTE) throw new ManifestError(`${where}: offset + length = ${end} is past 2^63 - 1`);
  const size = fingerprints.get(path)?.size;
  if (size !== undefined && end > size) {
    throw new ManifestError(`${where}: the reference ends at ${end}, past the ${size} bytes recorded for ${path}`);
  }
}

/** A reference or an inline chunk of the JSON encoding (section 6). */
export function readEntry(value: Json, where: string): Chunk {
  const entry = object(value, where);
  const isInline = "data" in entry;
  if (isInline) {
    if ("path" in entry || "offset" in entry || "length" in entry) {
      throw new ManifestError(`${where}: an inline chunk has data and none of path, offset and length`);
    }
    return { data: decodeBase64(string(entry.data, `${where}.data`), `${where}.data`) };
  }
  const path = string(entry.path, `${where}.path`);
  if (path === "") throw new ManifestError(`${where}.path is empty`);
  return { path, offset: byteCount(entry.offset, `${where}.offset`), length: byteCount(entry.length, `${where}.length`) };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 with padding (RFC 4648 section 4); anything else is refused. */
export function decodeBase64(text: string, where: string): Uint8Array {
  if (!BASE64.test(text)) throw new ManifestError(`${where} is not standard base64 with padding`);
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
