#!/usr/bin/env python3
"""Verify benchmark: `hsx bench verify` against a Python verifier of the same ledgers, same run.

hsx side: `hsx bench verify` generates version-2 ledgers of 1k, 10k and 100k entries and verifies each
in a fresh process (time, peak resident memory). Peer: what a reviewer without hsx would write, an
independent verifier in Python built on the `rfc8785` (JCS) and `cryptography` (ed25519) packages:
json.load (duplicate keys refused), per entry the chain, the config hash, the entry hash, the DSSE PAE
signature, and every recorded file's size and SHA-256 (each distinct file hashed once, as hsx does).
Each peer run is also a fresh process; peak memory is its ru_maxrss.

Needs: pip install cryptography rfc8785 (or PYTHONPATH to where they are). Usage:
    python benches/verify.py [--hsx target/release/hsx] [--dir DIR] [--sizes 1000,10000,100000]
"""
import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

ENTRY_TYPE = "application/vnd.hsx.ledger-entry+json; version=2"


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d " % (len(t), t, len(body)) + body


def no_dupes(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def peer_verify(path: str) -> dict:
    import rfc8785
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    t0 = time.perf_counter()
    with open(path, "rb") as f:
        doc = json.load(f, object_pairs_hook=no_dupes)
    header = doc["header"]
    ledger_dir = os.path.dirname(os.path.abspath(path))
    run_dir = os.path.normpath(os.path.join(ledger_dir, header["run_dir"]))
    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(header["signer"]["public_key"]))
    header_sha = hashlib.sha256(rfc8785.dumps(header)).hexdigest()
    prev = "0" * 64
    seen = {}
    ok = True
    for i, e in enumerate(doc["entries"]):
        body = {k: v for k, v in e.items() if k not in ("hash", "signature")}
        canon = rfc8785.dumps(body)
        ok &= e["seq"] == i and e["prev"] == prev and e["header_sha256"] == header_sha
        ok &= hashlib.sha256(rfc8785.dumps(e["config"])).hexdigest() == e["config_sha256"]
        ok &= hashlib.sha256(canon).hexdigest() == e["hash"]
        pub.verify(bytes.fromhex(e["signature"]), pae(ENTRY_TYPE, canon))
        for r in e["inputs"] + e["outputs"]:
            key = (r["root"], r["path"], r["bytes"], r["sha256"])
            if key not in seen:
                p = os.path.join(run_dir, r["path"])
                if os.path.getsize(p) != r["bytes"]:
                    seen[key] = False
                else:
                    h = hashlib.sha256()
                    with open(p, "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            h.update(chunk)
                    seen[key] = h.hexdigest() == r["sha256"]
            ok &= seen[key]
        prev = e["hash"]
    secs = time.perf_counter() - t0
    return {"entries": len(doc["entries"]), "verify_seconds": secs, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ok": bool(ok)}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--peer-child":
        print(json.dumps(peer_verify(sys.argv[2])))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--hsx", default="target/release/hsx")
    ap.add_argument("--dir", default=os.path.join(os.environ.get("HSX_CACHE", os.path.expanduser("~/.cache/hsx")), "bench", "verify"))
    ap.add_argument("--sizes", default="1000,10000,100000")
    a = ap.parse_args()
    out = subprocess.run([a.hsx, "bench", "verify", "--dir", a.dir, "--sizes", a.sizes], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    print("entries | ledger MB | hsx verify s | hsx peak MiB | python peer s | peer peak MiB | time ratio peer/hsx | memory ratio peer/hsx")
    for r in rows:
        path = os.path.join(a.dir, "ws", "ledger", f"bench-{r['entries']}.json")
        p = json.loads(subprocess.run([sys.executable, __file__, "--peer-child", path], check=True, capture_output=True, text=True).stdout)
        if not (r["ok"] and p["ok"]):
            sys.exit(f"a verifier rejected the {r['entries']}-entry ledger: hsx ok={r['ok']}, peer ok={p['ok']}")
        print(f"{r['entries']} | {r['ledger_bytes'] / 1e6:.1f} | {r['verify_seconds']:.3f} | {r['peak_rss_kib'] / 1024:.1f} | "
              f"{p['verify_seconds']:.3f} | {p['peak_rss_kib'] / 1024:.1f} | {p['verify_seconds'] / r['verify_seconds']:.2f} | "
              f"{p['peak_rss_kib'] / r['peak_rss_kib']:.2f}")


if __name__ == "__main__":
    main()
