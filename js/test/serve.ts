/** `node dist/test/serve.js ROOT`: serve ROOT (with Range support) until stdin closes; prints the URL. */

import { serve } from "./server.js";

const { server, url } = await serve(process.argv[2] ?? ".");
console.log(url);
process.stdin.resume();
process.stdin.on("end", () => server.close());
