/**
 * Mesa's Vulkan drivers (llvmpipe included) print
 * `error: XDG_RUNTIME_DIR is invalid or not set in the environment` when a
 * process starts WebGPU without a runtime directory, as on a fresh server
 * or in a container. Nothing is wrong, but a user cannot know that; so the
 * scripts give the process a private one before asking for an adapter, as a
 * login session would.
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";

function privateDir(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    const uid = Deno.uid();
    return st.isDirectory && (uid === null || st.uid === uid) &&
      ((st.mode ?? 0) & 0o077) === 0;
  } catch {
    return false;
  }
}

/**
 * Sets `XDG_RUNTIME_DIR` when it is unset, relative (the XDG spec and
 * Wayland's client library take only an absolute path) or not a folder: to
 * `$TMPDIR/microadam-runtime-<uid>` (created with mode 0700, and reused by
 * later runs when it is still this user's and private), or else to a new
 * private temporary folder. Returns the folder in use. Call it before the
 * first `requestDevice()`: Mesa reads the variable when WebGPU starts, and
 * again at exit (so the folder is left in place). A folder the user chose
 * is kept whatever its mode.
 *
 * @returns The absolute path `XDG_RUNTIME_DIR` now holds.
 *
 * @example
 * ```ts
 * import { ensureRuntimeDir } from "./runtime_dir.ts";
 * const dir = ensureRuntimeDir();
 * console.log(Deno.statSync(dir).isDirectory); // true
 * ```
 */
export function ensureRuntimeDir(): string {
  const current = Deno.env.get("XDG_RUNTIME_DIR");
  if (current && isAbsolute(current)) {
    try {
      if (Deno.statSync(current).isDirectory) return current;
    } catch { /* not there: set one */ }
  }
  const tmp = Deno.env.get("TMPDIR") || "/tmp";
  let dir = resolve(tmp, `microadam-runtime-${Deno.uid() ?? "user"}`);
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) dir = "";
  }
  if (!dir || !privateDir(dir)) {
    dir = resolve(Deno.makeTempDirSync({ prefix: "microadam-runtime-" }));
    Deno.chmodSync(dir, 0o700);
  }
  Deno.env.set("XDG_RUNTIME_DIR", dir);
  return dir;
}
