// dx (=|+=) dy · activate'(x), elementwise (activation.wgsl).

override ACCUMULATE: bool = false; // add to dx instead of overwriting it

@group(0) @binding(0) var<uniform> dims: Length;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = linear_workgroup(wid, nwg) * 256u + lid;
  if (i >= dims.length) { return; }
  let g = dy[i] * activate_grad(x[i]);
  if (ACCUMULATE) { dx[i] += g; } else { dx[i] = g; }
}
