#!/usr/bin/env python3
"""LoRA training throughput: hsx vs transformers + peft, in one run, on this CPU.

Same random model (flan-t5-base-sized and tiny-profile-sized; see benches/generate.py), same examples
(variable lengths drawn like CosmosQA prompts: 48-256 input tokens, 3-24 target tokens), same LoRA
(r 16, alpha 32, dropout 0.1 on q and v), same optimiser (AdamW lr 3e-4, wd 0.01, clip 1.0, linear
schedule), batch 8, one epoch = the same number of optimiser steps, same libtorch and threads.
The peer batches in random order and pads each batch to its longest row (a Trainer's default,
group_by_length=False); hsx buckets by length. Reported: real (non-padding) tokens per second.

  make build && ~/.cache/hsx/venv/bin/python benches/train_lora.py [--sizes tiny,base] [--examples 256]
  On a GPU (scripts/gpu-check.sh): --device cuda --bf16 (both sides under bf16 autocast).
"""
import argparse
import json
import os
import random
import subprocess
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import T5ForConditionalGeneration, get_linear_schedule_with_warmup

from generate import CACHE, ROOT, model_dir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,base")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    ap.add_argument("--hsx", default=os.path.join(ROOT, "target/release/hsx"))
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.set_num_threads(a.threads)
    rng = random.Random(3)
    for size in a.sizes.split(","):
        d = model_dir(size)
        n = a.examples if size == "tiny" else max(a.batch * 4, a.examples // 8)
        inputs = [[rng.randrange(2, 100) for _ in range(rng.randint(48, 256) - 1)] + [1] for _ in range(n)]
        labels = [[rng.randrange(2, 100) for _ in range(rng.randint(3, 24) - 1)] + [1] for _ in range(n)]
        path = os.path.join(CACHE, "bench", f"train-{size}.json")
        with open(path, "w") as f:
            json.dump({"inputs": inputs, "labels": labels}, f)
        real = sum(len(x) + len(y) for x, y in zip(inputs, labels))

        torch.manual_seed(0)
        model = get_peft_model(T5ForConditionalGeneration.from_pretrained(d),
                               LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM")).to(dev)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.01)
        steps = (n + a.batch - 1) // a.batch
        sched = get_linear_schedule_with_warmup(opt, 100, steps)
        order = list(range(n))
        random.Random(0).shuffle(order)
        sync()
        t = time.perf_counter()
        for s in range(steps):
            idx = order[s * a.batch:(s + 1) * a.batch]
            li = max(len(inputs[i]) for i in idx)
            lt = max(len(labels[i]) for i in idx)
            ids = torch.tensor([inputs[i] + [0] * (li - len(inputs[i])) for i in idx])
            mask = (torch.arange(li)[None, :] < torch.tensor([len(inputs[i]) for i in idx])[:, None]).long()
            lab = torch.tensor([labels[i] + [-100] * (lt - len(labels[i])) for i in idx])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
                loss = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=lab.to(dev)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        sync()
        py_secs = time.perf_counter() - t
        py = real / py_secs
        r = subprocess.run([a.hsx, "bench", "train", "--model", d, "--data", path, "--batch", str(a.batch),
                            "--threads", str(a.threads), "--device", a.device] + (["--bf16"] if a.bf16 else []),
                           capture_output=True, text=True, check=True)
        h = json.loads(r.stdout)
        print(f"{size}: {n} examples, {steps} steps; transformers+peft {py:.0f} real tok/s ({py_secs:.1f} s), "
              f"hsx {h['real_tokens_per_s']:.0f} real tok/s ({h['seconds']:.1f} s, padding share {h['padding_share']:.3f}); "
              f"ratio hsx/peft {h['real_tokens_per_s'] / py:.2f}; trainable {h['trainable_parameters']} of "
              f"{h['total_parameters']} ({100 * h['trainable_parameters'] / h['total_parameters']:.2f}%)", flush=True)


if __name__ == "__main__":
    main()
