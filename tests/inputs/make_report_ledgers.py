#!/usr/bin/env python3
"""Makes the fixture ledgers for the report snapshot tests (tests/report.rs) from a smoke-profile ledger.

  hsx run --config configs/smoke.toml --ledger /tmp/smoke.json     # any smoke run
  python3 tests/inputs/make_report_ledgers.py /tmp/smoke.json

Writes three ledgers holding the latest entry of each stage: `ledger_shortfall.json` (the smoke run as it
is: no synthetic example passed), `ledger_complete.json` (synthesis met its target, H1 and H2 supported)
and `ledger_failed_hypothesis.json` (C worse than B: H2 not supported). The edited variants are no longer
validly signed; the snapshot tests only render them.
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ["prepare", "base-model", "contaminate", "generator", "synthesize", "train-A", "train-B", "train-C",
          "evaluate-A", "evaluate-B", "evaluate-C", "compare"]


def latest(ledger):
    by = {}
    for e in ledger["entries"]:
        by[e["stage"]] = e
    entries = [copy.deepcopy(by[s]) for s in STAGES]
    for i, e in enumerate(entries):
        e["seq"] = i
        for k in ("env", "config"):
            pass
    return {"header": ledger["header"], "entries": entries}


def stage(l, name):
    return next(e for e in l["entries"] if e["stage"] == name)


def set_results(l, means, ab, cb, rec, verdicts):
    cmp_ = stage(l, "compare")["metrics"]
    for m, f1 in means.items():
        for k in cmp_["table"][m]:
            base = f1 if k != "bertscore_f1" else 0.8 + f1 / 10
            cmp_["table"][m][k] = {"mean": base, "ci95": [round(base - 0.04, 6), round(base + 0.04, 6)]}
    for k in cmp_["gaps"]:
        cmp_["gaps"][k]["a_minus_b"] = {"estimate": ab[0], "ci95": [ab[1], ab[2]], "p_value": ab[3]}
        cmp_["gaps"][k]["c_minus_b"] = {"estimate": cb[0], "ci95": [cb[1], cb[2]], "p_value": cb[3]}
        cmp_["gaps"][k]["recovery"] = {"estimate": rec[0], "ci95": [rec[1], rec[2]], "undefined_resamples": 0}
    for h, v in zip(cmp_["hypotheses"], verdicts):
        h["verdict"] = v[0]
        h["evidence"] = v[1]
    cmp_["samples"]["all_correct"] = [{"id": "x1", "reference": "To buy milk.", "A": "To buy milk.", "B": "To buy milk.",
                                       "C": "To buy milk.", "f1": {"A": 1.0, "B": 1.0, "C": 1.0}}]


def complete_synthesis(l):
    syn = stage(l, "synthesize")["metrics"]
    syn["passed"] = syn["target"]
    syn["shortfall"] = 0
    syn["final_strategy_distribution"] = {"context_augmentation": syn["target"]}
    tc = stage(l, "train-C")
    tc["metrics"] = copy.deepcopy(stage(l, "train-A")["metrics"])
    tc["metrics"]["examples"] = syn["target"]


def main():
    src = json.load(open(sys.argv[1]))
    base = latest(src)
    with open(os.path.join(HERE, "ledger_shortfall.json"), "w") as f:
        json.dump(base, f, indent=1, ensure_ascii=False)
    good = copy.deepcopy(base)
    complete_synthesis(good)
    set_results(good, {"A": 0.45, "B": 0.30, "C": 0.40}, (0.15, 0.1, 0.2, 0.0001), (0.10, 0.05, 0.15, 0.0003), (0.667, 0.4, 0.9),
                [("supported", "A−B = 0.1500, 95% CI [0.1000, 0.2000], p = 0.0001"),
                 ("supported", "C−B = 0.1000, 95% CI [0.0500, 0.1500], p = 0.0003"),
                 ("inconclusive", "recovery = 0.667, 95% CI [0.4, 0.9]")])
    with open(os.path.join(HERE, "ledger_complete.json"), "w") as f:
        json.dump(good, f, indent=1, ensure_ascii=False)
    bad = copy.deepcopy(base)
    complete_synthesis(bad)
    set_results(bad, {"A": 0.45, "B": 0.30, "C": 0.22}, (0.15, 0.1, 0.2, 0.0001), (-0.08, -0.12, -0.04, 0.0005), (-0.533, -0.9, -0.2),
                [("supported", "A−B = 0.1500, 95% CI [0.1000, 0.2000], p = 0.0001"),
                 ("not supported", "C−B = -0.0800, 95% CI [-0.1200, -0.0400], p = 0.0005"),
                 ("not supported", "recovery = -0.533, 95% CI [-0.9, -0.2]")])
    with open(os.path.join(HERE, "ledger_failed_hypothesis.json"), "w") as f:
        json.dump(bad, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
