/**
 * Loader for the MicroAdam golden trajectories recorded from the authors'
 * CUDA kernels (format: `docs/algorithm.md`, "Golden data format").
 * Reads every case under `tests/testdata/golden/` and every directory listed
 * in the `MICROADAM_GOLDEN` environment variable (colon-separated; each entry
 * is a case directory, or a directory of case directories). Generic, so the
 * CPU and GPU golden tests share it.
 *
 * @module
 */

/**
 * One tensor of a golden case.
 *
 * @example
 * ```ts
 * import type { GoldenTensor } from "./golden.ts";
 * const t: GoldenTensor = { size: 70001, k: 701, topk_block: 29056 };
 * console.log(t.k); // 701
 * ```
 */
import type { MicroAdamOptions } from "../src/core/options.ts";

export interface GoldenTensor {
  /** Number of elements. */
  size: number;
  /** Entries per window row for this tensor. */
  k: number;
  /** Top-k block size the authors' code used for it (min(D, size)). */
  topk_block: number;
}

/**
 * The parsed `case.json`.
 *
 * @example
 * ```ts
 * import { loadGoldenCases } from "./golden.ts";
 * import type { GoldenConfig } from "./golden.ts";
 * const config: GoldenConfig = (await loadGoldenCases())[0].config;
 * console.log(config.m, config.density); // 10 0.01
 * ```
 */
export interface GoldenConfig {
  /** Where the data came from. */
  source?: string;
  /** Element type of params and grads (always "bf16" so far). */
  dtype?: string;
  /** Recorded steps. */
  steps: number;
  /** Window length. */
  m: number;
  /** Top-k density. */
  density: number;
  /** EF quantization block size Q. */
  quant_block_size: number;
  /** Top-k block size D. */
  topk_block_size: number;
  /** Adam betas. */
  betas: [number, number];
  /** Adam epsilon. */
  eps: number;
  /** Learning rate. */
  lr: number;
  /** Decoupled weight decay. */
  weight_decay: number;
  /** Tensors, in optimizer order. */
  tensors: GoldenTensor[];
}

/**
 * A loaded golden case.
 *
 * @example
 * ```ts
 * import { loadGoldenCases } from "./golden.ts";
 * import type { GoldenCase } from "./golden.ts";
 * const c: GoldenCase = (await loadGoldenCases())[0];
 * console.log(c.name, c.total, c.rowTotal); // basic 75097 752
 * ```
 */
export interface GoldenCase {
  /** Case name (directory name). */
  name: string;
  /** Directory it was read from. */
  dir: string;
  /** The parsed `case.json`. */
  config: GoldenConfig;
  /** Tensor sizes, in order. */
  sizes: number[];
  /** Window row entries per tensor, in order. */
  ks: number[];
  /** Elements in all tensors. */
  total: number;
  /** Entries in one window row over all tensors (Σk). */
  rowTotal: number;
  /** Initial parameters, all tensors concatenated (bf16 bits). */
  params0: Uint16Array;
  /** Gradients, `steps × total` (bf16 bits). */
  grads: Uint16Array;
  /** Parameters after every step, `steps × total` (bf16 bits). */
  params: Uint16Array;
  /** Window row written at every step, `steps × rowTotal` block-local indices. */
  indices: Int16Array;
}

/**
 * Default location of the checked-in cases.
 *
 * @example
 * ```ts
 * import { GOLDEN_DIR } from "./golden.ts";
 * console.log(GOLDEN_DIR.endsWith("/testdata/golden/")); // true
 * ```
 */
export const GOLDEN_DIR: string = new URL("./testdata/golden/", import.meta.url)
  .pathname;

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Case directories found at `dir`: itself if it holds case.json, else its subdirectories that do. */
async function caseDirs(dir: string): Promise<string[]> {
  if (await isFile(`${dir}/case.json`)) return [dir];
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && await isFile(`${dir}/${e.name}/case.json`)) {
      out.push(`${dir}/${e.name}`);
    }
  }
  return out.sort();
}

/** Reads a little-endian 16-bit file whatever the host byte order. */
async function readU16(path: string, expected: number): Promise<Uint16Array> {
  const bytes = await Deno.readFile(path);
  if (bytes.byteLength !== expected * 2) {
    throw new Error(
      `${path}: expected ${
        expected * 2
      } bytes (${expected} × 16 bit), got ${bytes.byteLength}`,
    );
  }
  const out = new Uint16Array(expected);
  for (let i = 0; i < expected; i++) {
    out[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
  }
  return out;
}

/**
 * Loads one case directory.
 *
 * @param dir A directory holding `case.json` and the `.bin` files.
 *
 * @example
 * ```ts
 * import { GOLDEN_DIR, loadGoldenCase } from "./golden.ts";
 * const c = await loadGoldenCase(GOLDEN_DIR + "odd_q100");
 * console.log(c.sizes, c.ks); // [ 3, 31, 58113 ] [ 1, 1, 1745 ]
 * ```
 */
export async function loadGoldenCase(dir: string): Promise<GoldenCase> {
  const config = JSON.parse(
    await Deno.readTextFile(`${dir}/case.json`),
  ) as GoldenConfig & { files?: Record<string, string> };
  const files = {
    params0: "params0.bin",
    grads: "grads.bin",
    params: "params.bin",
    indices: "indices.bin",
    ...config.files,
  };
  const sizes = config.tensors.map((t) => t.size);
  const ks = config.tensors.map((t) => t.k);
  const total = sizes.reduce((a, b) => a + b, 0);
  const rowTotal = ks.reduce((a, b) => a + b, 0);
  const steps = config.steps;
  const name = dir.replace(/\/+$/, "").split("/").pop() ?? dir;
  return {
    name,
    dir,
    config,
    sizes,
    ks,
    total,
    rowTotal,
    params0: await readU16(`${dir}/${files.params0}`, total),
    grads: await readU16(`${dir}/${files.grads}`, steps * total),
    params: await readU16(`${dir}/${files.params}`, steps * total),
    indices: new Int16Array(
      (await readU16(`${dir}/${files.indices}`, steps * rowTotal)).buffer,
    ),
  };
}

/**
 * Loads every golden case: those under {@link GOLDEN_DIR}, then those named
 * by `MICROADAM_GOLDEN` (needs `--allow-env`; ignored without it). A
 * directory reached twice is loaded once.
 *
 * @example
 * ```ts
 * import { loadGoldenCases } from "./golden.ts";
 * const cases = await loadGoldenCases();
 * console.log(cases.map((c) => c.name)); // [ "basic", "odd_q100" ] (plus MICROADAM_GOLDEN's)
 * ```
 */
export async function loadGoldenCases(): Promise<GoldenCase[]> {
  const roots = [GOLDEN_DIR.replace(/\/+$/, "")];
  let extra: string | undefined;
  try {
    extra = Deno.env.get("MICROADAM_GOLDEN");
  } catch {
    extra = undefined; // no env permission: the checked-in cases only
  }
  if (extra) roots.push(...extra.split(":").filter((s) => s.length > 0));
  const seen = new Set<string>();
  const cases: GoldenCase[] = [];
  for (const root of roots) {
    for (const dir of await caseDirs(root)) {
      const real = await Deno.realPath(dir);
      if (seen.has(real)) continue;
      seen.add(real);
      cases.push(await loadGoldenCase(dir));
    }
  }
  return cases;
}

/**
 * Per-tensor views of step `step` (0-based) of a flat `steps × Σsizes`
 * array (grads, params or indices). Views share memory with `flat`.
 *
 * @example
 * ```ts
 * import { splitStep } from "./golden.ts";
 * const flat = new Uint16Array([1, 2, 3, 4, 5, 6]);
 * console.log(splitStep(flat, 1, [1, 2]).map((v) => Array.from(v))); // [ [ 4 ], [ 5, 6 ] ]
 * ```
 */
export function splitStep<T extends Uint16Array | Int16Array>(
  flat: T,
  step: number,
  sizes: readonly number[],
): T[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  let off = step * total;
  return sizes.map((n) => {
    const v = flat.subarray(off, off + n) as T;
    off += n;
    return v;
  });
}

/**
 * The MicroAdam options (bf16 mode) a case was recorded with; `lrScale`
 * perturbs the learning rate (for tests that must see a mismatch).
 *
 * @example
 * ```ts
 * import { goldenOptions, loadGoldenCases } from "./golden.ts";
 * const [c] = await loadGoldenCases();
 * console.log(goldenOptions(c).dtype); // "bf16"
 * ```
 */
export function goldenOptions(c: GoldenCase, lrScale = 1): MicroAdamOptions {
  const cfg = c.config;
  return {
    dtype: "bf16",
    lr: cfg.lr * lrScale,
    betas: cfg.betas,
    eps: cfg.eps,
    weightDecay: cfg.weight_decay,
    window: cfg.m,
    density: cfg.density,
    topkBlockSize: cfg.topk_block_size,
    efBlockSize: cfg.quant_block_size,
  };
}
