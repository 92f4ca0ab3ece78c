/**
 * A whole training state in one file: the model's parameters, the
 * optimizer's state and metadata of the caller's (the epoch, the position in
 * the data), written atomically with CRCs (format version 2 of
 * `./format.ts`), so that a run can stop at any step and continue exactly.
 *
 * @module
 */

import type { DType } from "../core/options.ts";
import { CheckpointError } from "../errors.ts";
import { readTensor, writeTensor } from "../gpu/tensor_io.ts";
import type { GpuTensor } from "../gpu/tensors.ts";
import { toBf16Array } from "../numeric/bf16.ts";
import { GpuOptimizer } from "../optim/gpu_optimizer.ts";
import type { CpuOptimizer, CpuTensor } from "../reference/cpu_optimizer.ts";
import type { OptimizerState } from "../core/state.ts";
import { readCheckpointFile, writeFileAtomic } from "../checkpoint/file.ts";
import { encodeCheckpoint, type ParamData } from "../checkpoint/format.ts";

/** The parts of a training state: a WebGPU optimizer with GPU tensors, or a CPU one with CPU tensors. */
export type TrainingParts =
  | {
    /** The model's parameter tensors (usually the ones the optimizer updates). */
    params: readonly GpuTensor[];
    /** The optimizer. */
    optimizer: GpuOptimizer;
  }
  | {
    /** The model's parameter tensors. */
    params: readonly CpuTensor[];
    /** The optimizer. */
    // deno-lint-ignore no-explicit-any
    optimizer: CpuOptimizer<any>;
  };

/** What {@link loadTrainingState} gives back beside restoring the state. */
export interface LoadedTrainingState {
  /** The metadata saved with the state, or undefined. */
  meta?: Record<string, unknown>;
  /** The optimizer's applied steps at the save. */
  step: number;
  /** Its `step()` calls at the save (skipped steps included). */
  calls: number;
}

const bytesOf = (a: Float32Array | Uint16Array): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();

function dtypeOf(
  tensor: GpuTensor | CpuTensor,
  state: OptimizerState,
): DType {
  if ("dtype" in tensor && tensor.dtype !== undefined) return tensor.dtype;
  if ("param" in tensor && tensor.param instanceof Uint16Array) return "bf16";
  if (tensor.param instanceof Float32Array) return "f32";
  return state.config.dtype === "bf16" ? "bf16" : "f32";
}

const nameOf = (t: GpuTensor | CpuTensor, i: number) => t.name ?? String(i);

/**
 * Saves the parameters `params`, the optimizer's state and `meta` (JSON
 * data: objects, arrays, strings, finite numbers, booleans, null) to `path`
 * in one atomic write: a temp file, fsynced, renamed over `path`. Call it
 * between steps (after submitting the last one): it reads the GPU state back.
 *
 * @throws {CheckpointError} If `meta` is not JSON data.
 * @throws {Error} If the file cannot be written (the old file is kept).
 *
 * @example
 * ```ts
 * import { AdamW, createTensor, loadTrainingState, readTensor, requestDevice, saveTrainingState, writeTensor } from "../../mod.ts";
 * const device = await requestDevice();
 * const w = createTensor(device, new Float32Array([1, 2, 3]), { name: "w" });
 * const opt = new AdamW(device, [w], { lr: 0.1 });
 * writeTensor(device, w, new Float32Array([1, -1, 0.5]));
 * opt.step();
 * const dir = await Deno.makeTempDir();
 * await saveTrainingState(`${dir}/run.ckpt`, { params: [w], optimizer: opt, meta: { epoch: 1 } });
 * const saved = await readTensor(device, w);
 * opt.step(); // moves on …
 * const { meta, step } = await loadTrainingState(`${dir}/run.ckpt`, { params: [w], optimizer: opt });
 * console.log(meta, step, (await readTensor(device, w)).every((x, i) => x === saved[i])); // { epoch: 1 } 1 true
 * await Deno.remove(dir, { recursive: true });
 * device.destroy();
 * ```
 */
export async function saveTrainingState(
  path: string,
  parts: TrainingParts & { meta?: Record<string, unknown> },
): Promise<void> {
  const { optimizer } = parts;
  let state: OptimizerState;
  let params: ParamData[];
  if (optimizer instanceof GpuOptimizer) {
    state = await optimizer.stateDict();
    const tensors = parts.params as readonly GpuTensor[];
    params = [];
    for (const [i, t] of tensors.entries()) {
      const dtype = dtypeOf(t, state);
      const values = await readTensor(optimizer.device, { ...t, dtype });
      params.push({
        name: nameOf(t, i),
        length: t.length,
        dtype,
        bytes: bytesOf(dtype === "bf16" ? toBf16Array(values) : values),
      });
    }
  } else {
    state = optimizer.stateDict();
    params = (parts.params as readonly CpuTensor[]).map((t, i) => ({
      name: nameOf(t, i),
      length: t.param.length,
      dtype: dtypeOf(t, state),
      bytes: bytesOf(t.param),
    }));
  }
  await writeFileAtomic(
    path,
    encodeCheckpoint(state, { params, meta: parts.meta }),
  );
}

/**
 * Restores a state saved by {@link saveTrainingState} into `params` and the
 * optimizer, and returns its metadata. Everything is checked before anything
 * is written (the parameters' count, names, lengths and dtypes, then the
 * optimizer state, as `loadStateDict` does), so a mismatch throws and
 * changes nothing.
 *
 * @throws {CheckpointError} Naming the file and the mismatch, or the
 * corruption.
 *
 * @example
 * ```ts
 * import { AdamCpu, loadTrainingState, saveTrainingState } from "../../mod.ts";
 * const w = { name: "w", param: new Float32Array([1, 2]), grad: new Float32Array([0.5, 0.5]) };
 * const opt = new AdamCpu([w], { lr: 0.1 });
 * opt.step();
 * const dir = await Deno.makeTempDir();
 * await saveTrainingState(`${dir}/cpu.ckpt`, { params: [w], optimizer: opt });
 * const other = { name: "v", param: new Float32Array(2), grad: new Float32Array(2) };
 * try {
 *   await loadTrainingState(`${dir}/cpu.ckpt`, { params: [other], optimizer: new AdamCpu([other]) });
 * } catch (e) {
 *   console.log((e as Error).name); // CheckpointError
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadTrainingState(
  path: string,
  parts: TrainingParts,
): Promise<LoadedTrainingState> {
  const { state, params, meta } = await readCheckpointFile(path);
  const tensors: readonly (GpuTensor | CpuTensor)[] = parts.params;
  const fail = (what: string): never => {
    throw new CheckpointError(`${path}: ${what}`);
  };
  if (params.length !== tensors.length) {
    fail(
      `holds ${params.length} parameter tensors, ${tensors.length} were given${
        params.length === 0 ? " (an optimizer-only checkpoint?)" : ""
      }`,
    );
  }
  tensors.forEach((t, i) => {
    const saved = params[i];
    const name = nameOf(t, i);
    const length = "length" in t ? t.length : t.param.length;
    const dtype = dtypeOf(t, state);
    if (saved.name !== name) {
      fail(`parameter ${i} is "${saved.name}" in the file, "${name}" here`);
    }
    if (saved.length !== length || saved.dtype !== dtype) {
      fail(
        `parameter "${name}" has ${saved.length} ${saved.dtype} values in the file, ${length} ${dtype} here`,
      );
    }
  });
  try {
    // Validates the whole state before writing any of it.
    parts.optimizer.loadStateDict(state);
  } catch (e) {
    if (e instanceof CheckpointError) {
      throw new CheckpointError(`${path}: ${e.message}`, { cause: e });
    }
    throw e;
  }
  const { optimizer } = parts;
  params.forEach((p, i) => {
    const values = p.dtype === "bf16"
      ? new Uint16Array(p.bytes.buffer, p.bytes.byteOffset, p.length)
      : new Float32Array(p.bytes.buffer, p.bytes.byteOffset, p.length);
    if (optimizer instanceof GpuOptimizer) {
      const t = tensors[i] as GpuTensor;
      writeTensor(optimizer.device, { ...t, dtype: p.dtype }, values, "param");
    } else {
      (tensors[i] as CpuTensor).param.set(values);
    }
  });
  const loaded: LoadedTrainingState = { step: state.step, calls: state.calls };
  if (meta !== undefined) loaded.meta = meta;
  return loaded;
}
