// f32 values of bf16 bits packed two per u32 (exact: a bf16 is the top half
// of an f32). Gives a model's kernels the f32 view of bf16 parameters.

@group(0) @binding(0) var<uniform> dims: Length;
@group(0) @binding(1) var<storage, read> bits: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = linear_workgroup(wid, nwg) * 256u + lid;
  if (i >= dims.length) { return; }
  x[i] = bitcast<f32>(((bits[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu) << 16u);
}
