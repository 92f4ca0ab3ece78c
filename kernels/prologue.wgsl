// Step 2: the call's hyperparameters are copied from its ring slot into `step`
// (a copy command before the pass did it until round 14; without it AdamW at
// 2^24 is 1-2 % faster on the H200, bench/RESULTS.md), then one thread counts
// the call, decides whether the step is applied (its hyperparameters are its
// own, its gradients finite, the caller's found-inf flag clear), advances
// the step counter and the window ring, and computes the bias-correction
// scalars.

@group(0) @binding(0) var<uniform> cfg: Config;
@group(0) @binding(1) var<storage, read_write> step: Step;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;
// This step() call's number modulo CALL_IDS, fixed in the command encoder
// (it selects one of CALL_IDS constant bindings), so no later write can
// change it.
@group(0) @binding(3) var<storage, read> call_id: u32;
// This call's slot of the hyperparameter ring, also chosen in the encoder.
@group(0) @binding(4) var<storage, read> hyper: StepCall;

const COPY_THREADS: u32 = 64u;

@compute @workgroup_size(COPY_THREADS)
fn main(@builtin(local_invocation_index) tid: u32) {
  let groups = min(arrayLength(&hyper.param_groups), arrayLength(&step.param_groups));
  for (var i = tid; i < groups; i += COPY_THREADS) {
    step.param_groups[i] = hyper.param_groups[i];
  }
  if (tid != 0u) { return; }
  step.call = hyper.call;
  step.calls = step.calls + 1u;
  let bad = atomicLoad(&flags[0]);
  atomicStore(&flags[0], 0xffffffffu);
  // The caller's found-inf flag, copied in before the pass by a step() given
  // one (0 otherwise): any bit but the sign's says found (f32 1.0, u32 1).
  let found = (atomicLoad(&flags[FOUND_INF_WORD]) & 0x7fffffffu) != 0u;
  atomicStore(&flags[FOUND_INF_WORD], 0u);
  // The hyperparameters copied for this step belong to another call: more
  // steps were encoded before a submit than the ring has slots, and a later
  // call overwrote this one's. Refuse the step rather than run it with
  // another step's learning rate.
  if (step.call % CALL_IDS != call_id) {
    step.skip = 1u;
    step.refused = step.refused + 1u;
    return;
  }
  if (bad != 0xffffffffu || found) {
    step.skip = 1u;
    step.skipped = step.skipped + 1u;
    step.bad_tensor = select(FOUND_INF_SKIP, bad + 1u, bad != 0xffffffffu);
    step.bad_call = step.call;
    return;
  }
  step.skip = 0u;
  let t = step.t + 1u;
  step.t = t;
  let p1 = pow_f32(cfg.beta1, t);
  let p2 = pow_f32(cfg.beta2, t);
  if (cfg.kind == 1u) {
    step.slot = step.ring;
    step.ring = (step.ring + 1u) % cfg.window;
    step.c1 = div_rn(1.0 - cfg.beta1, 1.0 - p1);
    step.c2 = div_rn(1.0 - cfg.beta2, 1.0 - p2);
  } else {
    step.c1 = 1.0 - p1;
    step.c2 = sqrt(1.0 - p2);
  }
}
