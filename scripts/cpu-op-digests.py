#!/usr/bin/env python3
"""Which libtorch CPU operations give the same bits on two machines under hsx's portable pins.

Sets the pins hsx sets (src/runtime/pins.rs: PORTABLE_PINS) before torch loads, fixes 2 intra-op
threads and 1 inter-op thread, turns on deterministic algorithms, then runs each operation a T5 + LoRA
training step uses on seeded inputs and prints one line per operation: its name and the SHA-256 of the
result's bytes. Run it on two machines with the same torch wheel and diff the outputs: a line that
differs names an operation whose result depends on the processor despite the pins.

    ~/.cache/hsx/venv/bin/python scripts/cpu-op-digests.py > here.txt
    (on the other machine)  python3 scripts/cpu-op-digests.py > there.txt;  diff here.txt there.txt

--native leaves the environment as it is (no pins), to see what the pins change.
"""
import hashlib
import os
import sys

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
    "TOKENIZERS_PARALLELISM": "false",
}
if "--native" not in sys.argv:
    os.environ.update(PINS)

import torch  # noqa: E402  (after the pins, as hsx does)
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(2)
torch.set_num_interop_threads(1)
torch.use_deterministic_algorithms(True)


def digest(t):
    if isinstance(t, (list, tuple)):
        h = hashlib.sha256()
        for x in t:
            h.update(bytes.fromhex(digest(x)))
        return h.hexdigest()
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def seeded(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


rows = []


def op(name, f):
    try:
        rows.append((name, digest(f())))
    except Exception as e:  # an operation missing on one side shows up as a differing line
        rows.append((name, f"error {type(e).__name__}: {e}"))


x = seeded(16, 64, 128, seed=1)
w = seeded(256, 128, seed=2, scale=0.05)
b = seeded(256, seed=3, scale=0.05)
op("randn (CPU generator)", lambda: seeded(4096, seed=7))
op("bernoulli_ p=0.9", lambda: (torch.manual_seed(5), torch.empty(65536).bernoulli_(0.9))[1])
op("dropout p=0.1 (training)", lambda: (torch.manual_seed(5), F.dropout(x, 0.1, training=True))[1])
op("matmul 1024x128 @ 128x256", lambda: x.reshape(-1, 128) @ w.t())
op("linear with bias", lambda: F.linear(x, w, b))
op("linear, no bias, small (LoRA rank 16)", lambda: F.linear(x, seeded(16, 128, seed=4, scale=0.05)))
op("bmm (attention scores)", lambda: torch.bmm(x, x.transpose(1, 2)))
op("softmax", lambda: torch.softmax(torch.bmm(x, x.transpose(1, 2)) / 8, dim=-1))
op("log_softmax over a vocabulary", lambda: torch.log_softmax(seeded(256, 8000, seed=8), dim=-1))
op("cross_entropy", lambda: F.cross_entropy(seeded(256, 8000, seed=8), torch.arange(256) * 31 % 8000))
op("T5 RMS norm (pow, mean, rsqrt)", lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
op("gelu tanh (gated-GELU)", lambda: F.gelu(x, approximate="tanh"))
op("relu", lambda: F.relu(x))
op("exp", lambda: torch.exp(x))
op("log", lambda: torch.log(x.abs() + 1e-3))
op("tanh", lambda: torch.tanh(x))
op("sum of 1M", lambda: seeded(1 << 20, seed=9).sum())
op("embedding gather", lambda: F.embedding(torch.arange(512) % 300, seeded(300, 128, seed=10)))


def mlp_grads():
    torch.manual_seed(11)
    w1 = seeded(256, 128, seed=12, scale=0.05).requires_grad_()
    w2 = seeded(128, 256, seed=13, scale=0.05).requires_grad_()
    emb = seeded(300, 128, seed=14).requires_grad_()
    ids = (torch.arange(1024) * 7) % 300
    h = F.embedding(ids, emb)
    y = F.linear(F.gelu(F.linear(h, w1), approximate="tanh"), w2)
    loss = F.cross_entropy(y @ emb.t(), ids)
    loss.backward()
    return [loss, w1.grad, w2.grad, emb.grad]


op("backward: embedding, linear, gelu, cross-entropy", mlp_grads)


def adamw():
    p = seeded(4096, seed=15).requires_grad_()
    opt = torch.optim.AdamW([p], lr=3e-4, weight_decay=0.01, foreach=False)
    for i in range(5):
        opt.zero_grad()
        (p * seeded(4096, seed=16 + i)).sum().backward()
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step()
    return p


op("AdamW, 5 steps with clipping", adamw)

print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, capability {torch.backends.cpu.get_cpu_capability()}, "
      f"pins {'none' if '--native' in sys.argv else 'portable'}")
for name, d in rows:
    print(f"{d[:16]}  {name}")
