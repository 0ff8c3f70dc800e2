// Run digits.lrp.onnx (compiled by onnx-lrp, see build.py) on digits.json and draw each input beside its heatmap.
// onnxruntime-web comes from the npm package (npm install), served with the page: no CDN.
import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

const params = new URLSearchParams(location.search);
const target = BigInt(params.get('target') ?? -1); // -1: explain the top-scoring class

// Red positive, blue negative, white zero, on a scale symmetric around zero (as onnx_lrp.images.to_rgb).
function heatmapRGB(r, vmax) {
  const t = vmax > 0 ? Math.max(-1, Math.min(1, r / vmax)) : 0;
  const pos = Math.max(t, 0), neg = Math.max(-t, 0);
  return [1 - neg, 1 - pos - neg, 1 - pos].map((c) => Math.round(255 * c));
}

function draw(values, h, w, toRGB, caption) {
  const canvas = Object.assign(document.createElement('canvas'), { width: w, height: h });
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, h);
  values.forEach((v, i) => img.data.set([...toRGB(v), 255], 4 * i));
  ctx.putImageData(img, 0, 0);
  const figure = document.createElement('figure');
  figure.append(canvas, Object.assign(document.createElement('figcaption'), { textContent: caption }));
  return figure;
}

async function main() {
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation headers; one is plenty here
  const samples = await (await fetch('digits.json')).json();
  const session = await ort.InferenceSession.create('digits.lrp.onnx', { executionProviders: ['wasm'] });
  const [n, , h, w] = samples.shape;
  const input = new ort.Tensor('float32', Float32Array.from(samples.data), samples.shape);
  const targets = new ort.Tensor('int64', new BigInt64Array(n).fill(target), [n]);
  const out = await session.run({ input, target: targets });
  const logits = out[session.outputNames[0]].data, relevance = out.relevance_input.data;

  const grid = document.getElementById('grid');
  for (let k = 0; k < n; k++) {
    const x = samples.data.slice(k * h * w, (k + 1) * h * w);
    const r = relevance.slice(k * h * w, (k + 1) * h * w);
    const row = Array.from(logits.slice(k * 10, (k + 1) * 10));
    const predicted = row.indexOf(Math.max(...row));
    const vmax = Math.max(...r.map(Math.abs));
    const pair = document.createElement('div');
    pair.append(
      draw(x, h, w, (v) => [255, 255, 255].map((c) => Math.round(c * v)), `digit ${samples.labels[k]}`),
      draw(r, h, w, (v) => heatmapRGB(v, vmax), `R for class ${target < 0 ? predicted : target}`));
    pair.style.display = 'flex';
    pair.style.gap = '6px';
    grid.append(pair);
  }
  document.getElementById('status').textContent =
    `${n} digits, ${samples.shape.join('×')}, explained with digits.lrp.onnx in onnxruntime-web ${ort.env.versions.web}`;
  window.result = {
    shape: out.relevance_input.dims, relevance: Array.from(relevance), logits: Array.from(logits), target: Number(target),
  };
}

main().catch((e) => {
  document.getElementById('status').textContent = `error: ${e.message ?? e}`;
  window.result = { error: String(e.stack ?? e) };
});
