/** What every kind of source shares: its fingerprint and how it is read. */

/** What a source looked like when it was scanned; absent fields are not checked. */
export interface Fingerprint {
  size?: bigint;
  mtimeNs?: bigint;
  etag?: string;
}

/** One source, opened: reads exactly `length` bytes at `offset`, or throws. */
export interface Source {
  read(offset: bigint, length: bigint): Promise<Uint8Array>;
  close(): Promise<void>;
}
