// matmul.wgsl's product for operands whose k, leading dimensions and batch
// strides are multiples of 4: each thread reads 4 × 4 blocks of op(A) and
// op(B) as four vec4 loads each, along whichever dimension is contiguous in
// storage, and accumulates their product as a mat4x4 (about twice the speed
// of the scalar kernel on llvmpipe). Same workgroups: 8 × 8 threads, a
// 32 × 32 tile of C.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false; // add to C instead of overwriting it

@group(0) @binding(0) var<uniform> dims: MatmulDims;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let row0 = (wid.y * 8u + lid.y) * 4u;
  let col0 = (wid.x * 8u + lid.x) * 4u;
  let base_a = wid.z * dims.stride_a / 4u;
  let base_b = wid.z * dims.stride_b / 4u;
  let lda4 = dims.lda / 4u;
  let ldb4 = dims.ldb / 4u;
  // Rows and columns past the edge read the last one (not stored).
  let rlast = dims.m - 1u;
  let clast = dims.n - 1u;
  var acc = mat4x4<f32>(); // acc[j][i] is C[row0 + i][col0 + j]
  for (var k = 0u; k < dims.k; k += 4u) {
    var am: mat4x4<f32>; // am[kk]: op(A)[row0..row0+3][k + kk]
    var bm: mat4x4<f32>; // bm[j]: op(B)[k..k+3][col0 + j]
    if (TRANS_A) {
      let at = base_a + k * lda4 + min(row0, rlast) / 4u;
      am = mat4x4<f32>(a[at], a[at + lda4], a[at + 2u * lda4], a[at + 3u * lda4]);
    } else {
      let at = base_a + k / 4u;
      am = transpose(mat4x4<f32>(
        a[at + min(row0, rlast) * lda4],
        a[at + min(row0 + 1u, rlast) * lda4],
        a[at + min(row0 + 2u, rlast) * lda4],
        a[at + min(row0 + 3u, rlast) * lda4],
      ));
    }
    if (TRANS_B) {
      let at = base_b + k / 4u;
      bm = mat4x4<f32>(
        b[at + min(col0, clast) * ldb4],
        b[at + min(col0 + 1u, clast) * ldb4],
        b[at + min(col0 + 2u, clast) * ldb4],
        b[at + min(col0 + 3u, clast) * ldb4],
      );
    } else {
      let at = base_b + k * ldb4 + min(col0, clast) / 4u;
      bm = transpose(mat4x4<f32>(b[at], b[at + ldb4], b[at + 2u * ldb4], b[at + 3u * ldb4]));
    }
    acc += am * bm;
  }
  let base_c = wid.z * dims.stride_c;
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + i;
    if (r >= dims.m) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      if (col < dims.n) {
        let at = base_c + r * dims.ldc + col;
        if (ACCUMULATE) { c[at] += acc[j][i]; } else { c[at] = acc[j][i]; }
      }
    }
  }
}
