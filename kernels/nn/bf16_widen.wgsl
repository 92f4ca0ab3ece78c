// f32 values of bf16 bits packed two per u32 (exact: a bf16 is the top half
// of an f32). Gives a model's kernels the f32 view of bf16 parameters.

@group(0) @binding(0) var<uniform> dims: Length;
@group(0) @binding(1) var<storage, read> bits: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

fn element_count() -> u32 { return dims.length; }

fn element(i: u32) {
  x[i] = bitcast<f32>(((bits[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu) << 16u);
}
