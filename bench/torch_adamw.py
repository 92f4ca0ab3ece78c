"""PyTorch's fused AdamW (and fused AMSGrad) on the same GPU, timed as
bench/device.ts times this project: CUDA events around N optimizer steps
submitted back to back, gradients rotated between several sets where the
tensors would fit the L2 cache, and realistic data (random nonzero parameters,
gradients spread over 12 octaves). Also measures the device-to-device copy
bandwidth. Run by bench/device.ts:

    python3 bench/torch_adamw.py '{"sizes": [16777216], "shapes": {...}, "steps": 50,
                                   "amsgrad": {"sizes": [16777216], "shapes": {...}}}'

"sizes" and "shapes" are timed with fused AdamW in fp32 and bf16; the
optional "amsgrad" sizes and shapes, after them, with fused AMSGrad in fp32
only (the baseline of this project's AMSGrad, which keeps one more state
tensor than AdamW). Every configuration allocates its own tensors and frees
them before the next one; one that runs out of memory gives a row with
"oom": true and the GiB it held.

Prints one JSON object per line: {"device": ...}, {"copy": ...} and then one
row per run ({"label", "optimizer", "dtype", "params", "ms" or "oom", "peakGiB"}).
"""

import gc
import json
import time
import sys

import torch

# The optimizers, with the hyperparameters of the rows they are compared with
# (src/optim/adam.ts; betas 0.9/0.999 and eps 1e-8 are both sides' defaults).
OPTIMIZERS = {
    # Our AdamW: decoupled weight decay 0.01.
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01, fused=True),
    # Our AMSGrad: Adam with the running maximum of the second moment and
    # L2 weight decay 0 (PyTorch's default too, so no decay term).
    "AMSGrad": lambda ps: torch.optim.Adam(ps, lr=1e-4, amsgrad=True, fused=True),
}


def grads_like(p):
    g = torch.randn_like(p, dtype=torch.float32)
    g = g.sign() * 1e-2 * torch.exp2(-torch.randint(0, 12, p.shape, device=p.device).float()) * (
        1 + torch.rand_like(g)
    )
    return g.to(p.dtype)


def copy_bandwidth(n, reps=20):
    a = torch.randn(n, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        b.copy_(a)
    e.record()
    e.synchronize()
    ms = s.elapsed_time(e) / reps
    del a, b
    torch.cuda.empty_cache()
    return {"bytes": 8 * n, "ms": ms, "tbps": 8 * n / ms / 1e9}


def is_oom(err):
    """The caching allocator's OutOfMemoryError, or a CUDA call's own "out of memory"."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


def free_memory():
    """Returns every block the caching allocator holds to the driver, so that the
    next configuration starts from an empty GPU (a failed one included)."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def run(label, shapes, dtype, steps, sets, warmup_ms, optimizer="AdamW"):
    """Times `optimizer` (fused) over `shapes` (a list of tensor shapes), `sets` copies."""
    free_memory()
    torch.cuda.reset_peak_memory_stats()
    make = OPTIMIZERS[optimizer]
    params = 0
    opts = []
    ps = p = None
    row = {"label": label, "optimizer": optimizer, "dtype": str(dtype).replace("torch.", "")}
    try:
        for _ in range(sets):
            ps = []
            for shape in shapes:
                p = (torch.rand(shape, device="cuda") * 1.98 - 0.99).to(dtype)
                p.grad = grads_like(p)
                ps.append(p)
            opts.append(make(ps))
            params = sum(p.numel() for p in ps)
        # Warm-up: at least 3 steps per set and warmup_ms of steps, as
        # bench/device.ts does (the SM clock needs about 2 s of load to come
        # back up after host-bound work). The first step of each set
        # allocates its optimizer's state, where a size too large for the
        # GPU runs out of memory.
        start = time.perf_counter()
        while True:
            for i in range(3 * sets):
                opts[i % sets].step()
            torch.cuda.synchronize()
            if (time.perf_counter() - start) * 1e3 >= warmup_ms:
                break
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for i in range(steps):
            opts[i % sets].step()
        e.record()
        e.synchronize()
        ms = s.elapsed_time(e) / steps
        row.update({"params": params, "ms": ms, "peakGiB": torch.cuda.max_memory_allocated() / 2**30})
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one
        if not is_oom(err):
            raise
        row.update({"params": params or None, "oom": True,
                    "peakGiB": torch.cuda.max_memory_allocated() / 2**30,
                    "error": str(err).split("\n")[0][:200]})
    # Drop every reference to this configuration's tensors (the optimizers
    # hold the parameters, gradients and state) before freeing the cache.
    del opts, ps, p
    free_memory()
    return row


def sets_for(n):
    """Parameter/gradient sets to rotate between for one tensor of n elements."""
    return 4 if n * 16 <= 2**30 else 1


def main():
    cfg = json.loads(sys.argv[1])
    steps = cfg["steps"]
    warmup_ms = cfg.get("warmupMs", 1800)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    print(json.dumps({"copy": copy_bandwidth(cfg.get("copyElements", 2**28))}), flush=True)
    # Fused AdamW in both dtypes, then fused AMSGrad in fp32 (last, so that
    # the AdamW rows run as they did before AMSGrad was added).
    runs = [("AdamW", torch.float32, cfg), ("AdamW", torch.bfloat16, cfg)]
    if cfg.get("amsgrad"):
        runs.append(("AMSGrad", torch.float32, cfg["amsgrad"]))
    for optimizer, dtype, which in runs:
        for n in which.get("sizes", []):
            row = run(f"2^{n.bit_length() - 1}", [[n]], dtype, steps, sets_for(n), warmup_ms, optimizer)
            print(json.dumps(row), flush=True)
        for name, shapes in which.get("shapes", {}).items():
            print(json.dumps(run(name, shapes, dtype, steps, 1, warmup_ms, optimizer)), flush=True)


if __name__ == "__main__":
    main()
