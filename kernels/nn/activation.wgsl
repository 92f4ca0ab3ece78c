// Elementwise activations and their derivatives, chosen by ACTIVATION:
// 0 ReLU, 1 GELU in its tanh form (GPT-2's, which has a closed-form
// derivative): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). The tanh
// argument is clamped to ±10, where tanh is ±1 in f32 already, so that no
// implementation's tanh meets an overflowing exponential.

override ACTIVATION: u32 = 0u;

const GELU_SCALE: f32 = 0.7978845608028654; // √(2/π)
const GELU_CUBIC: f32 = 0.044715;

fn gelu_arg(x: f32) -> f32 { return GELU_SCALE * (x + GELU_CUBIC * x * x * x); }

fn gelu_tanh(x: f32) -> f32 { return tanh(clamp(gelu_arg(x), -10.0, 10.0)); }

fn activate(x: f32) -> f32 {
  if (ACTIVATION == 1u) { return 0.5 * x * (1.0 + gelu_tanh(x)); }
  return max(x, 0.0);
}

// d activate / dx at x (ReLU: 0 at x = 0, as PyTorch).
fn activate_grad(x: f32) -> f32 {
  if (ACTIVATION == 1u) {
    let t = gelu_tanh(x);
    // The clamped argument is constant past ±10.
    let du = select(GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * x * x), 0.0, abs(gelu_arg(x)) >= 10.0);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
  }
  return select(0.0, 1.0, x > 0.0);
}
