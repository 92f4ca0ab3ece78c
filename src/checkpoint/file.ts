/**
 * Saving and loading checkpoints as files, atomically: a crash or a full disk
 * mid-save leaves either the old checkpoint or the new one, never half of one.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { CheckpointError, describe } from "../errors.ts";
import type { OptimizerState } from "../core/state.ts";
import { decodeCheckpointWithExtras, encodeCheckpoint } from "./format.ts";

/** Marks a temp file of {@link writeFileAtomic}: `<path>.tmp-<pid>-<random>`. */
const TEMP_MARK = ".tmp-";
/** Temp files this process is writing right now. */
const inProgress = new Set<string>();

/** Whether process `pid` still runs (Linux: /proc; elsewhere: assume it does). */
function alive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return true;
    try {
      Deno.statSync("/proc/self");
      return false; // /proc exists, the process does not
    } catch {
      return true; // no /proc: cannot tell
    }
  }
}

/**
 * Removes temp files that an earlier save to `path` left behind when its
 * process was killed mid-write: those of processes that no longer run, or of
 * this process but not in progress, or (where liveness cannot be told) older
 * than an hour. Best effort: a failure here never fails the save.
 */
async function removeStaleTemps(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `${basename(path)}${TEMP_MARK}`;
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile || !entry.name.startsWith(prefix)) continue;
      const full = join(dir, entry.name);
      const pid = Number(entry.name.slice(prefix.length).split("-")[0]);
      let stale = !Number.isInteger(pid) ||
        (pid === Deno.pid ? !inProgress.has(full) : !alive(pid));
      if (!stale && pid !== Deno.pid) {
        const info = await Deno.stat(full);
        stale = Date.now() - (info.mtime?.getTime() ?? Date.now()) > 3600e3;
      }
      if (stale) await Deno.remove(full).catch(() => {});
    }
  } catch { /* unreadable directory: the save itself will say so */ }
}

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
  await removeStaleTemps(path);
  const rand = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const tmp = `${path}${TEMP_MARK}${Deno.pid}-${rand}`;
  inProgress.add(tmp);
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
    inProgress.delete(tmp);
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
  inProgress.delete(tmp);
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
 * @throws {CheckpointError} If the state cannot be encoded exactly, or the
 * file cannot be written (the message names the path; the old file is kept).
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
  const bytes = encodeCheckpoint(state);
  try {
    await writeFileAtomic(path, bytes);
  } catch (e) {
    throw new CheckpointError((e as Error).message, { cause: e });
  }
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
  const bytes = await readBytes(path);
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

/**
 * The bytes of the file at `path`; anything that is not a readable regular
 * file (missing, a directory, a symlink loop, no permission) is a
 * {@link CheckpointError} naming the path and the cause.
 */
async function readBytes(path: string): Promise<Uint8Array> {
  if (typeof path !== "string" || path === "") {
    throw new CheckpointError(
      `expected a checkpoint path (a non-empty string), got ${describe(path)}`,
    );
  }
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) {
      throw new CheckpointError(
        `${path} is not a checkpoint file (it is a ${
          info.isDirectory ? "directory" : "special file"
        })`,
      );
    }
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(`no checkpoint at ${path}`, { cause: e });
    }
    throw new CheckpointError(
      `cannot read the checkpoint at ${path}: ${(e as Error).message}`,
      { cause: e },
    );
  }
}
