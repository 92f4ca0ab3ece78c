// Gathers a minibatch from a data set that lives on the GPU: row i < valid
// of the batch is sample order[start + i], its u8 features widened to
// (byte / 255 − mean) · inv_std, and its label. Rows past valid (a last,
// partial batch) are zeros with label 0; the loss ignores them. The bytes
// are packed four per u32, sample after sample.

@group(0) @binding(0) var<uniform> dims: GatherDims;
@group(0) @binding(1) var<uniform> batch: Batch;
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read> data_labels: array<u32>;
@group(0) @binding(4) var<storage, read> order: array<u32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> labels: array<u32>;

fn element_count() -> u32 { return dims.rows * dims.features; }

fn element(i: u32) {
  let row = i / dims.features;
  let col = i % dims.features;
  if (row >= batch.valid) {
    x[i] = 0.0;
    if (col == 0u) { labels[row] = 0u; }
    return;
  }
  let sample = order[batch.start + row];
  let byte = sample * dims.features + col;
  let value = (data[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
  x[i] = (f32(value) / 255.0 - dims.mean) * dims.inv_std;
  if (col == 0u) { labels[row] = data_labels[sample]; }
}
