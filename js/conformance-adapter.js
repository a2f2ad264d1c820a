#!/usr/bin/env node
// The conformance adapter of the JavaScript reader: see js/conformance/adapter.ts.
import { main } from "./dist/conformance/adapter.js";

await main(process.argv.slice(2));
