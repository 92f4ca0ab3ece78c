// dx (=|+=) dy · activate'(x), elementwise (activation.wgsl).

override ACCUMULATE: bool = false; // add to dx instead of overwriting it

@group(0) @binding(0) var<uniform> dims: Length;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn element_count() -> u32 { return dims.length; }

fn element(i: u32) {
  let g = dy[i] * activate_grad(x[i]);
  if (ACCUMULATE) { dx[i] += g; } else { dx[i] = g; }
}
