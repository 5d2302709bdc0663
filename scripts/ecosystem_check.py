"""hsx's exports read by the real tools (scripts/ecosystem-check.sh runs this in the venv that
scripts/ecosystem-install.sh makes). Every expected value is read from the ledger file itself.

  ecosystem_check.py hf --ledger L --export DIR
      datasets.load_dataset loads every config offline with the ledger's row counts and the config's
      schema; DatasetCard.load / ModelCard.load parse the cards and eval_results hold compare's numbers;
      peft.PeftConfig.from_pretrained reads each adapter; every exported file has the recorded sha256.
  ecosystem_check.py mlflow --ledger L --tracking-uri URI --snapshot FILE [--unchanged-since FILE]
      MlflowClient.search_runs finds the parent and one child per stage instance with the entry's
      params, metrics, tags and dataset digests, and the parent's artifacts; the state is written to
      FILE, and with --unchanged-since compared with an earlier state (a second export added nothing).
"""
import argparse
import hashlib
import json
import math
import os
import re
import sys
import tempfile

FAILURES = []


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        print(f"FAIL {what}", file=sys.stderr)
    return ok


def latest(ledger):
    """The latest entry of each stage instance, by name, in ledger order."""
    by = {}
    for e in ledger["entries"]:
        by.pop(e["stage"], None)
        by[e["stage"]] = e
    return by


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recorded(entry, path):
    found = [o for o in entry["outputs"] if o["path"] == path]
    return found[0]["sha256"] if found else None


# ---- hf ---------------------------------------------------------------------------------------
CONFIGS = {
    "human": {"train": ("prepare", "prepare/human_train.jsonl", "train"),
              "validation": ("prepare", "prepare/human_val.jsonl", "val"),
              "test": ("prepare", "prepare/human_test.jsonl", "test")},
    "ai_contaminated": {"train": ("contaminate", "contaminate/ai_contaminated.jsonl", "rows")},
    "synthetic": {"train": ("synthesize", "synthesize/synthetic.jsonl", "passed")},
}
FEATURES = {
    "human": ["id", "context", "question", "answer", "choices", "label"],
    "ai_contaminated": ["id", "context", "question", "answer", "kind", "original_answer_sha256", "attempts"],
    "synthetic": ["id", "context", "question", "answer", "strategy", "seed_id"],
}
# The Hub metric ids the model cards use for the compared metrics of compare's table.
HUB_METRIC = {"em": "exact_match", "f1": "f1", "rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL",
              "bertscore_f1": "bertscore", "mc_accuracy": "accuracy"}


def check_hf(ledger_path, export):
    import datasets
    from huggingface_hub import DatasetCard, ModelCard
    from peft import PeftConfig

    ledger = json.load(open(ledger_path))
    by = latest(ledger)
    head = ledger["entries"][-1]["hash"]
    ds_dir = os.path.join(export, "dataset")
    for config, splits in CONFIGS.items():
        d = datasets.load_dataset(ds_dir, config)
        check(sorted(d.keys()) == sorted(splits), f"{config}: splits {sorted(d.keys())}")
        for split, (stage, path, count_key) in splits.items():
            e = by[stage]
            want = e["metrics"][count_key]
            got = d[split].num_rows if split in d else None
            check(got == want, f"{config}/{split}: {got} rows, the ledger records {want}")
            check(d[split].column_names == FEATURES[config], f"{config}/{split}: columns {d[split].column_names}")
            f = os.path.join(ds_dir, config, f"{split}.jsonl")
            check(sha256(f) == recorded(e, path), f"{f}: sha256 differs from entry #{e['seq']}'s {path}")
        print(f"hf: load_dataset {config}: " + ", ".join(f"{s} {d[s].num_rows}" for s in d))
    card = DatasetCard.load(os.path.join(ds_dir, "README.md"))
    meta = card.data.to_dict()
    check(meta.get("license") == "cc-by-4.0", f"dataset card licence {meta.get('license')}")
    check([c["config_name"] for c in meta.get("configs", [])] == list(CONFIGS), "dataset card configs")
    for key in ("source_datasets", "task_categories", "language", "annotations_creators", "size_categories"):
        check(bool(meta.get(key)), f"dataset card has no {key}")
    check("machine-generated" in meta.get("annotations_creators", []), "annotations_creators lacks machine-generated")
    check(head in card.text, "the dataset card does not name the ledger head")
    check("Huang" in card.text and "CC BY 4.0" in card.text, "the dataset card lacks CosmosQA's attribution")
    print(f"hf: DatasetCard.load: {len(meta['configs'])} configs, licence {meta['license']}, head named")

    compare = by["compare"]["metrics"]
    scratch = by["base-model"]["config"]["model"]["source"] != "hf-dir"
    master = int(ledger["entries"][0]["seeds"]["master"])
    models_dir = os.path.join(export, "models")
    want_dirs = set()
    for name, e in by.items():
        base = name.split("@")[0]
        d = base if "@" not in name else f"{base}-seed{name.split('@')[1]}"
        if base.startswith("train-") or base == "generator" or (base == "base-model" and scratch):
            want_dirs.add(d)
        else:
            continue
        path = os.path.join(models_dir, d)
        prefix = f"{name}/adapter/" if base.startswith("train-") else (
            "generator/adapter/" if base == "generator" else "base-model/model/")
        for o in e["outputs"]:
            if o["path"].startswith(prefix):
                f = os.path.join(path, o["path"][len(prefix):])
                check(os.path.isfile(f) and sha256(f) == o["sha256"], f"{f}: not the recorded file")
        mc = ModelCard.load(os.path.join(path, "README.md"))
        check(head in mc.text, f"{d}: the model card does not name the ledger head")
        if scratch:
            check("not testable" in mc.text, f"{d}: the card does not say the scores are not testable")
            check(mc.data.base_model is None, f"{d}: base_model {mc.data.base_model} for a scratch base")
        if base == "base-model":
            continue
        cfg = PeftConfig.from_pretrained(path)
        lora = e["params"]["lora"]
        check(cfg.peft_type.value == "LORA" and cfg.r == lora["r"], f"{d}: PeftConfig {cfg.peft_type} r={cfg.r}")
        check(sorted(cfg.target_modules) == sorted(lora["targets"]), f"{d}: target modules {cfg.target_modules}")
        check(mc.data.library_name == "peft", f"{d}: library_name {mc.data.library_name}")
        check(bool(mc.data.pipeline_tag) and bool(mc.data.tags), f"{d}: no pipeline_tag or tags")
        if not base.startswith("train-"):
            print(f"hf: {d}: ModelCard and PeftConfig read (r={cfg.r})")
            continue
        label = base.split("-")[1]
        seed = int(name.split("@")[1]) if "@" in name else master
        table = compare["table"]
        if compare.get("replicates"):
            table = [r for r in compare["replicates"]["per_replicate"] if r["seed"] == seed][0]["table"]
        want = {HUB_METRIC[k]: v["mean"] for k, v in table[label].items() if k in HUB_METRIC and v["mean"] is not None}
        got = {r.metric_type: r.metric_value for r in (mc.data.eval_results or [])}
        check(got == want, f"{d}: eval_results {got}, compare's table {want}")
        for k, v in table[label].items():
            if k in HUB_METRIC and v["ci"][0] is not None:
                check(f"{v['ci'][0]:.4f}, {v['ci'][1]:.4f}" in mc.text, f"{d}: the card lacks the interval of {k}")
        print(f"hf: {d}: ModelCard eval_results = compare's {len(want)} means; PeftConfig r={cfg.r}")
    got_dirs = set(os.listdir(models_dir))
    check(got_dirs == want_dirs, f"model directories {sorted(got_dirs)}, expected {sorted(want_dirs)}")


# ---- mlflow -----------------------------------------------------------------------------------
def segment(s):
    t = "".join(c if (c.isascii() and c.isalnum()) or c in "_- " else "_" for c in s).strip()
    return t or "_"


def flat_metrics(v, path=()):
    """(key, [(step, value)]) of every numeric leaf; a list of [step, value] pairs is one series."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return []
    if isinstance(v, (int, float)):
        return [(".".join(map(segment, path)), [(0, float(v))])] if math.isfinite(v) else []
    if isinstance(v, dict):
        return [x for k, x_ in v.items() for x in flat_metrics(x_, path + (k,))]
    if v and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and not isinstance(p[0], bool)
                 and p[0] >= 0 and isinstance(p[1], (int, float)) and not isinstance(p[1], bool) for p in v):
        return [(".".join(map(segment, path)), [(p[0], float(p[1])) for p in v])]
    return [x for i, x_ in enumerate(v) for x in flat_metrics(x_, path + (str(i),))]


def flat_params(v, path=()):
    """(key, value) of every leaf of the params: nested objects give dotted keys."""
    if isinstance(v, dict) and v:
        return [x for k, x_ in v.items() for x in flat_params(x_, path + (k,))]
    return [(".".join(map(segment, path)), v)]


def same_param(got, value):
    """An MLflow param (text) holds the ledger's value: strings as they are, anything else as JSON."""
    if got is None:
        return False
    if isinstance(value, str):
        return got == value or (len(value) > 6000 and got.startswith(value[:1000]))
    try:
        return json.loads(got) == value
    except ValueError:
        return False


def state(client, exp_id):
    """Everything an export could add: every run (deleted ones too), its data, histories, artifacts."""
    from mlflow.entities import ViewType
    out = {}
    for r in client.search_runs([exp_id], run_view_type=ViewType.ALL, max_results=5000):
        rid = r.info.run_id
        hist = {k: len(client.get_metric_history(rid, k)) for k in r.data.metrics}
        arts = []
        stack = [None]
        while stack:
            for a in client.list_artifacts(rid, stack.pop()):
                (stack.append(a.path) if a.is_dir else arts.append([a.path, a.file_size]))
        out[rid] = {"status": r.info.status, "lifecycle": r.info.lifecycle_stage, "end_time": r.info.end_time,
                    "tags": r.data.tags, "params": r.data.params, "metrics": r.data.metrics, "history": hist,
                    "inputs": sorted(d.dataset.digest for d in r.inputs.dataset_inputs), "artifacts": sorted(arts)}
    return out


def check_mlflow(ledger_path, uri, snapshot, unchanged_since):
    from mlflow.tracking import MlflowClient

    ledger = json.load(open(ledger_path))
    by = latest(ledger)
    header = ledger["entries"][0]["header_sha256"]
    head = ledger["entries"][-1]["hash"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(ledger["header"]["experiment"])
    if not check(exp is not None, "no MLflow experiment named after the ledger"):
        return
    runs = client.search_runs([exp.experiment_id], f"tags.`hsx.ledger.header_sha256` = '{header}'",
                              max_results=5000)
    parents = [r for r in runs if r.data.tags.get("hsx.role") == "ledger"]
    children = [r for r in runs if r.data.tags.get("hsx.role") == "entry"]
    if not check(len(parents) == 1, f"{len(parents)} parent runs"):
        return
    parent = parents[0]
    check(parent.data.tags.get("hsx.ledger.head") == head, "the parent's head tag is not the ledger's head")
    check(parent.info.status == "FINISHED", f"parent status {parent.info.status}")
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "ledger")}
    name = os.path.basename(ledger_path)
    check(f"ledger/{name}" in arts, f"parent artifacts {sorted(arts)} lack the ledger")
    check(any(a.endswith(".head.json") for a in arts), f"parent artifacts {sorted(arts)} lack the signed head")
    report = by.get("report")
    if report:
        with tempfile.TemporaryDirectory() as t:
            got = client.download_artifacts(parent.info.run_id, "report/REPORT.md", t)
            rec = [o for o in report["outputs"] if o["path"].endswith("REPORT.md")][0]
            check(sha256(got) == rec["sha256"], "the parent's REPORT.md is not the recorded one")
    check(len(children) == len(by), f"{len(children)} child runs for {len(by)} stage instances")
    by_hash = {r.data.tags.get("hsx.entry.hash"): r for r in children}
    seq_of = {e["hash"]: e["seq"] for e in ledger["entries"]}
    compared = 0
    for stage, e in by.items():
        r = by_hash.get(e["hash"])
        if not check(r is not None, f"no child run for {stage} (entry #{e['seq']})"):
            continue
        t = r.data.tags
        check(r.info.run_name == stage and t.get("mlflow.parentRunId") == parent.info.run_id, f"{stage}: name/parent")
        check(r.info.status == "FINISHED", f"{stage}: status {r.info.status}")
        if e["git"]["state"] == "repository":
            check(t.get("mlflow.source.git.commit") == e["git"]["commit"], f"{stage}: git commit tag")
        check(t.get("hsx.signer.key_id") == ledger["header"]["signer"]["key_id"], f"{stage}: signer tag")
        # The head when this child was exported: an entry of the ledger, at or after the child's own.
        at = seq_of.get(t.get("hsx.ledger.head"))
        check(at is not None and at >= e["seq"], f"{stage}: head tag {t.get('hsx.ledger.head')} is no later entry")
        for key, series in flat_metrics(e["metrics"]):
            if len(series) == 1:
                got = r.data.metrics.get(key)
                check(got is not None and math.isclose(got, series[0][1], rel_tol=1e-12, abs_tol=0),
                      f"{stage}: metric {key} = {got}, the ledger records {series[0][1]}")
            else:
                hist = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, key))
                check(hist == sorted(series), f"{stage}: the history of {key} is not the ledger's curve")
            compared += 1
        for key, value in flat_params(e["params"]):
            got = r.data.params.get(key)
            check(same_param(got, value), f"{stage}: param {key} = {got!r}, the ledger records {value!r}")
        data = sorted(i["sha256"][:36] for i in e["inputs"] if i["path"].endswith((".jsonl", ".csv")))
        got = sorted(d.dataset.digest for d in r.inputs.dataset_inputs)
        check(got == data, f"{stage}: dataset digests {got}, the ledger's {data}")
    print(f"mlflow: 1 parent, {len(children)} child runs (one per stage instance), {compared} metrics as recorded")
    now = state(client, exp.experiment_id)
    json.dump(now, open(snapshot, "w"), sort_keys=True)
    if unchanged_since:
        failed = len(FAILURES)
        before = json.load(open(unchanged_since))
        now = json.loads(json.dumps(now))
        check(sorted(now) == sorted(before), f"runs before {len(before)}, after {len(now)}")
        for rid in before:
            if rid in now and now[rid] != before[rid]:
                diff = [k for k in before[rid] if before[rid][k] != now[rid].get(k)]
                check(False, f"run {rid} changed in {diff}")
        if len(FAILURES) == failed:
            print(f"mlflow: the second export added nothing ({len(now)} runs, unchanged)")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("hf")
    h.add_argument("--ledger", required=True)
    h.add_argument("--export", required=True)
    m = sub.add_parser("mlflow")
    m.add_argument("--ledger", required=True)
    m.add_argument("--tracking-uri", required=True)
    m.add_argument("--snapshot", required=True)
    m.add_argument("--unchanged-since")
    a = p.parse_args()
    if a.what == "hf":
        check_hf(a.ledger, a.export)
    else:
        check_mlflow(a.ledger, a.tracking_uri, a.snapshot, a.unchanged_since)
    if FAILURES:
        print(f"ecosystem-check {a.what}: {len(FAILURES)} check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
