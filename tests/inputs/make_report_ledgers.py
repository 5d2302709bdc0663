#!/usr/bin/env python3
"""Makes the fixture ledgers for the report snapshot tests (tests/report.rs) from a smoke-profile ledger.

  hsx run --config configs/smoke.toml --ledger /tmp/smoke.json     # any smoke run
  python3 tests/inputs/make_report_ledgers.py /tmp/smoke.json

Writes three ledgers holding the latest entry of each stage: `ledger_shortfall.json` (the smoke run as it
is: no synthetic example passed, and no model beats a trivial baseline, so every hypothesis is *not
testable*), `ledger_complete.json` (synthesis met its target, the power check passed, H1 and H2 supported)
and `ledger_failed_hypothesis.json` (C worse than B: H2 not supported). The edited variants' figures are
set by hand to exercise the template's branches, and the variants are no longer validly signed; the
snapshot tests only render them.
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ["prepare", "preregister", "base-model", "contaminate", "generator", "synthesize", "train-A", "train-B", "train-C",
          "evaluate-0", "evaluate-A", "evaluate-B", "evaluate-C", "compare"]


def latest(ledger):
    by = {}
    for e in ledger["entries"]:
        by[e["stage"]] = e
    entries = [copy.deepcopy(by[s]) for s in STAGES]
    for i, e in enumerate(entries):
        e["seq"] = i
        for k in ("env", "config"):
            pass
    header = copy.deepcopy(ledger["header"])
    if "workspace" in header:
        # A run made with `--out` elsewhere records the path back to where it was started; no machine's
        # paths in the repository.
        header["workspace"] = "."
    if header.get("run_dir", "").startswith("../"):
        # A ledger written outside the workspace records its run directory relative to itself, through
        # the machine's directories; keep only the run directory's own name.
        header["run_dir"] = "../runs/" + header["run_dir"].rstrip("/").split("/")[-1]
    return {"header": header, "entries": entries}


def stage(l, name):
    return next(e for e in l["entries"] if e["stage"] == name)


def interval(lo, hi, level):
    return {"lo": lo, "hi": hi, "level": level}


def set_results(l, means, power, contrasts, verdicts, ratio):
    """Hand-set figures: model means on every metric (model 0, the base model zero-shot, included;
    baselines stay as measured), the descriptive differences with model 0 that follow from them, the
    power check (estimate, lo, hi, p, k), the primary metric's contrasts of H1-H4 ((estimate, lo, hi, p,
    k) each), their verdicts, and H3's ratio (estimate, lo, hi, undefined) or None."""
    cmp_ = stage(l, "compare")["metrics"]
    level = cmp_["interval_level"]
    for m, v in means.items():
        for k in cmp_["table"][m]:
            base = v if k != "bertscore_f1" else 0.8 + v / 10
            cmp_["table"][m][k] = {"mean": base, "ci": [round(base - 0.04, 6), round(base + 0.04, 6)]}
    for d in cmp_["differences"]:
        for k, e in d["metrics"].items():
            est = round(cmp_["table"][d["minuend"]][k]["mean"] - cmp_["table"][d["subtrahend"]][k]["mean"], 6)
            e["estimate"] = est
            e["ci"] = interval(round(est - 0.03, 6), round(est + 0.03, 6), level)
    pw = cmp_["power"]
    pw["contrast"]["estimate"] = power[0]
    pw["contrast"]["ci"] = interval(power[1], power[2], level)
    def test(p, k):
        # A Monte Carlo test over k differing items, each in its own cluster.
        return {"p": p, "k": k, "clusters_differing": k, "exact": False, "resamples": cmp_["permutation_resamples"]}

    pw["contrast"]["test"] = test(power[3], power[4])
    pw["verdict"] = "supported"
    pw["passed"] = True
    for h in cmp_["hypotheses"]:
        i = ["H1", "H2", "H3", "H4"].index(h["id"])
        est, lo, hi, p, k = contrasts[i]
        if not h["primary"]:
            h["verdict"] = "inconclusive"
            continue
        h["contrast"]["estimate"] = est
        h["contrast"]["ci"] = interval(lo, hi, level)
        h["contrast"]["test"] = test(p, k)
        h["verdict"] = verdicts[i]
        if h["id"] == "H3" and ratio is not None:
            h["ratio"] = {"estimate": ratio[0], "ci": interval(ratio[1], ratio[2], level), "undefined_resamples": ratio[3],
                          "resamples": cmp_["bootstrap_resamples"]}
    cmp_["samples"]["all_correct"] = [{"id": "x1", "reference": "To buy milk.", "0": "Milk.", "A": "To buy milk.", "B": "To buy milk.",
                                       "C": "To buy milk.", "f1": {"0": 0.666667, "A": 1.0, "B": 1.0, "C": 1.0}}]


def complete_synthesis(l):
    syn = stage(l, "synthesize")["metrics"]
    syn["passed"] = syn["target"]
    syn["shortfall"] = 0
    syn["final_strategy_distribution"] = {"context_augmentation": syn["target"]}
    # The accepted examples as context augmentations, within the attempt cap; a full-text pass rate.
    ca = syn["per_strategy"]["context_augmentation"]
    ca["attempts"] += syn["target"]
    ca["passed"] = syn["target"]
    ca["pass_rate"] = round(ca["passed"] / ca["attempts"], 6)
    ca["malformed_share"] = round(ca["malformed"] / ca["attempts"], 6)
    syn["attempts"] += syn["target"]
    syn["attempt_cap"] = syn["attempts"] + 1
    syn["attempt_cap_hit"] = False
    syn["full_text_sensitivity"] = {"accepted": syn["target"], "would_pass": syn["target"] // 4,
                                    "pass_rate": round((syn["target"] // 4) / syn["target"], 6),
                                    "would_fail": {"ngram_overlap": syn["target"] - syn["target"] // 4}}
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
    set_results(good, {"0": 0.25, "A": 0.45, "B": 0.30, "C": 0.40}, (0.30, 0.25, 0.35, 0.0001, 88),
                [(0.15, 0.10, 0.20, 0.0001, 61), (0.10, 0.05, 0.15, 0.0003, 57), (0.025, -0.01, 0.06, 0.09, 63), (-0.05, -0.09, -0.01, 0.004, 40)],
                ["supported", "supported", "inconclusive", "not-supported"], (0.667, 0.4, 0.9, 3))
    with open(os.path.join(HERE, "ledger_complete.json"), "w") as f:
        json.dump(good, f, indent=1, ensure_ascii=False)
    bad = copy.deepcopy(base)
    complete_synthesis(bad)
    set_results(bad, {"0": 0.25, "A": 0.45, "B": 0.30, "C": 0.22}, (0.30, 0.25, 0.35, 0.0001, 88),
                [(0.15, 0.10, 0.20, 0.0001, 61), (-0.08, -0.12, -0.04, 0.9995, 50), (-0.155, -0.2, -0.11, 0.9999, 66), (-0.23, -0.28, -0.18, 0.0001, 70)],
                ["supported", "not-supported", "not-supported", "not-supported"], (-0.533, -0.9, -0.2, 0))
    with open(os.path.join(HERE, "ledger_failed_hypothesis.json"), "w") as f:
        json.dump(bad, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
