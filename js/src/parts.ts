/**
 * Manifests in parts (section 2.1): an array's references held by several JSON or
 * columnar manifests laid end to end along one axis, each giving the array its first
 * `used` chunks along it. Every part is opened when the array is first read.
 */

import { ManifestError } from "./errors.js";
import { type Chunk, type Manifest } from "./references.js";
import type { Json } from "./json.js";
import type { Fingerprint } from "./source.js";

/** A part as the transformer's configuration lists it. */
export interface PartSpec {
  /** Its manifest's path relative to the array's folder. */
  manifest: string;
  encoding: "json" | "columnar";
  /** Its chunk grid's length along the axis. */
  extent: number;
  /** How many of those chunks the array uses (the first ones). */
  used: number;
  /** Its fingerprints (JSON encoding), unparsed. */
  sources: Json | undefined;
}

/** The most parts one array's manifest may have (fixed by the specification). */
export const MAX_PARTS = 2 ** 16;

export class PartsManifest implements Manifest {
  readonly paths: readonly string[];
  readonly fingerprints: ReadonlyMap<string, Fingerprint>;
  private readonly starts: number[];

  constructor(
    private readonly axis: number,
    private readonly specs: readonly PartSpec[],
    private readonly parts: readonly Manifest[],
    where: string,
  ) {
    let start = 0;
    this.starts = specs.map((spec) => {
      const first = start;
      start += spec.used;
      return first;
    });
    this.paths = [...new Set(parts.flatMap((part) => part.paths))];
    const fingerprints = new Map<string, Fingerprint>();
    for (const part of parts) {
      for (const [path, fingerprint] of part.fingerprints) {
        const known = fingerprints.get(path);
        if (known && !agree(known, fingerprint)) throw new ManifestError(`${where}: the parts record source ${path} with different fingerprints`);
        fingerprints.set(path, known ?? fingerprint);
      }
    }
    this.fingerprints = fingerprints;
  }

  async chunk(coords: number[]): Promise<Chunk | undefined> {
    const position = coords[this.axis];
    let i = this.starts.length - 1;
    while (i > 0 && this.starts[i] > position) i--;
    const local = coords.slice();
    local[this.axis] = position - this.starts[i];
    if (local[this.axis] >= this.specs[i].used) return undefined;
    return this.parts[i].chunk(local);
  }
}

/** Two fingerprints of one source agree where both record a field. */
function agree(a: Fingerprint, b: Fingerprint): boolean {
  return (
    (a.size === undefined || b.size === undefined || a.size === b.size) &&
    (a.mtimeNs === undefined || b.mtimeNs === undefined || a.mtimeNs === b.mtimeNs) &&
    (a.etag === undefined || b.etag === undefined || a.etag === b.etag)
  );
}
