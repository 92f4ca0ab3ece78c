/**
 * demo.ts as a user runs it: a short run prints the accuracy and memory table
 * with each optimizer's exact state bytes and nothing from Mesa; a bad flag
 * is one line naming it and exit status 2.
 */
import assert from "node:assert/strict";

const demo = new URL("../demo.ts", import.meta.url).pathname;

async function runDemo(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...Deno.env.toObject() };
  // A fresh machine: the demo must give Mesa a runtime directory itself.
  delete env.XDG_RUNTIME_DIR;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", demo, ...args],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("demo: a short synthetic run prints each optimizer's accuracy and exact state bytes, and nothing from Mesa", async () => {
  const r = await runDemo([
    "--steps",
    "3",
    "--batch",
    "32",
    "--data",
    "synthetic",
    "--optimizers",
    "microadam,adamw,amsgrad",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  assert.doesNotMatch(r.stdout, /XDG_RUNTIME_DIR|MESA|error/i);
  // The MLP 784-256-128-10 has 235,146 parameters: AdamW keeps 8 bytes per
  // parameter, AMSGrad 12, MicroAdam (window 3, density 1 %) 146,100 bytes.
  const row = (name: string) =>
    r.stdout.split("\n").find((l) =>
      new RegExp(`^${name} +0\\.003 `).test(l)
    ) ??
      "";
  assert.match(row("MicroAdam"), /\d+\.\d\d %\s+146,100\s+0\.621\s/);
  assert.match(row("AdamW"), /\d+\.\d\d %\s+1,881,168\s+8\.000\s/);
  assert.match(row("AMSGrad"), /\d+\.\d\d %\s+2,821,752\s+12\.000\s/);
  assert.match(
    r.stdout,
    /MicroAdam keeps 12\.9× less optimizer state than AdamW/,
  );
});

Deno.test("demo: a bad flag or value is one line naming it", async () => {
  const unknown = await runDemo(["--cpu"]);
  assert.equal(unknown.code, 2);
  assert.equal(
    unknown.stderr.trim(),
    "demo: Unknown option '--cpu' (deno task demo --help lists the options)",
  );
  const bad = await runDemo(["--steps", "0"]);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr.trim(),
    'demo: --steps: expected an integer >= 1, got "0"',
  );
});
