// Gradient oracle of f(x) = ½‖x − x*‖² with additive noise ξ (written by the
// host each step): g = (x − x*) + ξ, two f32 roundings in that order, as
// NoisyQuadratic.sample does on the CPU (src/experiments/objectives.ts).

struct Size {
  n: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> target_x: array<f32>;
@group(0) @binding(2) var<storage, read> noise: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<uniform> size: Size;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i < size.n) {
    g[i] = (x[i] - target_x[i]) + noise[i];
  }
}
