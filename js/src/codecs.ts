/**
 * Codecs zarrita lacks for what chunk-manifest documents hold, added to
 * zarrita's registry by {@link registerCodecs}:
 *
 * - `crc32c` that verifies the checksum (zarrita's only strips it): a source
 *   that changed under a reference must not decode into garbage;
 * - `vlen-bytes` (variable-length bytes, zarr-python's `variable_length_bytes`
 *   data type, served to zarrita as `v2:object` holding `Uint8Array`s).
 */

import { registry } from "zarrita";
import { stripChecksum } from "./crc32c.js";

/** Thrown by the verifying crc32c codec. */
export class ChecksumError extends Error {
  override name = "ChecksumError";
}

class VerifyingCrc32c {
  readonly kind = "bytes_to_bytes";
  static fromConfig(): VerifyingCrc32c {
    return new VerifyingCrc32c();
  }
  async encode(): Promise<Uint8Array> {
    throw new Error("crc32c: encoding is not implemented (this store is read-only)");
  }
  async decode(bytes: Uint8Array): Promise<Uint8Array> {
    const body = stripChecksum(bytes);
    if (!body) throw new ChecksumError("crc32c: the chunk's checksum does not match its bytes");
    return body;
  }
  computeEncodedSize(decodedSize: number): number {
    return decodedSize + 4;
  }
}

function cOrderStrides(shape: number[]): number[] {
  const strides = shape.map(() => 1);
  for (let i = shape.length - 2; i >= 0; i--) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

class VlenBytes {
  readonly kind = "array_to_bytes";
  constructor(readonly shape: number[]) {}
  static fromConfig(_: unknown, meta: { shape: number[] }): VlenBytes {
    return new VlenBytes(meta.shape);
  }
  encode(): Uint8Array {
    throw new Error("vlen-bytes: encoding is not implemented (this store is read-only)");
  }
  decode(bytes: Uint8Array): { data: Uint8Array[]; shape: number[]; stride: number[] } {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const count = view.getUint32(0, true);
    const expected = this.shape.reduce((a, b) => a * b, 1);
    if (count !== expected) throw new Error(`vlen-bytes: ${count} items in a chunk of ${expected}`);
    const data: Uint8Array[] = [];
    let at = 4;
    for (let i = 0; i < count; i++) {
      const length = view.getUint32(at, true);
      at += 4;
      if (at + length > bytes.length) throw new Error("vlen-bytes: an item runs past the chunk");
      data.push(bytes.slice(at, at + length));
      at += length;
    }
    return { data, shape: this.shape, stride: cOrderStrides(this.shape) };
  }
}

let registered = false;

/** Add the codecs above to zarrita's registry (once; ManifestStore.open calls it). */
export function registerCodecs(): void {
  if (registered) return;
  registered = true;
  const add = (name: string, codec: unknown) => registry.set(name, async () => codec as never);
  add("crc32c", VerifyingCrc32c);
  add("vlen-bytes", VlenBytes);
  add("numcodecs.vlen-bytes", VlenBytes);
}
