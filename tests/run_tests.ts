/**
 * Runs `deno test` with the given arguments (the test task's last step),
 * passing its output through, and exits with its status, but for one case.
 *
 * Deno 2.9.6 sometimes aborts at exit, after every test has run and the
 * summary is printed, in any test process that used WebGPU on Mesa's
 * lavapipe: glibc reports "double free or corruption" or "corrupted size vs.
 * prev_size" and the process dies with SIGABRT (or SIGSEGV). A test file
 * holding nothing but `requestAdapter()` and `requestDevice()` does it in
 * about 5 % of runs; `deno run` with the same code never did in 200 runs, nor
 * did `deno test` without WebGPU. Such an exit is reported as what it is and
 * counted as a pass only when the summary said every test passed; anything
 * else (a failure, a crash before the summary) fails as usual.
 *
 * ```sh
 * deno run --allow-run --allow-env tests/run_tests.ts -A --doc --parallel
 * ```
 *
 * @module
 */

// RUN_TESTS_DENO stands in for deno in this script's own test.
const deno = Deno.env.get("RUN_TESTS_DENO") ?? Deno.execPath();
const child = new Deno.Command(deno, {
  args: ["test", ...Deno.args],
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Pass stdout through while keeping its tail, where the summary is.
let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
}
const status = await child.status;
if (status.success) Deno.exit(0);

// deno-lint-ignore no-control-regex
const plain = tail.replace(/\x1b\[[0-9;]*m/g, "");
const passedAll = /^ok \| \d+ passed.* \| 0 failed/m.test(plain);
const teardownCrash = status.signal === "SIGABRT" ||
  status.signal === "SIGSEGV" || status.code === 134 || status.code === 139;
if (passedAll && teardownCrash) {
  console.error(
    `run_tests: every test passed, then deno died at exit (${
      status.signal ?? `code ${status.code}`
    }): the known teardown crash of Deno 2.9.6 with WebGPU under \`deno test\`, not a test failure`,
  );
  Deno.exit(0);
}
Deno.exit(status.code || 1);
