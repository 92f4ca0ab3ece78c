// Softmax cross-entropy of each row of logits (rows × cols) against its
// label, for the first batch.valid rows: the row's loss
// logsumexp(z) − z[label], whether its argmax (first maximum) is the label,
// and, with WITH_GRAD, the gradient of the batch mean loss,
// (softmax(z) − onehot(label)) / valid. Rows past batch.valid get zeros.
// One workgroup of 64 threads per row, so wide rows (a vocabulary) work too.

override WITH_GRAD: bool = true;

@group(0) @binding(0) var<uniform> dims: MatrixDims;
@group(0) @binding(1) var<uniform> batch: Batch;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_correct: array<u32>;
@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>;

const THREADS: u32 = 64u;
var<workgroup> red_value: array<f32, THREADS>;
var<workgroup> red_index: array<u32, THREADS>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let r = linear_workgroup(wid, nwg);
  if (r >= dims.rows) { return; } // uniform per workgroup
  let base = r * dims.cols;
  let in_batch = r < batch.valid;

  // Maximum and its first index.
  var best = -3.4028234e38;
  var best_at = 0xffffffffu;
  for (var c = lid; c < dims.cols; c += THREADS) {
    let z = logits[base + c];
    if (z > best) { best = z; best_at = c; }
  }
  red_value[lid] = best;
  red_index[lid] = best_at;
  workgroupBarrier();
  for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let v = red_value[lid + s];
      let at = red_index[lid + s];
      if (v > red_value[lid] || (v == red_value[lid] && at < red_index[lid])) {
        red_value[lid] = v;
        red_index[lid] = at;
      }
    }
    workgroupBarrier();
  }
  let zmax = red_value[0];
  let argmax = red_index[0];
  workgroupBarrier();

  // Σ exp(z − max).
  var sum = 0.0;
  for (var c = lid; c < dims.cols; c += THREADS) {
    sum += exp(logits[base + c] - zmax);
  }
  red_value[lid] = sum;
  workgroupBarrier();
  for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_value[lid] += red_value[lid + s]; }
    workgroupBarrier();
  }
  let total = red_value[0];

  let label = labels[r];
  if (lid == 0u) {
    if (in_batch && label < dims.cols) {
      row_loss[r] = log(total) + zmax - logits[base + label];
      row_correct[r] = select(0u, 1u, argmax == label);
    } else {
      row_loss[r] = 0.0;
      row_correct[r] = 0u;
    }
  }
  if (WITH_GRAD) {
    let scale = 1.0 / f32(max(batch.valid, 1u));
    for (var c = lid; c < dims.cols; c += THREADS) {
      var g = 0.0;
      if (in_batch) {
        g = exp(logits[base + c] - zmax) / total;
        if (c == label) { g -= 1.0; }
        g *= scale;
      }
      dlogits[base + c] = g;
    }
  }
}
