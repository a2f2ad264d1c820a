/**
 * Reading byte ranges of sources: local files (Node `fs`) and HTTP(S) URLs
 * (`fetch` with `Range`), each checked against its fingerprint (section 5)
 * before its first read.
 */

import { MissingSourceError, SourceChangedError } from "./errors.js";
import type { Location } from "./paths.js";
import type { Fingerprint, Source } from "./source.js";

/** Opens sources by location; `realFolders` are the real paths a local source must lie in. */
export interface SourceOptions {
  fetch?: typeof globalThis.fetch;
  /** Local only: the source's real path must lie inside one of these (symbolic links resolved). */
  insideReal?: (realPath: string) => Promise<boolean>;
}

export async function openSource(
  location: Location,
  written: string,
  fingerprint: Fingerprint | undefined,
  options: SourceOptions,
): Promise<Source> {
  if (location.kind === "file") {
    const local = await import("./local.js");
    return local.openLocal(location.path, written, fingerprint, options.insideReal);
  }
  return new HttpSource(location.url, written, fingerprint, options.fetch ?? defaultFetch);
}

/** The global `fetch`, called as a plain function (browsers refuse it as a method of another object). */
export const defaultFetch: typeof globalThis.fetch = (input, init) => globalThis.fetch(input, init);

/** A source over HTTP(S): one `Range` request per read; the ETag, if recorded, is enforced by `If-Match`. */
class HttpSource implements Source {
  #checkedSize = false;

  constructor(
    readonly url: string,
    readonly written: string,
    readonly fingerprint: Fingerprint | undefined,
    readonly fetch: typeof globalThis.fetch,
  ) {}

  async read(offset: bigint, length: bigint): Promise<Uint8Array> {
    if (length === 0n) return new Uint8Array(0);
    const headers: Record<string, string> = { Range: `bytes=${offset}-${offset + length - 1n}` };
    if (this.fingerprint?.etag !== undefined) headers["If-Match"] = `"${this.fingerprint.etag}"`;
    const response = await this.fetch(this.url, { headers });
    if (response.status === 404 || response.status === 410) {
      throw new MissingSourceError(`${this.written}: ${this.url} answers ${response.status}`);
    }
    if (response.status === 412) throw new SourceChangedError(`${this.written}: its ETag is no longer ${this.fingerprint?.etag}`);
    if (response.status === 416) throw new SourceChangedError(`${this.written} is shorter than ${offset + length} bytes`);
    if (response.status !== 206 && response.status !== 200) {
      throw new Error(`${this.written}: ${this.url} answers ${response.status} ${response.statusText}`);
    }
    this.checkSize(response);
    const body = new Uint8Array(await response.arrayBuffer());
    const bytes = response.status === 200 ? body.subarray(Number(offset), Number(offset + length)) : body;
    if (BigInt(bytes.length) !== length) {
      throw new SourceChangedError(`${this.written}: expected ${length} bytes at ${offset}, got ${bytes.length}`);
    }
    return bytes;
  }

  async close(): Promise<void> {}

  /** The total size in `Content-Range` against the recorded size, once. */
  private checkSize(response: Response): void {
    if (this.#checkedSize || this.fingerprint?.size === undefined) return;
    this.#checkedSize = true;
    const total = /\/(\d+)$/.exec(response.headers.get("Content-Range") ?? "")?.[1];
    if (total !== undefined && BigInt(total) !== this.fingerprint.size) {
      throw new SourceChangedError(`${this.written} has ${total} bytes, not the ${this.fingerprint.size} recorded`);
    }
  }
}
