// y = activate(x), elementwise (activation.wgsl).

@group(0) @binding(0) var<uniform> dims: Length;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn element_count() -> u32 { return dims.length; }

fn element(i: u32) {
  y[i] = activate(x[i]);
}
