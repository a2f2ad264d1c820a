/**
 * The browser check: serve the repository and a document folder over HTTP
 * (with Range support), open browser/index.html in headless Chromium, and
 * report what the page shows.
 *
 *     node dist/browser/check.js DOCUMENT ARRAY SCREENSHOT.png
 *
 * Prints the page's values as JSON and writes a screenshot of its image;
 * exits 1 with the page's error if it could not read the array.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../test/server.js";

const JS = fileURLToPath(new URL("../..", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

const [document, array, screenshot] = process.argv.slice(2);
const { server, url } = await serve(JS, { "/document/": document });
const profile = await mkdtemp(`${tmpdir()}/chromium-profile-`);
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: FLAGS,
  viewport: { width: 800, height: 600 },
  deviceScaleFactor: 1,
});
try {
  const page = await browser.newPage();
  await page.goto(`${url}/browser/index.html?doc=/document/&array=${encodeURIComponent(array)}`);
  await page.waitForSelector("body:not([data-state=loading])", { timeout: 60_000 });
  if ((await page.getAttribute("body", "data-state")) !== "done") {
    console.error(await page.textContent("#error"));
    process.exitCode = 1;
  } else {
    console.log(await page.textContent("#values"));
    await page.locator("#image").screenshot({ path: screenshot });
  }
} finally {
  await browser.close();
  await rm(profile, { recursive: true, force: true });
  server.close();
}
