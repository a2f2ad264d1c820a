/**
 * The allow-list (section 4.2): the document folder and the prefixes a user
 * allowed are the only places a reader reads from. Prefixes are matched by
 * whole path segments (`/data` allows `/data/f.nc`, not `/database/f.nc`),
 * after `file://` URLs become local paths and `.`/`..` segments are resolved.
 */

import { ForbiddenPathError } from "./errors.js";
import { type Location, absoluteLocation, describe, isInside } from "./paths.js";

export class AllowList {
  readonly prefixes: Location[];

  constructor(
    readonly document: Location,
    prefixes: readonly string[] = [],
  ) {
    this.prefixes = prefixes.map((p) => absoluteLocation(p));
  }

  /** Throw a ForbiddenPathError unless `location` lies in the document folder or under an allowed prefix. */
  check(location: Location, written: string): void {
    const allowed = [this.document, ...this.prefixes].some((p) => within(location, p));
    if (!allowed) {
      throw new ForbiddenPathError(
        `${written} lies outside the document folder (${describe(this.document)}) and every allowed prefix; allow its folder to read it`,
      );
    }
  }
}

function within(location: Location, prefix: Location): boolean {
  if (location.kind === "file" && prefix.kind === "file") return isInside(location.path, prefix.path);
  if (location.kind === "url" && prefix.kind === "url") return isInside(location.url, prefix.url);
  return false;
}
