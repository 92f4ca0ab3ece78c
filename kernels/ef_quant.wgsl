// The 4-bit error-feedback quantizer (spec steps 1, 4 and 5), pure functions.

// Quantization unit u = (max - min) / 15 of a stored (bf16) min/max pair.
fn ef_unit(mn: f32, mx: f32) -> f32 {
  return div_rn(mx - mn, 15.0);
}

// What spec step 5 needs of an EF block, computed once per block: its
// minimum mn, unit u = ef_unit(mn, mx), scale = 1 / (15 u) in any rounding,
// offset = -mn · scale, and whether quantize_fast4's bound holds (u and
// scale normal, |mn| <= 16 u; the kernels' blocks always have mn <= 0 <= mx,
// so |mn| <= 15 u there).
struct Quantizer {
  mn: f32,
  u: f32,
  scale: f32,
  offset: f32,
  fast: bool,
}

// The quantizer of an EF block with stored (bf16) minimum mn and maximum mx.
fn ef_quantizer(mn: f32, mx: f32) -> Quantizer {
  let u = ef_unit(mn, mx);
  if (u == 0.0) { return Quantizer(mn, u, 0.0, 0.0, false); }
  let scale = 1.0 / (15.0 * u);
  let fast = u >= 7.888609e-31 && u <= 1.2676506e30 && abs(mn) <= 16.0 * u;
  return Quantizer(mn, u, scale, -mn * scale, fast);
}

// Spec step 5's codes of four residuals r by multiplies, and how far each
// multiply's result lies from its code (`margin`): where the margin is below
// FAST_LIMIT, the code is the exact one, floor(div_rn(r - mn, u) + 0.5)
// clamped to 0..15. y = saturate(r · scale + offset) is (r - mn) / (15 u)
// clamped to [0, 1]; for q = (r - mn) / u in [-1, 16], |15 y - q| is at most
// about 112 · 2^-24 (scale within 4 ulp, the offset and the fma within 0.5
// each, |q| and |mn / u| at most 16), and div_rn(f32(r - mn), u) is within
// 32 · 2^-24 of q: below 1e-5 together (an fma evaluated unfused, as
// llvmpipe's, adds a rounding of r · scale and of 15 y, about 2e-6), so a
// margin below 0.5 - 5e-5 leaves room for all of it; outside [-1, 16] the
// clamp gives the exact code. The clamp keeps every code in 0..15, also for
// a kept entry's a far outside the block's range. About one residual in 10^4
// lies nearer a half integer.
struct FastCodes {
  codes: vec4<u32>,
  margin: vec4<f32>,
}

const FAST_LIMIT: f32 = 0.49995;

// 1.5 · 2^23: its ulp is 1, so 15 y + ROUNDER rounds 15 y to an integer n,
// and the sum's bits less ROUNDER's are n. Float operations and integer
// subtractions instead of floor and a float-to-integer conversion (a slow
// unit on the H200).
const ROUNDER: f32 = 12582912.0;
const ROUNDER_BITS: u32 = 0x4b400000u;

fn quantize_fast4(r: vec4<f32>, qz: Quantizer) -> FastCodes {
  let y = saturate(fma(r, vec4<f32>(qz.scale), vec4<f32>(qz.offset)));
  let t = bitcast<vec4<u32>>(fma(y, vec4<f32>(15.0), vec4<f32>(ROUNDER)));
  // n as a float: the bits of 2^23 + n, less 2^23. Not t - ROUNDER, which
  // a compiler may fold (llvmpipe folded (y + ROUNDER) - ROUNDER to y).
  let nf = bitcast<vec4<f32>>(t - vec4<u32>(ROUNDER_BITS - 0x4b000000u)) - vec4<f32>(8388608.0);
  return FastCodes(t - vec4<u32>(ROUNDER_BITS), abs(fma(y, vec4<f32>(15.0), -nf)));
}

// Spec step 5: the nearest 4-bit code of r for the block of qz,
// floor(div_rn(r - mn, u) + 0.5) clamped to 0..15 (0 when u = 0); where
// quantize_fast4 does not decide, quantize_undecided.
fn quantize(r: f32, qz: Quantizer) -> u32 {
  if (qz.u == 0.0) { return 0u; }
  let fast = quantize_fast4(vec4<f32>(r), qz);
  if (qz.fast && fast.margin.x < FAST_LIMIT) { return fast.codes.x; }
  return quantize_undecided(r, qz);
}

// quantize's code of an r that quantize_fast4 leaves undecided (u != 0),
// without the division where it can: with n = floor(15 y) in 1..14 and
// h = n + 0.5, the code is n + 1 exactly when div_rn(r - mn, u) rounds to h
// or above, that is when d - h·u >= -(the ulp below h) / 2 · u for
// d = r - mn (h + 0.5 and every f32 below it then floor as they should;
// the midpoint itself would take d 25 significant bits). With fast's u in
// [2^-100, 2^100], d - h·u is a multiple of 2^-24 times u's exponent's
// power of two (h has five significant bits, d > u / 2) and smaller than 2^24
// of them, so one fma gives it exactly; the right side is u times a power of
// two. One fma and a compare instead of the division's dozens of
// instructions, where bf16 residuals, on a coarse grid, often sit this near
// a half code. n = 0 (h = 0.5 rounds differently), 15, and quantizers
// without a fast path take the division.
fn quantize_undecided(r: f32, qz: Quantizer) -> u32 {
  let n = floor(15.0 * saturate(fma(r, qz.scale, qz.offset)));
  if (!qz.fast || n < 1.0 || n > 14.0) { return quantize_exact(r, qz); }
  let h = n + 0.5;
  let half_ulp_below = bitcast<f32>((bitcast<u32>(h) & 0x7f800000u) - (24u << 23u));
  let up = fma_short(qz.u, -h, r - qz.mn) >= -half_ulp_below * qz.u;
  return u32(n) + select(0u, 1u, up);
}

// quantize's code of r by the exact division (u != 0).
fn quantize_exact(r: f32, qz: Quantizer) -> u32 {
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
