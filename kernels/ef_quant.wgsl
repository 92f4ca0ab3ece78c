// The 4-bit error-feedback quantizer (spec steps 1, 4 and 5), pure functions.

// Quantization unit u = (max - min) / 15 of a stored (bf16) min/max pair.
fn ef_unit(mn: f32, mx: f32) -> f32 {
  return div_rn(mx - mn, 15.0);
}

// What spec step 5 needs of an EF block, computed once per block: its
// minimum mn, unit u = ef_unit(mn, mx), 1 / u in any rounding, and whether
// u and 1 / u are normal (then quantize may take its fast path).
struct Quantizer {
  mn: f32,
  u: f32,
  inv: f32,
  normal: bool,
}

// The quantizer of an EF block with stored (bf16) minimum mn and maximum mx.
fn ef_quantizer(mn: f32, mx: f32) -> Quantizer {
  let u = ef_unit(mn, mx);
  if (u == 0.0) { return Quantizer(mn, u, 0.0, false); }
  return Quantizer(mn, u, 1.0 / u, u >= 7.888609e-31 && u <= 1.2676506e30);
}

// Spec step 5's codes of four residuals r where a multiply by 1 / u decides
// them, and which lanes it does not decide (`undecided`: quantize must take
// those). The code is floor(div_rn(r - mn, u) + 0.5) clamped to 0..15;
// y = (r - mn) · inv is within 2^-21 (relative) of div_rn(r - mn, u) on any
// device (WGSL's '/' is within 2.5 ulp, '*' within 0.5), so below 64 the two
// differ by less than 4e-5; where y is farther than 1e-4 from a half
// integer, both round to the same integer. About one residual in 5000 is
// left undecided (every one when u or 1 / u is not normal).
struct FastCodes {
  codes: vec4<u32>,
  undecided: vec4<bool>,
}

// 1.5 · 2^23: its ulp is 1, so y + ROUNDER rounds y to an integer n, and
// the sum's bits less ROUNDER's are n (y in (-2^22, 2^22)). Float adds and
// integer subtractions instead of floor and a float-to-integer conversion
// (a slow unit on the H200).
const ROUNDER: f32 = 12582912.0;
const ROUNDER_BITS: u32 = 0x4b400000u;

fn quantize_fast4(r: vec4<f32>, qz: Quantizer) -> FastCodes {
  let y = (r - vec4<f32>(qz.mn)) * qz.inv;
  let t = bitcast<vec4<u32>>(y + vec4<f32>(ROUNDER));
  // y below -0.5 or from 63.5 up (or a NaN) gives n >= 64 (as u32); y in
  // (-0.5, 0) gives 0, the code that the clamp gives it too.
  let n = t - vec4<u32>(ROUNDER_BITS);
  // n as a float: the bits of 2^23 + n, less 2^23. Not (y + ROUNDER) -
  // ROUNDER, which a compiler may fold to y (llvmpipe does).
  let nf = bitcast<vec4<f32>>(t - vec4<u32>(ROUNDER_BITS - 0x4b000000u)) - vec4<f32>(8388608.0);
  let decided = vec4<bool>(qz.normal) & (n < vec4<u32>(64u)) &
    (abs(y - nf) < vec4<f32>(0.4999));
  return FastCodes(min(n, vec4<u32>(15u)), !decided);
}

// Spec step 5: the nearest 4-bit code of r for the block of qz,
// floor(div_rn(r - mn, u) + 0.5) clamped to 0..15 (0 when u = 0); the exact
// division only where quantize_fast4 does not decide.
fn quantize(r: f32, qz: Quantizer) -> u32 {
  if (qz.u == 0.0) { return 0u; }
  let fast = quantize_fast4(vec4<f32>(r), qz);
  if (!fast.undecided.x) { return fast.codes.x; }
  let q = floor(div_rn(r - qz.mn, qz.u) + 0.5);
  return u32(clamp(q, 0.0, 15.0));
}

// The (bf16) stored min/max of an EF block from the atomic accumulators of
// this step: min rounded down, max rounded up (exact when the data are bf16).
fn stats_from_scratch(min_key: u32, max_key: u32) -> u32 {
  if (max_key == 0u) { return 0u; } // an empty block (Q divides d)
  // A -0 is stored as +0, as the CPU reference stores it (a compiler may drop
  // a float `+ 0.0`, so compare bits).
  let mn = bf16_bits_down(ordered_dec(~min_key));
  let mx = bf16_bits_up(ordered_dec(max_key));
  return select(mn, 0u, mn == 0x8000u) | (select(mx, 0u, mx == 0x8000u) << 16u);
}
