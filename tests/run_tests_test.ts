/**
 * tests/run_tests.ts: deno test's status passes through, except an abort
 * after a summary in which every test passed.
 */

import assert from "node:assert/strict";

const runner = new URL("./run_tests.ts", import.meta.url).pathname;

async function run(
  source: string,
  fake?: string,
): Promise<{ code: number; err: string }> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/t_test.ts`, source);
    const env: Record<string, string> = {};
    if (fake) {
      await Deno.writeTextFile(`${dir}/deno`, fake, { mode: 0o755 });
      env.RUN_TESTS_DENO = `${dir}/deno`;
    }
    const out = await new Deno.Command(Deno.execPath(), {
      env,
      args: [
        "run",
        "--allow-run",
        "--allow-env",
        runner,
        "-A",
        "--no-check",
        `${dir}/t_test.ts`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    return { code: out.code, err: new TextDecoder().decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// A stand-in deno that prints a summary, then dies the way Deno does at
// teardown.
const dies = (summary: string) =>
  `#!/bin/sh\necho "${summary}"\nkill -ABRT $$\n`;

Deno.test("run_tests: a pass is 0, a failure is not; an abort after an all-passed summary is 0 with a note, any other abort is not", async () => {
  assert.equal((await run('Deno.test("a", () => {});')).code, 0);
  assert.notEqual((await run('Deno.test("a", () => { throw 1; });')).code, 0);
  const crash = await run("", dies("ok | 3 passed | 0 failed (1s)"));
  assert.equal(crash.code, 0, crash.err);
  assert.match(
    crash.err,
    /every test passed, then deno died at exit \(SIGABRT\)/,
  );
  const failed = await run("", dies("FAILED | 2 passed | 1 failed (1s)"));
  assert.notEqual(failed.code, 0);
  assert.notEqual((await run("", dies("running 3 tests"))).code, 0);
});
