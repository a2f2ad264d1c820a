/** The JSON encoding (section 6): `manifest.json`, read whole. */

import { gridCoords } from "./array.js";
import { ManifestError } from "./errors.js";
import { object } from "./fields.js";
import type { Json } from "./json.js";
import { type Chunk, type Manifest, checkRange, readEntry, readFingerprints } from "./references.js";
import type { Fingerprint } from "./source.js";

export class JsonManifest implements Manifest {
  readonly paths: readonly string[];

  private constructor(
    private readonly chunks: Map<string, Chunk>,
    readonly fingerprints: ReadonlyMap<string, Fingerprint>,
  ) {
    this.paths = [...new Set([...chunks.values()].flatMap((c) => ("path" in c ? [c.path] : [])))];
  }

  /** Check every key and entry of a parsed `manifest.json` against the array's chunk grid. */
  static read(parsed: Json, grid: number[], sources: Json | undefined, file: string): JsonManifest {
    const fingerprints = readFingerprints(sources, `${file}: configuration.sources`);
    const chunks = new Map<string, Chunk>();
    for (const [key, value] of Object.entries(object(parsed, file))) {
      const where = `${file}[${JSON.stringify(key)}]`;
      const coords = grid.length === 0 ? (key === "0" ? [] : undefined) : gridCoords(key.split("."), grid);
      if (!coords) throw new ManifestError(`${where}: not a canonical chunk key of the ${grid.length}-d grid [${grid}]`);
      const chunk = readEntry(value, where);
      if ("path" in chunk) checkRange(chunk.path, chunk.offset, chunk.length, fingerprints, where);
      chunks.set(keyOf(coords), chunk);
    }
    const manifest = new JsonManifest(chunks, fingerprints);
    const used = new Set(manifest.paths);
    const unused = [...fingerprints.keys()].filter((p) => !used.has(p));
    if (unused.length) throw new ManifestError(`${file}: fingerprints for paths no reference uses: ${unused.join(", ")}`);
    return manifest;
  }

  async chunk(coords: number[]): Promise<Chunk | undefined> {
    return this.chunks.get(keyOf(coords));
  }
}

function keyOf(coords: number[]): string {
  return coords.length ? coords.join(".") : "0";
}
