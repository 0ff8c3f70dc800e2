// Run a model compiled by onnx-lrp in Node and write its LRP relevance.
//
//   node explain.mjs MODEL.lrp.onnx INPUT.npy OUT.npy [--target K] [--feed NAME=FILE.npy ...]
//
// INPUT.npy feeds the model's first input; --feed gives any other input (e.g. an attention mask).
// --target K explains class K for every sample (default -1: the top-scoring class).
// OUT.npy receives relevance_<first input> as float32, with the input's shape.
import { readFileSync, writeFileSync } from 'node:fs';
import ort from 'onnxruntime-node';

const DTYPES = { '<f4': ['float32', Float32Array], '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array] };

// .npy: magic, version, header length, a Python dict header, then the raw little-endian data (C order).
function readNpy(file) {
  const buf = readFileSync(file);
  const v1 = buf[6] === 1;
  const headerLen = v1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (v1 ? 10 : 12) + headerLen;
  const header = buf.toString('latin1', v1 ? 10 : 12, start);
  const descr = header.match(/'descr':\s*'([^']+)'/)[1];
  if (!DTYPES[descr] || /'fortran_order':\s*True/.test(header)) throw new Error(`${file}: unsupported dtype ${descr}`);
  const dims = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const [type, Array_] = DTYPES[descr];
  const data = new Array_(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.length));
  return new ort.Tensor(type, data, dims);
}

function writeNpy(file, tensor) {
  const shape = tensor.dims.join(', ') + (tensor.dims.length === 1 ? ',' : '');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape}), }`;
  header = header.padEnd(64 * Math.ceil((header.length + 11) / 64) - 11) + '\n'; // data starts 64-byte aligned
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head.writeUInt8(1, 6);
  head.writeUInt16LE(header.length, 8);
  const data = Float32Array.from(tensor.data);
  writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer)]));
}

const args = process.argv.slice(2);
const option = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const [modelPath, inputPath, outPath] = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!outPath) {
  console.error('usage: node explain.mjs MODEL.lrp.onnx INPUT.npy OUT.npy [--target K] [--feed NAME=FILE.npy ...]');
  process.exit(2);
}

// as onnx_lrp.session_options(): weights and activations held once
const session = await ort.InferenceSession.create(modelPath, {
  enableMemPattern: false, extra: { session: { disable_prepacking: '1' } } });
const input = readNpy(inputPath);
const feeds = { [session.inputNames[0]]: input };
for (const feed of option('--feed')) {
  const [name, file] = feed.split('=');
  feeds[name] = readNpy(file);
}
const target = BigInt(option('--target')[0] ?? -1);
feeds.target = new ort.Tensor('int64', new BigInt64Array(input.dims[0]).fill(target), [input.dims[0]]);

const results = await session.run(feeds);
const relevance = results[`relevance_${session.inputNames[0]}`];
writeNpy(outPath, relevance);

const scores = results[session.outputNames[0]];
const classes = scores.dims[1];
for (let n = 0; n < input.dims[0]; n++) {
  const row = Array.from(scores.data.slice(n * classes, (n + 1) * classes));
  const top = row.indexOf(Math.max(...row));
  const per = relevance.size / input.dims[0];
  const sum = relevance.data.slice(n * per, (n + 1) * per).reduce((a, b) => a + b, 0);
  console.log(`sample ${n}: top class ${top}, explained ${target < 0 ? top : target}, relevance sum ${sum.toFixed(4)}`);
}
console.log(`wrote ${outPath} ${JSON.stringify(relevance.dims)}`);
