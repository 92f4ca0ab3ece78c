// y[r][c] += bias[c], in place on a rows × cols matrix (a linear layer adds
// its bias to the product it just wrote). One thread per element; the
// workgroup grid may be folded into two dimensions past 65535.

@group(0) @binding(0) var<uniform> dims: MatrixDims;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn element_count() -> u32 { return dims.rows * dims.cols; }

fn element(i: u32) {
  y[i] += bias[i % dims.cols];
}
