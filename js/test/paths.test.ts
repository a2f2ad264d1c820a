import assert from "node:assert/strict";
import { test } from "node:test";
import { AllowList } from "../src/allow.js";
import { ForbiddenPathError, ManifestError } from "../src/errors.js";
import { absoluteLocation, checkRelative, documentLocation, join } from "../src/paths.js";

test("relative paths that leave their folder are forbidden, malformed ones invalid", () => {
  for (const path of ["../x", "a/../../x", "%2e%2e/x", "a/%2E/b", "a%2fb", "a%5Cb"]) {
    assert.throws(() => checkRelative(path), ForbiddenPathError, path);
  }
  for (const path of ["", "a//b", "a\\b", "a/\u0000b", "a/"]) {
    assert.throws(() => checkRelative(path), ManifestError, path);
  }
  assert.deepEqual(checkRelative("data/relevé 1%.bin"), ["data", "relevé 1%.bin"]);
});

test("a relative path joined to a URL is percent-encoded, taken literally", () => {
  const folder = documentLocation("http://127.0.0.1:8000/doc.zarr/");
  assert.deepEqual(join(folder, checkRelative("données été/relevé 1%.bin")), {
    kind: "url",
    url: "http://127.0.0.1:8000/doc.zarr/donn%C3%A9es%20%C3%A9t%C3%A9/relev%C3%A9%201%25.bin",
  });
});

test("file:// URLs are local paths; a host other than localhost is refused", () => {
  assert.deepEqual(absoluteLocation("file:///data/a%20b.nc"), { kind: "file", path: "/data/a b.nc" });
  assert.deepEqual(absoluteLocation("file://localhost/data/x"), { kind: "file", path: "/data/x" });
  assert.throws(() => absoluteLocation("file://server/data/x"), ForbiddenPathError);
});

test("allowed prefixes match whole segments after '..' is resolved", () => {
  const allow = new AllowList(documentLocation("/doc"), ["/data", "file:///archive/", "https://host/bucket"]);
  const ok = (path: string) => allow.check(absoluteLocation(path), path);
  for (const path of ["/data/f.nc", "file:///data/sub/f.nc", "/archive/x", "/doc/data/x", "https://host/bucket/f.nc"]) {
    assert.doesNotThrow(() => ok(path), path);
  }
  for (const path of ["/database/f.nc", "/data/../etc/passwd", "/etc/passwd", "https://host/bucket-2/f", "http://host/bucket/f.nc"]) {
    assert.throws(() => ok(path), ForbiddenPathError, path);
  }
});
