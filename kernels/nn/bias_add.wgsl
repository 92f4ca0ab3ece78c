// y[r][c] += bias[c], in place on a rows × cols matrix (a linear layer adds
// its bias to the product it just wrote). One thread per element; the
// workgroup grid may be folded into two dimensions past 65535.

@group(0) @binding(0) var<uniform> dims: MatrixDims;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = linear_workgroup(wid, nwg) * 256u + lid;
  if (i >= dims.rows * dims.cols) { return; }
  y[i] += bias[i % dims.cols];
}
