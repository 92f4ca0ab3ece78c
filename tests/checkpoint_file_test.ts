/** src/checkpoint/file.ts: atomic saves, and loads that name the file. */

import assert from "node:assert/strict";
import { CheckpointError } from "../src/errors.ts";
import { encodeCheckpoint } from "../src/checkpoint/format.ts";
import {
  loadCheckpoint,
  saveCheckpoint,
  writeFileAtomic,
} from "../src/checkpoint/file.ts";
import { sampleState, smallState } from "./checkpoint_states.ts";

async function tempFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.filter((n) => n.includes(".tmp-")).sort();
}

Deno.test("saveCheckpoint atomically replaces an existing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/opt.ckpt`;
    await Deno.writeTextFile(
      path,
      "old contents, much longer than ".repeat(100),
    );
    await saveCheckpoint(path, sampleState());
    assert.deepEqual(await loadCheckpoint(path), sampleState());
    const s = smallState();
    await saveCheckpoint(path, s);
    assert.deepEqual(await loadCheckpoint(path), s);
    assert.deepEqual(await Deno.readFile(path), encodeCheckpoint(s));
    assert.deepEqual(await tempFiles(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("failed saves keep the old file and leave no temp files", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/opt.ckpt`;
  const old = encodeCheckpoint(smallState());
  await Deno.writeFile(path, old);
  const rename = Deno.rename;
  const write = Deno.FsFile.prototype.write;
  try {
    // 1. The rename fails after the temp file was fully written and synced.
    Deno.rename = () => Promise.reject(new Error("simulated rename failure"));
    await assert.rejects(
      () => saveCheckpoint(path, sampleState()),
      (e: Error) => {
        assert.match(e.message, new RegExp(`could not save ${path}`));
        assert.match(e.message, /simulated rename failure/);
        return true;
      },
    );
    Deno.rename = rename;
    assert.deepEqual(await Deno.readFile(path), old);
    assert.deepEqual(await tempFiles(dir), []);

    // 2. The disk fills up halfway through the write.
    let calls = 0;
    Deno.FsFile.prototype.write = function (this: Deno.FsFile, p: Uint8Array) {
      if (calls++ > 0) {
        return Promise.reject(new Deno.errors.WriteZero("simulated ENOSPC"));
      }
      return write.call(this, p.subarray(0, 10));
    };
    await assert.rejects(
      () => saveCheckpoint(path, sampleState()),
      /could not save .*simulated ENOSPC/,
    );
    assert.equal(calls, 2);
    Deno.FsFile.prototype.write = write;
    assert.deepEqual(await Deno.readFile(path), old);
    assert.deepEqual(await tempFiles(dir), []);

    // 3. A real failure: renaming a file over a non-empty directory.
    const asDir = `${dir}/taken`;
    await Deno.mkdir(asDir);
    await Deno.writeTextFile(`${asDir}/keep.txt`, "keep");
    await assert.rejects(
      () => writeFileAtomic(asDir, new Uint8Array(16)),
      /could not save .*taken/,
    );
    assert.equal(await Deno.readTextFile(`${asDir}/keep.txt`), "keep");
    assert.deepEqual(await tempFiles(dir), []);

    // 4. The directory does not exist.
    await assert.rejects(
      () => writeFileAtomic(`${dir}/no/such/dir/x.ckpt`, new Uint8Array(1)),
      /could not save .*no\/such\/dir\/x\.ckpt/,
    );
    assert.deepEqual(await loadCheckpoint(path), smallState());
  } finally {
    Deno.rename = rename;
    Deno.FsFile.prototype.write = write;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint on a missing path says there is no checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/missing.ckpt`;
    await assert.rejects(() => loadCheckpoint(path), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.equal(e.message, `no checkpoint at ${path}`);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint names the file when it is corrupt", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.ckpt`;
    const bytes = encodeCheckpoint(smallState());
    bytes[30] ^= 1;
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => loadCheckpoint(path), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.ok(e.message.startsWith(`${path}: `), e.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
