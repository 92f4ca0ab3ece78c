// C (=|+=) op(A) · op(B), batched: workgroup_id.z selects the matrices.
// op(X) is X or its transpose (TRANS_A, TRANS_B), so one kernel serves a
// linear layer's forward (X·Wᵀ) and both backward products (dYᵀ·X, dY·W).
// Row-major storage: element (r, c) of a matrix with leading dimension ld is
// at r·ld + c. Each thread of an 8 × 8 workgroup computes a 4 × 4 block of C
// (a 32 × 32 tile per workgroup), reading A and B straight from storage:
// caches serve the reuse, and no barrier is needed (software rasterizers
// such as llvmpipe pay dearly for barriers). This is the general kernel;
// matmul_vec4.wgsl is the faster one for dimensions divisible by 4.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false; // add to C instead of overwriting it

@group(0) @binding(0) var<uniform> dims: MatmulDims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// op(A)[m][k]; rows past the edge read the last row (their results are not stored).
fn load_a(base: u32, m: u32, k: u32) -> f32 {
  let r = min(m, dims.m - 1u);
  if (TRANS_A) { return a[base + k * dims.lda + r]; }
  return a[base + r * dims.lda + k];
}

// op(B)[k][n]; columns past the edge read the last column.
fn load_b(base: u32, k: u32, n: u32) -> f32 {
  let col = min(n, dims.n - 1u);
  if (TRANS_B) { return b[base + col * dims.ldb + k]; }
  return b[base + k * dims.ldb + col];
}

@compute @workgroup_size(8, 8)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let row0 = (wid.y * 8u + lid.y) * 4u;
  let col0 = (wid.x * 8u + lid.x) * 4u;
  let base_a = wid.z * dims.stride_a;
  let base_b = wid.z * dims.stride_b;
  var acc: array<array<f32, 4>, 4>;
  for (var k = 0u; k < dims.k; k++) {
    var av: array<f32, 4>;
    var bv: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) {
      av[i] = load_a(base_a, row0 + i, k);
      bv[i] = load_b(base_b, k, col0 + i);
    }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) {
        acc[i][j] = fma(av[i], bv[j], acc[i][j]);
      }
    }
  }
  let base_c = wid.z * dims.stride_c;
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + i;
    if (r >= dims.m) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col < dims.n) {
        let at = base_c + r * dims.ldc + col;
        if (ACCUMULATE) { c[at] += acc[i][j]; } else { c[at] = acc[i][j]; }
      }
    }
  }
}
