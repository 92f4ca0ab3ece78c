// Projection onto the box [lo, hi]^n, in place: x = clamp(x, lo, hi).
// Used by the experiments' online problems (src/experiments/gpu.ts); min and
// max are exact, so the CPU's projection gives the same bits.

struct Box {
  lo: f32,
  hi: f32,
  n: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> box: Box;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < box.n) {
    x[id.x] = clamp(x[id.x], box.lo, box.hi);
  }
}
