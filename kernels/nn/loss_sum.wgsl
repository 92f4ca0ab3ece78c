// Totals of one batch, written to slot batch.slot of a table of them: the
// summed row losses (f32 bits), the correct predictions and the row count
// over the first batch.valid rows. The host reads a run of slots at once and
// sums them in order in f64, so the totals do not depend on when it reads.
// One workgroup.

@group(0) @binding(0) var<uniform> batch: Batch;
@group(0) @binding(1) var<storage, read> row_loss: array<f32>;
@group(0) @binding(2) var<storage, read> row_correct: array<u32>;
@group(0) @binding(3) var<storage, read_write> totals: array<u32>;

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
  if (lid == 0u && 3u * batch.slot + 2u < arrayLength(&totals)) {
    totals[3u * batch.slot] = bitcast<u32>(loss_part[0]);
    totals[3u * batch.slot + 1u] = correct_part[0];
    totals[3u * batch.slot + 2u] = batch.valid;
  }
}
