/**
 * A static HTTP server with `Range` support (206 / 416), for the tests and
 * the browser check: serves the files under `root`, never outside it.
 */

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { type Server, createServer } from "node:http";
import { extname, resolve, sep } from "node:path";

const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json" };

/**
 * Start serving `root` on a free loopback port, and each folder of `mounts`
 * under its URL prefix (`{"/document/": "/tmp/x"}`); resolves to the server
 * and its base URL.
 */
export async function serve(
  root: string,
  mounts: Record<string, string> = {},
): Promise<{ server: Server; url: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer(async (request, response) => {
    requests.push(`${request.method} ${request.url} ${request.headers.range ?? ""}`.trim());
    const wanted = decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname);
    const [prefix, folder] = Object.entries(mounts).find(([p]) => wanted.startsWith(p)) ?? ["/", root];
    const path = resolve(folder, `./${wanted.slice(prefix.length)}`);
    const info = path.startsWith(resolve(folder) + sep) ? await stat(path).catch(() => undefined) : undefined;
    if (!info?.isFile()) {
      response.writeHead(404).end();
      return;
    }
    const headers = { "Content-Type": TYPES[extname(path)] ?? "application/octet-stream", "Accept-Ranges": "bytes" };
    const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? "");
    if (!range) {
      response.writeHead(200, { ...headers, "Content-Length": info.size });
      createReadStream(path).pipe(response);
      return;
    }
    const start = Number(range[1]);
    const end = Math.min(Number(range[2]), info.size - 1);
    if (start >= info.size || end < start) {
      response.writeHead(416, { "Content-Range": `bytes */${info.size}` }).end();
      return;
    }
    response.writeHead(206, { ...headers, "Content-Length": end - start + 1, "Content-Range": `bytes ${start}-${end}/${info.size}` });
    createReadStream(path, { start, end }).pipe(response);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const address = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${address.port}`, requests };
}
