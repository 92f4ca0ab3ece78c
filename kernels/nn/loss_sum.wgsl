// Adds a batch's summed row losses, correct predictions and row count
// (the first batch.valid rows) to running totals: metrics[0] is an f32 loss
// sum (bits), metrics[1] the correct count, metrics[2] the row count. One
// workgroup; the host reads and clears the totals when it reports.

@group(0) @binding(0) var<uniform> batch: Batch;
@group(0) @binding(1) var<storage, read> row_loss: array<f32>;
@group(0) @binding(2) var<storage, read> row_correct: array<u32>;
@group(0) @binding(3) var<storage, read_write> metrics: array<u32>;

const THREADS: u32 = 256u;
var<workgroup> loss_part: array<f32, THREADS>;
var<workgroup> correct_part: array<u32, THREADS>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var loss = 0.0;
  var correct = 0u;
  for (var r = lid; r < batch.valid; r += THREADS) {
    loss += row_loss[r];
    correct += row_correct[r];
  }
  loss_part[lid] = loss;
  correct_part[lid] = correct;
  workgroupBarrier();
  for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      loss_part[lid] += loss_part[lid + s];
      correct_part[lid] += correct_part[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    metrics[0] = bitcast<u32>(bitcast<f32>(metrics[0]) + loss_part[0]);
    metrics[1] += correct_part[0];
    metrics[2] += batch.valid;
  }
}
