/**
 * src/optim/lifecycle.ts: owned buffers are destroyed once; construction
 * errors stick, step errors are reported once; disposal and device loss
 * become DisposedError and GpuUnavailableError, also for a readback they
 * overtake.
 */

import assert from "node:assert/strict";
import {
  DisposedError,
  GpuCommandError,
  GpuUnavailableError,
} from "../src/errors.ts";
import { requestDevice } from "../src/gpu/device.ts";
import { Lifecycle } from "../src/optim/lifecycle.ts";
import { testDevice } from "./gpu_util.ts";

const device = await testDevice();

Deno.test("lifecycle: a validation error in a step's scopes is thrown once; one in the construction's at every call", async () => {
  const life = new Lifecycle(device, "Test");
  life.finishConstruction();
  await life.settle();
  life.throwPending(); // nothing
  let dropped = 0;
  life.beginStep();
  device.createBuffer({
    size: 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE,
  }); // invalid usage
  life.endStep(3, () => dropped++);
  await life.settle();
  assert.equal(dropped, 1);
  assert.throws(
    () => life.throwPending(),
    (e: unknown) =>
      e instanceof GpuCommandError &&
      /Test: step call 3 did not run/.test(e.message),
  );
  life.throwPending(); // reported once

  const broken = new Lifecycle(device, "Broken");
  device.createBuffer({
    size: 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE,
  });
  broken.finishConstruction();
  await broken.settle();
  for (let i = 0; i < 2; i++) {
    assert.throws(
      () => broken.throwPending(),
      (e: unknown) =>
        e instanceof GpuCommandError &&
        /Broken: the GPU refused the optimizer's buffers/.test(e.message),
    );
  }
});

Deno.test("lifecycle: dispose destroys each owned buffer once; later use and an overtaken read are DisposedErrors", async () => {
  const life = new Lifecycle(device, "Test");
  life.finishConstruction();
  let destroyed = 0;
  const b = life.own(
    device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE }),
  );
  const destroy = b.destroy.bind(b);
  b.destroy = () => {
    destroyed++;
    destroy();
  };
  const pending = life.read(async () => {
    await new Promise((r) => setTimeout(r, 10));
    return "bytes";
  });
  life.dispose();
  life.dispose();
  assert.equal(destroyed, 1);
  await assert.rejects(pending, DisposedError);
  assert.throws(
    () => life.assertUsable(),
    (e: unknown) =>
      e instanceof DisposedError &&
      /Test: this optimizer has been disposed/.test(e.message),
  );
});

Deno.test({
  name:
    "lifecycle: a lost device is a GpuUnavailableError, for calls and for a new optimizer",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dev = await requestDevice();
    const life = new Lifecycle(dev, "Test");
    life.finishConstruction();
    dev.destroy();
    await dev.lost;
    assert.throws(
      () => life.assertUsable(),
      (e: unknown) =>
        e instanceof GpuUnavailableError &&
        /the GPU device was lost/.test(e.message),
    );
    assert.throws(() => new Lifecycle(dev, "Late"), GpuUnavailableError);
  },
});
