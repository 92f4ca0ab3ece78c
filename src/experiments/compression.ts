/**
 * Measuring what compression does at each step, from an ablation optimizer's
 * observer (`src/reference/ablations.ts`): the top-k contraction
 * `q_t = ‖C(x) − x‖/‖x‖` and the quantizer's relative error
 * `ω_t = ‖Q(r) − r‖/‖r‖` of the residual `r = x − C(x)`, and whether the
 * theory's condition `(1 + ω)·q < 1` held.
 *
 * @module
 */

import type {
  CompressionObservation,
  CompressionObserver,
} from "../reference/ablations.ts";
import { mean, quantile } from "./stats.ts";

/** One step's measurement. */
export interface CompressionSample {
  /** Applied step. */
  step: number;
  /** Top-k contraction ‖x − C(x)‖/‖x‖ (0 when x = 0). */
  q: number;
  /** Quantizer error ‖Q(r) − r‖/‖r‖ (0 when r = 0). */
  omega: number;
}

/** Summary of a run's compression. */
export interface CompressionSummary {
  /** Steps measured. */
  steps: number;
  /** Mean q_t. */
  q: number;
  /** Mean ω_t. */
  omega: number;
  /** 95th percentile of (1 + ω_t)·q_t. */
  product95: number;
  /** Fraction of steps with (1 + ω_t)·q_t < 1. */
  conditionHeld: number;
}

/**
 * q and ω of one observation.
 *
 * @example
 * ```ts
 * import { measureCompression } from "./compression.ts";
 * const m = measureCompression({
 *   tensor: 0, step: 1,
 *   input: new Float32Array([3, 4]), residual: new Float32Array([0, 4]), stored: new Float32Array([0, 3]),
 * });
 * console.log(m.q, m.omega); // 0.8 0.25
 * ```
 */
export function measureCompression(
  o: CompressionObservation,
): CompressionSample {
  let xx = 0;
  let rr = 0;
  let ee = 0;
  for (let j = 0; j < o.input.length; j++) {
    xx += o.input[j] ** 2;
    rr += o.residual[j] ** 2;
    ee += (o.stored[j] - o.residual[j]) ** 2;
  }
  return {
    step: o.step,
    q: xx > 0 ? Math.sqrt(rr / xx) : 0,
    omega: rr > 0 ? Math.sqrt(ee / rr) : 0,
  };
}

/**
 * Collects q_t and ω_t: pass {@link CompressionMeter.observer} as an
 * ablation optimizer's `observer` option. Measures every `every`-th step
 * (the measurement costs about as much as the step).
 *
 * @example
 * ```ts
 * import { CompressionMeter } from "./compression.ts";
 * import { MicroAdamTheoryAblationCpu } from "../reference/ablations.ts";
 * const meter = new CompressionMeter();
 * const t = { param: new Float32Array(4), grad: new Float32Array([4, 3, 0, 0]) };
 * const opt = new MicroAdamTheoryAblationCpu([t], { density: 0.25, errorFeedback: "none", observer: meter.observer });
 * opt.step();
 * console.log(meter.samples[0].q, meter.samples[0].omega); // 0.6 1
 * ```
 */
export class CompressionMeter {
  /** Measurements so far. */
  readonly samples: CompressionSample[] = [];
  readonly #every: number;

  /** @param every Measure steps t with t mod every = 0 (and step 1). @default 1 */
  constructor(every = 1) {
    this.#every = every;
  }

  /** The observer to hand to the optimizer. */
  readonly observer: CompressionObserver = (o) => {
    if (o.step === 1 || o.step % this.#every === 0) {
      this.samples.push(measureCompression(o));
    }
  };

  /** Means, the 95th percentile of (1 + ω)q, and how often (1 + ω)q < 1 held. */
  summary(): CompressionSummary {
    const s = this.samples;
    const prod = s.map((x) => (1 + x.omega) * x.q);
    return {
      steps: s.length,
      q: mean(s.map((x) => x.q)),
      omega: mean(s.map((x) => x.omega)),
      product95: s.length ? quantile(prod, 0.95) : NaN,
      conditionHeld: s.length
        ? prod.filter((p) => p < 1).length / s.length
        : NaN,
    };
  }
}
