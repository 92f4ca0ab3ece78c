// out[c] (=|+=) Σ_r x[r][c] over a rows × cols matrix: the gradient of a
// bias added to every row. One thread per column, summing the rows in
// order (neighbouring threads read neighbouring columns).

override ACCUMULATE: bool = false; // add to out instead of overwriting it

@group(0) @binding(0) var<uniform> dims: MatrixDims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= dims.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < dims.rows; r++) { s += x[r * dims.cols + c]; }
  if (ACCUMULATE) { out[c] += s; } else { out[c] = s; }
}
