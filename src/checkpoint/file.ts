/**
 * Saving and loading checkpoints as files, atomically: a crash or a full disk
 * mid-save leaves either the old checkpoint or the new one, never half of one.
 *
 * @module
 */

import { dirname } from "node:path";
import { CheckpointError } from "../errors.ts";
import type { OptimizerState } from "../core/state.ts";
import { decodeCheckpointWithExtras, encodeCheckpoint } from "./format.ts";

/**
 * Writes `bytes` to `path` atomically: into a uniquely named temp file in the
 * same directory (so the rename stays on one filesystem), fsynced, then
 * renamed over `path`, then the directory fsynced (best effort) so the rename
 * itself survives a power loss.
 *
 * @throws {Error} Naming `path` and the cause, after removing the temp file;
 * whatever was at `path` before is left untouched.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./file.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await writeFileAtomic(`${dir}/a.bin`, new Uint8Array([1, 2, 3]));
 *   console.log(await Deno.readFile(`${dir}/a.bin`)); // Uint8Array(3) [ 1, 2, 3 ]
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  const rand = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const tmp = `${path}.tmp-${Deno.pid}-${rand}`;
  let file: Deno.FsFile | undefined;
  let created = false;
  try {
    // createNew: never clobber a file someone else owns under this name.
    file = await Deno.open(tmp, { write: true, createNew: true });
    created = true;
    // write() may write less than asked (e.g. large buffers); loop until done.
    for (let n = 0; n < bytes.byteLength;) {
      n += await file.write(bytes.subarray(n));
    }
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(tmp, path);
    created = false;
  } catch (cause) {
    try {
      file?.close();
    } catch { /* already closed */ }
    if (created) {
      await Deno.remove(tmp).catch(() => {/* best effort */});
    }
    throw new Error(
      `could not save ${path}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
  }
  // Best effort: Windows cannot open or fsync a directory this way, and the
  // file is already in place; only durability across power loss is at stake.
  try {
    const dir = await Deno.open(dirname(path), { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  } catch { /* unsupported here */ }
}

/**
 * Encodes `state` and writes it to `path` atomically.
 *
 * @throws {CheckpointError} If the state cannot be encoded exactly.
 * @throws {Error} If the file cannot be written (the old file is kept).
 *
 * @example
 * ```ts
 * import { loadCheckpoint, saveCheckpoint } from "./file.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const state = { optimizer: "Adam", config: { amsgrad: false }, step: 5, calls: 6, skipped: 1, ring: 0,
 *     tensors: [{ name: "w", length: 2, buffers: { expAvg: new Uint8Array(8), expAvgSq: new Uint8Array(8) } }] };
 *   await saveCheckpoint(`${dir}/opt.ckpt`, state);
 *   console.log((await loadCheckpoint(`${dir}/opt.ckpt`)).skipped); // 1
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function saveCheckpoint(
  path: string,
  state: OptimizerState,
): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(state));
}

/**
 * Reads and decodes the checkpoint at `path`.
 *
 * @throws {CheckpointError} If there is no file at `path` ("no checkpoint at
 * …"), or it is not a valid checkpoint (the message starts with the path).
 *
 * @example
 * ```ts
 * import { loadCheckpoint } from "./file.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await loadCheckpoint(`${dir}/missing.ckpt`);
 * } catch (e) {
 *   console.log((e as Error).message); // no checkpoint at …/missing.ckpt
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function loadCheckpoint(path: string): Promise<OptimizerState> {
  return (await readCheckpointFile(path)).state;
}

/**
 * Reads and decodes the checkpoint at `path` with its parameters and
 * metadata (see {@link decodeCheckpointWithExtras}); errors as
 * {@link loadCheckpoint}.
 *
 * @example
 * ```ts
 * import { readCheckpointFile, writeFileAtomic } from "./file.ts";
 * import { encodeCheckpoint } from "./format.ts";
 * const dir = await Deno.makeTempDir();
 * const state = { optimizer: "Adam", config: {}, step: 0, calls: 0, skipped: 0, ring: 0, tensors: [] };
 * await writeFileAtomic(`${dir}/a.ckpt`, encodeCheckpoint(state, { meta: { note: "hi" } }));
 * console.log((await readCheckpointFile(`${dir}/a.ckpt`)).meta); // { note: "hi" }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readCheckpointFile(
  path: string,
): Promise<ReturnType<typeof decodeCheckpointWithExtras>> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(`no checkpoint at ${path}`, { cause: e });
    }
    throw e;
  }
  try {
    return decodeCheckpointWithExtras(bytes);
  } catch (e) {
    // Prefix the path so a failed resume says which file was bad.
    if (e instanceof CheckpointError) {
      throw new CheckpointError(`${path}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}
