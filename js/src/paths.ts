/**
 * Source paths (section 4.1) and what a reader may read (section 4.2).
 *
 * A *location* is where bytes live: a local file or folder (an absolute
 * path) or an HTTP(S) URL. The document folder is a location; every path a
 * manifest writes is turned into one here, or refused.
 */

import { ForbiddenPathError, ManifestError, UnsupportedError } from "./errors.js";

export type Location = { kind: "file"; path: string } | { kind: "url"; url: string };

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Absolute paths start with `/` or with a URL scheme followed by `://`. */
export function isAbsolute(path: string): boolean {
  return path.startsWith("/") || SCHEME.test(path);
}

/**
 * The segments of a relative path (section 4.1). A malformed path (empty, an
 * empty segment, a backslash, a control character) is a ManifestError; one
 * that names or leaves its folder (`.` or `..`, also percent-encoded, or a
 * segment hiding a separator) is a ForbiddenPathError.
 */
export function checkRelative(path: string): string[] {
  const malformed = (why: string): never => {
    throw new ManifestError(`relative path ${JSON.stringify(path)} is malformed: ${why}`);
  };
  if (path === "") malformed("it is empty");
  if (path.includes("\\")) malformed("it contains a backslash");
  if (CONTROL.test(path)) malformed("it contains a control character");
  const segments = path.split("/");
  for (const segment of segments) {
    if (segment === "") malformed("it has an empty segment");
    const decoded = percentDecode(segment);
    if (decoded === "." || decoded === ".." || decoded.includes("/") || decoded.includes("\\")) {
      throw new ForbiddenPathError(`relative path ${JSON.stringify(path)}: the segment ${JSON.stringify(segment)} would leave its folder`);
    }
  }
  return segments;
}

/** `%XX` escapes replaced by their bytes (read as Latin-1: only `.`, `/` and `\` matter here). */
function percentDecode(segment: string): string {
  return segment.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The location of the document folder given as a local path, a `file://` URL or an HTTP(S) URL. */
export function documentLocation(where: string | URL): Location {
  const text = where.toString();
  if (/^https?:\/\//i.test(text)) return { kind: "url", url: text.endsWith("/") ? text.slice(0, -1) : text };
  const path = text.startsWith("file://") ? fileUrlPath(text) : text;
  if (!path.startsWith("/")) throw new UnsupportedError(`the document location ${text} is not absolute`);
  return { kind: "file", path: normalisePath(path) };
}

/** The location a relative path (already checked) names inside `folder`. */
export function join(folder: Location, segments: string[]): Location {
  if (folder.kind === "file") return { kind: "file", path: [folder.path === "/" ? "" : folder.path, ...segments].join("/") };
  return { kind: "url", url: [folder.url, ...segments.map(encodeSegment)].join("/") };
}

/** A segment as a URL path segment: taken literally, so `%`, spaces and non-ASCII are percent-encoded. */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The location an absolute path names: a local path, a `file://` URL or an HTTP(S) URL. */
export function absoluteLocation(path: string): Location {
  if (path.startsWith("/")) return { kind: "file", path: normalisePath(path) };
  const scheme = SCHEME.exec(path)![1].toLowerCase();
  if (scheme === "file") return { kind: "file", path: normalisePath(fileUrlPath(path)) };
  if (scheme === "http" || scheme === "https") return { kind: "url", url: new URL(path).href };
  throw new UnsupportedError(`${path}: this reader has no client for ${scheme}:// sources`);
}

/** The local path of a `file://` URL (RFC 8089: an empty host or `localhost`, percent-decoded). */
function fileUrlPath(url: string): string {
  const rest = url.slice("file://".length);
  const slash = rest.indexOf("/");
  const host = slash < 0 ? rest : rest.slice(0, slash);
  if (host !== "" && host.toLowerCase() !== "localhost") {
    throw new ForbiddenPathError(`${url}: a file:// URL names a host (${host})`);
  }
  try {
    return decodeURIComponent(slash < 0 ? "/" : rest.slice(slash));
  } catch {
    throw new ForbiddenPathError(`${url}: malformed percent-encoding`);
  }
}

/** `/a/./b/../c` as `/a/c` (no file system access); `..` cannot climb above `/`. */
export function normalisePath(path: string): string {
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") out.pop();
    else out.push(segment);
  }
  return `/${out.join("/")}`;
}

/** Whether `inner` is `outer` or lies inside it, comparing whole path segments. */
export function isInside(inner: string, outer: string): boolean {
  const folder = outer.endsWith("/") ? outer : `${outer}/`;
  return inner === outer || inner === folder.slice(0, -1) || inner.startsWith(folder);
}

/** The text of a location, for messages and comparisons. */
export function describe(location: Location): string {
  return location.kind === "file" ? location.path : location.url;
}
