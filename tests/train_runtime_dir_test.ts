/**
 * src/train/runtime_dir.ts: an unset, relative or missing `XDG_RUNTIME_DIR`
 * (or one naming a file) is replaced by `$TMPDIR/microadam-runtime-<uid>`
 * with mode 0700, reused while it stays private, or else by a new private
 * temporary folder; a folder the user set is left alone. Each case runs in
 * a fresh `TMPDIR` and restores the environment and working folder after.
 *
 * The cases run in a child `deno test` of this file: they change the
 * process's environment and working folder, which the test files that
 * `deno test --parallel` runs beside them share (a `Deno.makeTempDir()` in
 * tests/train_resume_test.ts once took the relative `TMPDIR` of the last
 * case, and could not remove its folder after).
 */

import assert from "node:assert/strict";
import { dirname, isAbsolute, join } from "node:path";
import { ensureRuntimeDir } from "../src/train/runtime_dir.ts";

const CHILD = "MICROADAM_RUNTIME_DIR_TEST_CHILD";
const IN_CHILD = Deno.env.get(CHILD) === "1";

let cases = 0;

/** A case: counted here, registered in the child process only. */
function scenario(name: string, fn: () => Promise<void>): void {
  cases++;
  if (IN_CHILD) Deno.test(name, fn);
}

const UID = Deno.uid();
const SHARED = `microadam-runtime-${UID ?? "user"}`;

/** Runs `fn` with TMPDIR set to a new folder (realpath) and XDG_RUNTIME_DIR unset. */
async function withEnv(fn: (tmp: string) => void): Promise<void> {
  const saved = {
    XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR"),
    TMPDIR: Deno.env.get("TMPDIR"),
  };
  const cwd = Deno.cwd();
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "runtime_dir_test_" }),
  );
  try {
    Deno.env.set("TMPDIR", tmp);
    Deno.env.delete("XDG_RUNTIME_DIR");
    fn(tmp);
  } finally {
    Deno.chdir(cwd);
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Asserts `dir` is XDG_RUNTIME_DIR, an absolute folder of ours with mode 0700. */
function assertPrivate(dir: string): void {
  assert.equal(Deno.env.get("XDG_RUNTIME_DIR"), dir);
  assert.ok(isAbsolute(dir), dir);
  const st = Deno.statSync(dir);
  assert.ok(st.isDirectory, dir);
  assert.equal((st.mode ?? 0) & 0o777, 0o700, `mode of ${dir}`);
  if (UID !== null) assert.equal(st.uid, UID);
}

scenario(
  "runtime_dir: unset, it creates $TMPDIR/microadam-runtime-<uid> with mode 0700 and reuses it",
  async () => {
    await withEnv((tmp) => {
      const dir = ensureRuntimeDir();
      assert.equal(dir, join(tmp, SHARED));
      assertPrivate(dir);

      // Set now: left as it is.
      assert.equal(ensureRuntimeDir(), dir);

      // A later process (variable unset again) reuses the folder and its files.
      Deno.writeTextFileSync(join(dir, "mesa-socket"), "x");
      Deno.env.delete("XDG_RUNTIME_DIR");
      assert.equal(ensureRuntimeDir(), dir);
      assertPrivate(dir);
      assert.equal(Deno.readTextFileSync(join(dir, "mesa-socket")), "x");
    });
  },
);

scenario(
  "runtime_dir: a folder the user set is kept, whatever its mode",
  async () => {
    await withEnv((tmp) => {
      const mine = join(tmp, "my-runtime");
      Deno.mkdirSync(mine);
      Deno.chmodSync(mine, 0o755);
      Deno.env.set("XDG_RUNTIME_DIR", mine);
      assert.equal(ensureRuntimeDir(), mine);
      assert.equal(Deno.env.get("XDG_RUNTIME_DIR"), mine);
      assert.equal((Deno.statSync(mine).mode ?? 0) & 0o777, 0o755);
      assert.throws(
        () => Deno.statSync(join(tmp, SHARED)),
        Deno.errors.NotFound,
      );
    });
  },
);

scenario(
  "runtime_dir: empty, relative, missing or a file is replaced",
  async () => {
    await withEnv((tmp) => {
      const file = join(tmp, "a-file");
      Deno.writeTextFileSync(file, "");
      Deno.mkdirSync(join(tmp, "rel"));
      Deno.chdir(tmp);
      for (const bad of ["", "rel", "./rel", join(tmp, "missing"), file]) {
        Deno.env.set("XDG_RUNTIME_DIR", bad);
        const dir = ensureRuntimeDir();
        assert.equal(dir, join(tmp, SHARED), `XDG_RUNTIME_DIR=${bad}`);
        assertPrivate(dir);
      }
    });
  },
);

scenario(
  "runtime_dir: a shared folder that is not private, or not a folder, gives way to a new private one",
  async () => {
    await withEnv((tmp) => {
      const shared = join(tmp, SHARED);
      Deno.mkdirSync(shared);
      Deno.chmodSync(shared, 0o755);
      const a = ensureRuntimeDir();
      assert.notEqual(a, shared);
      assert.equal(dirname(a), tmp);
      assert.match(a, /\/microadam-runtime-[^/]+$/);
      assertPrivate(a);
      assert.equal((Deno.statSync(shared).mode ?? 0) & 0o777, 0o755); // untouched

      Deno.removeSync(shared);
      Deno.writeTextFileSync(shared, "");
      Deno.env.delete("XDG_RUNTIME_DIR");
      const b = ensureRuntimeDir();
      assert.notEqual(b, shared);
      assert.notEqual(b, a);
      assert.equal(dirname(b), tmp);
      assertPrivate(b);
    });
  },
);

scenario(
  "runtime_dir: a relative TMPDIR still gives an absolute path",
  async () => {
    await withEnv((tmp) => {
      Deno.mkdirSync(join(tmp, "t"));
      Deno.chdir(tmp);
      Deno.env.set("TMPDIR", "t");
      const dir = ensureRuntimeDir();
      assert.equal(dir, join(tmp, "t", SHARED));
      assertPrivate(dir);
    });
  },
);

// Registered after the cases, so that `cases` counts them all.
if (!IN_CHILD) {
  Deno.test(`runtime_dir: its ${cases} cases pass in a child process of their own`, async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", new URL(import.meta.url).pathname],
      env: { [CHILD]: "1", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr);
    assert.ok(out.success, text);
    assert.match(text, new RegExp(`ok \\| ${cases} passed.*\\| 0 failed`));
  });
}
