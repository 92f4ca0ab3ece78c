// Numerics shared by every kernel: bf16 rounding, exact fma and division,
// the f32 power used for bias correction, and an order-preserving float code
// for atomic min/max.

// ---- bf16 ---------------------------------------------------------------

// Round an f32 to bf16, nearest-even; the result is still an f32.
fn bf16_round(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { // NaN: a quiet bf16 NaN, as the CPU makes it
    return bitcast<f32>((b | 0x00400000u) & 0xffff0000u);
  }
  return bf16_round_number(x);
}

// bf16_round for an x that is not NaN (or whose NaN result is never used).
fn bf16_round_number(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}

// bf16_round_number by three float operations (Veltkamp's split of x at 16
// bits: g = x·65537 rounded once, as x·65536 is exact, then g - (g - x)):
// the same result for every normal x below 2^100 in magnitude, for ±0, and
// for a subnormal x that is already a bf16 (checked over every f32). `one`
// must be 1.0 read at run time: with a literal 1, the compilers of llvmpipe
// and of the H200's driver both fold g - (g - x) to x.
fn bf16_round_split(x: f32, one: f32) -> f32 {
  let g = x * 65536.0 + x;
  return g - (g * one - x);
}

fn bf16_value(bits: u32) -> f32 { return bitcast<f32>((bits & 0xffffu) << 16u); }

// bf16 bits at or below x (toward -inf).
fn bf16_bits_down(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let t = b >> 16u;
  if ((b & 0xffffu) == 0u || (b & 0x7fffffffu) >= 0x7f800000u) { return t; }
  return select(t, t + 1u, (b >> 31u) == 1u);
}

// bf16 bits at or above x (toward +inf).
fn bf16_bits_up(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let t = b >> 16u;
  if ((b & 0xffffu) == 0u || (b & 0x7fffffffu) >= 0x7f800000u) { return t; }
  return select(t + 1u, t, (b >> 31u) == 1u);
}

// True when this device's fma() is a correctly rounded fused multiply-add
// (src/gpu/device.ts probes it once per device: NVIDIA's is, llvmpipe's is
// not). Then fma_short and div_rn use it directly; otherwise they run on
// integer mantissas. Both paths give the same bits.
override EXACT_FMA: bool = false;

// ---- Exact arithmetic in integers -------------------------------------
// Compilers may evaluate WGSL's fma() unfused, '/' approximately, and may
// reassociate float additions (llvmpipe does all three), which defeats the
// usual error-free float tricks. The operations that decide MicroAdam's top-k
// selection are therefore computed on integer mantissas, so every device
// rounds them exactly like the CPU reference.

// Unsigned 64-bit integers as vec2(lo, hi).
fn mul_32x32(a: u32, b: u32) -> vec2<u32> {
  let al = a & 0xffffu; let ah = a >> 16u;
  let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = lh + hl;
  let c1 = select(0u, 0x10000u, mid < lh);
  let lo = ll + (mid << 16u);
  let c2 = select(0u, 1u, lo < ll);
  return vec2<u32>(lo, hh + (mid >> 16u) + c1 + c2);
}

fn shl64(x: vec2<u32>, n: u32) -> vec2<u32> {
  if (n == 0u) { return x; }
  if (n >= 64u) { return vec2<u32>(0u, 0u); }
  if (n >= 32u) { return vec2<u32>(0u, x.x << (n - 32u)); }
  return vec2<u32>(x.x << n, (x.y << n) | (x.x >> (32u - n)));
}

// Shift right; any 1 bit shifted out is OR-ed into bit 0 (sticky).
fn shr64_sticky(x: vec2<u32>, n: u32) -> vec2<u32> {
  if (n == 0u) { return x; }
  if (n >= 64u) { return vec2<u32>(select(0u, 1u, (x.x | x.y) != 0u), 0u); }
  var r: vec2<u32>;
  var lost: u32;
  if (n >= 32u) {
    let m = n - 32u;
    r = vec2<u32>(select(x.y >> m, x.y, m == 0u), 0u);
    lost = x.x | select(x.y << (32u - m), 0u, m == 0u);
  } else {
    r = vec2<u32>((x.x >> n) | (x.y << (32u - n)), x.y >> n);
    lost = x.x << (32u - n);
  }
  return vec2<u32>(r.x | select(0u, 1u, lost != 0u), r.y);
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn sub64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn lt64(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.y < b.y || (a.y == b.y && a.x < b.x);
}

// Index of the highest set bit (x != 0).
fn top_bit64(x: vec2<u32>) -> u32 {
  if (x.y != 0u) { return 63u - countLeadingZeros(x.y); }
  return 31u - countLeadingZeros(x.x);
}

// |f| = mant * 2^exp with an integer mantissa (finite f).
struct Unpacked { mant: u32, exp: i32 }

fn unpack_f32(f: f32) -> Unpacked {
  let b = bitcast<u32>(f);
  let e = (b >> 23u) & 0xffu;
  let frac = b & 0x7fffffu;
  if (e == 0u) { return Unpacked(frac, -149); }
  return Unpacked(frac | 0x800000u, i32(e) - 150);
}

// Rounds mant * 2^exp (64-bit mant, bit 0 possibly sticky) to the nearest f32.
fn round_to_f32(m: vec2<u32>, exp: i32, negative: bool) -> f32 {
  if ((m.x | m.y) == 0u) { return 0.0; }
  let h = top_bit64(m);
  var mant: u32;
  var e = exp;
  if (h > 23u) {
    let rs = h - 23u;
    mant = select((m.x >> rs) | (m.y << (32u - rs)), m.y >> (rs - 32u), rs >= 32u);
    let back = shl64(vec2<u32>(mant, 0u), rs);
    let rem = sub64(m, back);
    let half = shl64(vec2<u32>(1u, 0u), rs - 1u);
    if (lt64(half, rem) || (rem.x == half.x && rem.y == half.y && (mant & 1u) == 1u)) {
      mant = mant + 1u;
      if (mant == 0x1000000u) { mant = mant >> 1u; e = e + 1; }
    }
    e = e + i32(rs);
  } else {
    mant = m.x << (23u - h);
    e = e - i32(23u - h);
  }
  let r = ldexp(f32(mant), e);
  return select(r, -r, negative);
}

// fma(x, y, z) rounded once, for finite x, z and y with at most 8 significant
// bits (a bf16 value or a small integer code).
fn fma_short(x: f32, y: f32, z: f32) -> f32 {
  if (EXACT_FMA) { return fma(x, y, z); }
  let ux = unpack_f32(x);
  var uy = unpack_f32(y);
  let uz = unpack_f32(z);
  if (ux.mant == 0u || uy.mant == 0u) { return z + x * y; } // exact: product is 0
  let tz = countTrailingZeros(uy.mant);
  uy = Unpacked(uy.mant >> tz, uy.exp + i32(tz));
  let pNeg = (bitcast<u32>(x) ^ bitcast<u32>(y)) >> 31u == 1u;
  let zNeg = bitcast<u32>(z) >> 31u == 1u;
  let p = mul_32x32(ux.mant, uy.mant);
  if (uz.mant == 0u) { return round_to_f32(p, ux.exp + uy.exp, pNeg); }
  // Put both top bits at bit 62, then align the smaller one.
  let sp = 62u - top_bit64(p);
  let sz = 62u - (31u - countLeadingZeros(uz.mant));
  var a = shl64(p, sp);
  var ea = ux.exp + uy.exp - i32(sp);
  var aNeg = pNeg;
  var b = shl64(vec2<u32>(uz.mant, 0u), sz);
  var eb = uz.exp - i32(sz);
  var bNeg = zNeg;
  if (eb > ea || (eb == ea && lt64(a, b))) {
    let t = a; a = b; b = t;
    let te = ea; ea = eb; eb = te;
    let tn = aNeg; aNeg = bNeg; bNeg = tn;
  }
  b = shr64_sticky(b, u32(ea - eb));
  let s = select(add64(a, b), sub64(a, b), aNeg != bNeg);
  return round_to_f32(s, ea, aNeg);
}

// Sign of |a| - m * |b| where m is the midpoint of the adjacent f32 values
// lo < hi (all positive, finite): -1, 0 or 1.
fn cmp_midpoint(a: f32, b: f32, lo: f32, hi: f32) -> i32 {
  let ul = unpack_f32(lo);
  let uh = unpack_f32(hi);
  // lo and hi differ in exponent by at most one step: bring to the smaller exponent.
  let e = min(ul.exp, uh.exp);
  let m2 = (ul.mant << u32(ul.exp - e)) + (uh.mant << u32(uh.exp - e)); // 2m / 2^e, < 2^26
  let ub = unpack_f32(b);
  let prod = mul_32x32(m2, ub.mant);        // m*b = prod * 2^(e - 1 + eb)
  let ua = unpack_f32(a);
  if ((prod.x | prod.y) == 0u) { return select(0, 1, ua.mant != 0u); }
  if (ua.mant == 0u) { return -1; }
  let sp = 62u - top_bit64(prod);
  let sa = 62u - (31u - countLeadingZeros(ua.mant));
  let ep = e - 1 + ub.exp - i32(sp);
  let ea = ua.exp - i32(sa);
  if (ea != ep) { return select(-1, 1, ea > ep); }
  let pa = shl64(vec2<u32>(ua.mant, 0u), sa);
  let pp = shl64(prod, sp);
  if (lt64(pa, pp)) { return -1; }
  if (lt64(pp, pa)) { return 1; }
  return 0;
}

fn next_up_pos(q: f32) -> f32 { return bitcast<f32>(bitcast<u32>(q) + 1u); }
fn next_down_pos(q: f32) -> f32 { return bitcast<f32>(bitcast<u32>(q) - 1u); }

// a / b correctly rounded to nearest-even, for finite a and nonzero finite b
// with |b| <= 2^126 and a normal quotient; '/' only supplies a first guess.
// WGSL bounds the error of '/' only for divisors in [2^-126, 2^126], and
// NVIDIA documents its fast division as returning 0 beyond 2^126 (the H200
// got 105 cases of tests/kernels_numeric_test.ts wrong, as many as it had
// divisors above 2^126). The kernels divide by 15, by an EF unit (far below
// 2^126: gradients are below 2^60) and by 1 - beta^t.
fn div_rn(a: f32, b: f32) -> f32 { return div_rn_from(a, b, a / b); }

// div_rn refining a first guess q0 that is within a few ulps of a / b.
fn div_rn_from(a: f32, b: f32, q0: f32) -> f32 {
  // Outside the normal range (or a zero dividend) the midpoint test below does
  // not apply; '/' is returned as is.
  if (a == 0.0 || abs(q0) < 1.1754944e-38 || abs(q0) > 1.7014118e38) { return q0; }
  // Normal a and b are refined with their exponent fields set to 0 (values
  // in [1, 2), signs kept) and the quotient's exponent restored after: exact,
  // and the remainders and ulp steps then stay far from the subnormal range,
  // which a device may flush to zero (the H200 does: a quotient near 2^-107
  // came out wrongly rounded).
  let ba = bitcast<u32>(a);
  let bb = bitcast<u32>(b);
  if ((ba & 0x7f800000u) == 0u || (bb & 0x7f800000u) == 0u) { return div_rn_scaled(a, b, q0); }
  let shift = (i32((ba >> 23u) & 0xffu) - i32((bb >> 23u) & 0xffu)) << 23u;
  let q = div_rn_scaled(
    bitcast<f32>((ba & 0x807fffffu) | 0x3f800000u),
    bitcast<f32>((bb & 0x807fffffu) | 0x3f800000u),
    bitcast<f32>(bitcast<i32>(q0) - shift),
  );
  return bitcast<f32>(bitcast<i32>(q) + shift);
}

// div_rn_from's refinement of q0, on operands its caller may have scaled.
fn div_rn_scaled(a: f32, b: f32, q0: f32) -> f32 {
  if (EXACT_FMA) { return div_rn_fma(a, b, q0); }
  let aa = abs(a);
  let ab = abs(b);
  var q = abs(q0);
  for (var i = 0; i < 4; i++) {
    let up = next_up_pos(q);
    let cu = cmp_midpoint(aa, ab, q, up);
    if (cu > 0) { q = up; continue; }
    if (cu == 0) { if ((bitcast<u32>(q) & 1u) == 1u) { q = up; } break; }
    let dn = next_down_pos(q);
    let cd = cmp_midpoint(aa, ab, dn, q);
    if (cd < 0) { q = dn; continue; }
    if (cd == 0 && (bitcast<u32>(q) & 1u) == 1u) { q = dn; }
    break;
  }
  return select(q, -q, (a < 0.0) != (b < 0.0));
}

// div_rn with an exact fused multiply-add: r = |a| - q|b| is exact for q
// within a few ulps of |a|/|b|, and comparing 2|r| with ulp·|b| (a power of
// two times |b|, so exact too) decides the rounding.
fn div_rn_fma(a: f32, b: f32, q0: f32) -> f32 {
  let aa = abs(a);
  let ab = abs(b);
  var q = abs(q0);
  for (var i = 0; i < 4; i++) {
    let r = fma(-q, ab, aa);
    if (r == 0.0) { break; }
    let up = r > 0.0;
    let n = select(next_down_pos(q), next_up_pos(q), up);
    let twice = 2.0 * abs(r);
    let step = abs(n - q) * ab;
    if (twice > step) { q = n; continue; }
    if (twice == step && (bitcast<u32>(q) & 1u) == 1u) { q = n; }
    break;
  }
  return select(q, -q, (a < 0.0) != (b < 0.0));
}

// base^e by square-and-multiply in f32, in the reference order.
fn pow_f32(base: f32, e_in: u32) -> f32 {
  var res = 1.0;
  var b = base;
  var e = e_in;
  loop {
    if (e == 0u) { break; }
    if ((e & 1u) == 1u) { res = res * b; e = e - 1u; }
    b = b * b;
    e = e >> 1u;
  }
  return res;
}

// Order-preserving map of f32 onto u32 (for atomicMax); 0 never encodes a
// non-NaN value, so a zeroed buffer is the identity for both min and max.
fn ordered_enc(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b >> 31u) == 1u);
}

fn ordered_dec(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k >> 31u) == 1u));
}
