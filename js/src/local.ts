/**
 * Local sources through Node's `fs`: regular files only, symbolic links
 * resolved and checked, fingerprints compared before the first read.
 */

import { open, realpath, type FileHandle } from "node:fs/promises";
import { ForbiddenPathError, MissingSourceError, SourceChangedError } from "./errors.js";
import type { Fingerprint, Source } from "./source.js";

export async function openLocal(
  path: string,
  written: string,
  fingerprint: Fingerprint | undefined,
  insideReal?: (realPath: string) => Promise<boolean>,
): Promise<Source> {
  const real = await realpath(path).catch((e) => missing(e, written));
  if (insideReal && !(await insideReal(real))) {
    throw new ForbiddenPathError(`${written} resolves (through a symbolic link) to ${real}, outside what may be read`);
  }
  const handle = await open(real, "r").catch((e) => missing(e, written));
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw new MissingSourceError(`${written} is not a regular file`);
    if (fingerprint?.size !== undefined && stats.size !== fingerprint.size) {
      throw new SourceChangedError(`${written} has ${stats.size} bytes, not the ${fingerprint.size} recorded`);
    }
    if (fingerprint?.mtimeNs !== undefined && stats.mtimeNs !== fingerprint.mtimeNs) {
      throw new SourceChangedError(`${written} was modified since it was scanned (mtime_ns ${stats.mtimeNs}, recorded ${fingerprint.mtimeNs})`);
    }
  } catch (e) {
    await handle.close();
    throw e;
  }
  return new LocalSource(handle, written);
}

function missing(error: NodeJS.ErrnoException, written: string): never {
  if (error.code === "ENOENT" || error.code === "ENOTDIR") throw new MissingSourceError(`${written} does not exist`);
  throw error;
}

/** The real path of `path` (its folder's, if it does not exist), for allow-list checks. */
export async function realPathOf(path: string): Promise<string> {
  return realpath(path).catch(() => path);
}

class LocalSource implements Source {
  constructor(
    readonly handle: FileHandle,
    readonly written: string,
  ) {}

  close(): Promise<void> {
    return this.handle.close();
  }

  async read(offset: bigint, length: bigint): Promise<Uint8Array> {
    if (offset + length > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`${this.written}: reading past byte 2^53 is not possible with Node's fs`);
    }
    const buffer = new Uint8Array(Number(length));
    let done = 0;
    while (done < buffer.length) {
      const { bytesRead } = await this.handle.read(buffer, done, buffer.length - done, Number(offset) + done);
      if (bytesRead === 0) {
        throw new SourceChangedError(`${this.written} is shorter than ${offset + length} bytes (a reference ends there)`);
      }
      done += bytesRead;
    }
    return buffer;
  }
}

/** Read a file of a local document; undefined if it does not exist. */
export async function readLocalFile(path: string): Promise<Uint8Array | undefined> {
  const { readFile } = await import("node:fs/promises");
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw e;
  }
}

/**
 * Paths (relative to `folder`) of every folder holding a `zarr.json`, for
 * documents without consolidated metadata. Symbolic links are not followed.
 */
export async function listNodes(folder: string): Promise<string[]> {
  const { readdir } = await import("node:fs/promises");
  const found: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(relative ? `${folder}/${relative}` : folder, { withFileTypes: true });
    if (entries.some((e) => e.isFile() && e.name === "zarr.json")) found.push(relative);
    for (const entry of entries) {
      if (entry.isDirectory()) await walk(relative ? `${relative}/${entry.name}` : entry.name);
    }
  };
  await walk("");
  return found;
}
