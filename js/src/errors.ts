/**
 * The errors a reader of chunk-manifest documents raises, one class per
 * category of section 9 of the specification (plus `unsupported`).
 */

import { isZarritaError } from "zarrita";

/** The refusal categories of the specification (section 9). */
export type Category =
  | "invalid-document"
  | "forbidden-path"
  | "missing-source"
  | "source-changed"
  | "unsupported";

/** Base class: every refusal names its category. */
export abstract class ChunkManifestError extends Error {
  abstract readonly category: Category;
}

/** The document is malformed: a file, a field or a value breaks the specification. */
export class ManifestError extends ChunkManifestError {
  readonly category = "invalid-document";
  override name = "ManifestError";
}

/** A path the allow-list or the relative-path rules refuse. */
export class ForbiddenPathError extends ChunkManifestError {
  readonly category = "forbidden-path";
  override name = "ForbiddenPathError";
}

/** A referenced source that does not exist. */
export class MissingSourceError extends ChunkManifestError {
  readonly category = "missing-source";
  override name = "MissingSourceError";
}

/** A source that no longer matches its fingerprint, or is shorter than a reference. */
export class SourceChangedError extends ChunkManifestError {
  readonly category = "source-changed";
  override name = "SourceChangedError";
}

/** A valid document that uses a Zarr feature this reader does not implement. */
export class UnsupportedError extends ChunkManifestError {
  readonly category = "unsupported";
  override name = "UnsupportedError";
}

/**
 * The category of an error or of any error in its `cause` chain; undefined if none.
 * zarrita's own refusal of a codec it has no implementation of (the package's
 * format codecs, say) is `unsupported`.
 */
export function categoryOf(error: unknown): Category | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (e instanceof ChunkManifestError) return e.category;
    if (isZarritaError(e, "UnknownCodecError")) return "unsupported";
  }
  return undefined;
}
