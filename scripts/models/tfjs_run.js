// Runs COCO-SSD's TF.js graph on images with TF.js itself (pure-JS CPU
// backend) and writes the tensors of the requested nodes.
//
//   node tfjs_run.js MODEL_DIR IMAGES.u8 N H W NODES.json OUT_DIR
//
// IMAGES.u8 holds N images of HxWx3 uint8 RGB (row-major, NHWC), what the
// graph's image_tensor placeholder takes. NODES.json is a list of node names;
// OUT_DIR/<i>.f32 gets node i's output (float32, little-endian) and
// OUT_DIR/shapes.json the shapes. Called by check_tfjs.py.
"use strict";
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs-core");
require("@tensorflow/tfjs-backend-cpu");
const converter = require("@tensorflow/tfjs-converter");

async function main() {
  const [modelDir, imagesPath, n, h, w, nodesPath, outDir] = process.argv.slice(2);
  if (!outDir) {
    console.error("usage: node tfjs_run.js MODEL_DIR IMAGES.u8 N H W NODES.json OUT_DIR");
    process.exit(2);
  }
  await tf.setBackend("cpu");
  const modelJSON = JSON.parse(fs.readFileSync(path.join(modelDir, "model.json"), "utf8"));
  const specs = [];
  const shards = [];
  for (const group of modelJSON.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) shards.push(fs.readFileSync(path.join(modelDir, p)));
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await converter.loadGraphModel(tf.io.fromMemory({ modelTopology: modelJSON.modelTopology, weightSpecs: specs, weightData }));

  const dims = [Number(n), Number(h), Number(w), 3];
  const pixels = fs.readFileSync(imagesPath);
  if (pixels.length !== dims[0] * dims[1] * dims[2] * 3) {
    console.error(`tfjs_run: ${imagesPath}: ${pixels.length} bytes, expected ${dims.join("x")}`);
    process.exit(1);
  }
  const nodes = JSON.parse(fs.readFileSync(nodesPath, "utf8"));
  const input = tf.tensor4d(Int32Array.from(pixels), dims, "int32");
  const outs = await model.executeAsync({ image_tensor: input }, nodes);
  const list = Array.isArray(outs) ? outs : [outs];
  const shapes = [];
  for (let i = 0; i < list.length; i++) {
    const data = await list[i].data();
    fs.writeFileSync(path.join(outDir, `${i}.f32`), Buffer.from(Float32Array.from(data).buffer));
    shapes.push(list[i].shape);
  }
  fs.writeFileSync(path.join(outDir, "shapes.json"), JSON.stringify({ nodes, shapes, backend: tf.getBackend(), tfjs: tf.version_core }));
}

main().catch((e) => {
  console.error("tfjs_run: " + (e && e.message ? e.message : e));
  process.exit(1);
});
