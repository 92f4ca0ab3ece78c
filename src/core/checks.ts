/**
 * The checks behind every option: known keys only (with the closest valid
 * name suggested), and numbers validated as the kernels will see them — as
 * f32 — so that an option accepted here cannot turn into Infinity, NaN or a
 * β of exactly 1 on the GPU.
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";

/** Largest finite f32. */
export const F32_MAX = 3.4028234663852886e38;
/** Smallest positive normal f32 (2^-126). */
export const F32_MIN_NORMAL = 1.1754943508222875e-38;

/** Edit distance between two short strings, case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const keep = row[j];
      row[j] = Math.min(
        row[j] + 1,
        row[j - 1] + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = keep;
    }
  }
  return row[b.length];
}

/**
 * The valid name closest to `key`, when one is close enough to be a likely
 * typo (`weight_decay` → `weightDecay`, `lR` → `lr`).
 *
 * @example
 * ```ts
 * import { closest } from "./checks.ts";
 * console.log(closest("weight_decay", ["lr", "weightDecay"])); // "weightDecay"
 * console.log(closest("zzz", ["lr", "weightDecay"])); // undefined
 * ```
 */
export function closest(
  key: string,
  valid: readonly string[],
): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, "");
  let best: string | undefined;
  let bestD = Infinity;
  for (const v of valid) {
    const d = squash(v) === squash(key) ? 0 : distance(key, v);
    if (d < bestD) {
      best = v;
      bestD = d;
    }
  }
  return bestD <= Math.max(1, Math.floor(key.length / 3)) && bestD < key.length
    ? best
    : undefined;
}

/**
 * Checks that `value` is a plain options object (or undefined, meaning `{}`)
 * holding only `valid` keys; an unknown key is an {@link InvalidOptionError}
 * naming it and the closest valid key.
 *
 * @example
 * ```ts
 * import { checkKeys } from "./checks.ts";
 * try {
 *   checkKeys({ lR: 1 }, ["lr", "betas"], "Adam options");
 * } catch (e) {
 *   console.log((e as Error).message); // Adam options: unknown option "lR" (did you mean "lr"?); valid options: lr, betas
 * }
 * ```
 */
export function checkKeys(
  value: unknown,
  valid: readonly string[],
  what: string,
): Record<string, unknown> {
  if (value === undefined) return {};
  if (
    typeof value !== "object" || value === null || Array.isArray(value) ||
    ArrayBuffer.isView(value)
  ) {
    throw new InvalidOptionError(
      `${what}: expected an options object, got ${describe(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!valid.includes(key)) {
      const hint = closest(key, valid);
      throw new InvalidOptionError(
        `${what}: unknown option ${JSON.stringify(key)}${
          hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ""
        }; valid options: ${valid.join(", ")}`,
      );
    }
  }
  return value as Record<string, unknown>;
}

/**
 * An option's value, or `fallback` when it is absent. `null` is not absence:
 * it is refused, so that a typo'd `null` never means "the default".
 */
export function given<T>(
  o: Record<string, unknown>,
  key: string,
  fallback: T,
  what = key,
): unknown {
  if (!(key in o) || o[key] === undefined) return fallback;
  if (o[key] === null) {
    throw new InvalidOptionError(
      `${what}: got null; leave the option out for its default (${
        describe(fallback)
      })`,
    );
  }
  return o[key];
}

/**
 * A number that stays finite as an f32 and is at least `min`
 * (`minExclusive` for a strict bound). Returns it unchanged (the f64 value;
 * kernels round it to f32).
 *
 * @example
 * ```ts
 * import { checkF32 } from "./checks.ts";
 * console.log(checkF32(1e-3, "lr", { min: 0 })); // 0.001
 * try { checkF32(1e39, "lr", { min: 0 }); } catch (e) { console.log((e as Error).name); } // InvalidOptionError
 * ```
 */
export function checkF32(
  value: unknown,
  where: string,
  bounds: { min?: number; minExclusive?: number } = {},
): number {
  const want = bounds.minExclusive !== undefined
    ? `a finite number > ${bounds.minExclusive}`
    : bounds.min !== undefined
    ? `a finite number >= ${bounds.min}`
    : "a finite number";
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new InvalidOptionError(
      `${where}: expected ${want}, got ${describe(value)}`,
    );
  }
  if (Math.abs(Math.fround(value)) > F32_MAX) {
    throw new InvalidOptionError(
      `${where}: ${value} overflows f32, the type the kernels compute in (largest ${F32_MAX}); expected ${want} that is finite as an f32`,
    );
  }
  if (
    (bounds.min !== undefined && value < bounds.min) ||
    (bounds.minExclusive !== undefined && value <= bounds.minExclusive)
  ) {
    throw new InvalidOptionError(`${where}: expected ${want}, got ${value}`);
  }
  return value;
}

/**
 * An integer in [min, max].
 *
 * @example
 * ```ts
 * import { checkInteger } from "./checks.ts";
 * console.log(checkInteger(10, "window", 1, 65535)); // 10
 * ```
 */
export function checkInteger(
  value: unknown,
  where: string,
  min: number,
  max: number,
): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < min ||
    value > max
  ) {
    throw new InvalidOptionError(
      `${where}: expected an integer in [${min}, ${max}], got ${
        describe(value)
      }`,
    );
  }
  return value;
}

/**
 * A boolean (a string such as "false" is refused, not coerced).
 *
 * @example
 * ```ts
 * import { checkBoolean } from "./checks.ts";
 * console.log(checkBoolean(true, "amsgrad")); // true
 * ```
 */
export function checkBoolean(value: unknown, where: string): boolean {
  if (typeof value !== "boolean") {
    throw new InvalidOptionError(
      `${where}: expected true or false, got ${describe(value)}`,
    );
  }
  return value;
}
