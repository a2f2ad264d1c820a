// Open the document ?doc=URL, read its 2-D array ?array=PATH through zarrita and
// @zarr-manifest/store, and show it: one grey cell of CELL pixels per value
// (black = smallest, white = largest), and the values as JSON.
import { ManifestStore } from "@zarr-manifest/store";
import * as zarr from "zarrita";

const CELL = 10;
const params = new URLSearchParams(location.search);

async function show() {
  const document_ = new URL(params.get("doc") ?? "", location.href).href;
  const path = params.get("array") ?? "";
  const store = await ManifestStore.open(document_);
  const array = await zarr.open(zarr.root(store).resolve(path), { kind: "array" });
  if (array.shape.length !== 2) throw new Error(`${path} has ${array.shape.length} dimensions, not 2`);
  const { data, shape, stride } = await zarr.get(array);
  const rows = Array.from({ length: shape[0] }, (_, i) => Array.from({ length: shape[1] }, (_, j) => Number(data[i * stride[0] + j * stride[1]])));
  draw(rows);
  document.getElementById("what").textContent = `${path}: ${array.dtype}, shape ${shape.join(" × ")}, from ${document_}`;
  document.getElementById("values").textContent = JSON.stringify({ shape, values: rows });
}

function draw(rows) {
  const flat = rows.flat();
  const lo = Math.min(...flat);
  const hi = Math.max(...flat);
  const canvas = document.getElementById("image");
  canvas.width = rows[0].length * CELL;
  canvas.height = rows.length * CELL;
  const context = canvas.getContext("2d");
  rows.forEach((row, i) =>
    row.forEach((value, j) => {
      const grey = hi > lo ? Math.round((255 * (value - lo)) / (hi - lo)) : 0;
      context.fillStyle = `rgb(${grey}, ${grey}, ${grey})`;
      context.fillRect(j * CELL, i * CELL, CELL, CELL);
    }),
  );
}

show().then(
  () => (document.body.dataset.state = "done"),
  (error) => {
    document.getElementById("error").textContent = `${error.name}: ${error.message}`;
    document.body.dataset.state = "error";
  },
);
