#!/usr/bin/env python3
"""Re-checks every entry of an hsx ledger without hsx, with PyPI's `rfc8785` (RFC 8785 / JCS) and
`securesystemslib` (ed25519), as a reviewer would (docs/interop.md).

    python ledger_jcs.py LEDGER.json

Prints one JSON line for the ledger (its version, whether the header's key id is sha256 of the public
key) and one per entry:

    {"seq": 3, "stage": "base-model", "status": "canonicalised", "sha256": ..., "hash_matches": true,
     "signature": "valid"}
    {"seq": 4, "stage": "generator", "status": "integer-domain", "detail": "..."}

`canonicalised`: rfc8785 wrote the entry (without `hash` and `signature`); `sha256` is the SHA-256 of
those bytes, `hash_matches` whether it is the recorded `hash`, and `signature` whether the header's key
signed them: version 2 over the DSSE pre-authentication encoding
PAE("application/vnd.hsx.ledger-entry+json; version=2", bytes), version 1 over the 32 digest bytes.
`integer-domain`: the entry holds an integer beyond 2^53 - 1, which RFC 8785 cannot canonicalise
(ledgers sealed before hsx refused them). Exit status 0 whatever the verdicts: the caller judges them.
"""
import hashlib
import json
import sys

import rfc8785
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Signature, SSlibKey

ENTRY_PAYLOAD_TYPE = "application/vnd.hsx.ledger-entry+json; version=2"


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(body), body)


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    header = doc["header"]
    version = header["version"]
    signer = header["signer"]
    public_hex = signer["public_key"]
    key = SSlibKey(signer["key_id"], "ed25519", "ed25519", {"public": public_hex})
    key_id = "sha256:" + hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()
    print(json.dumps({"ledger": path, "version": version, "entries": len(doc["entries"]),
                      "key_id_matches": key_id == signer["key_id"]}))
    for e in doc["entries"]:
        out = {"seq": e["seq"], "stage": e["stage"]}
        body = {k: v for k, v in e.items() if k not in ("hash", "signature")}
        try:
            canonical = rfc8785.dumps(body)
        except rfc8785.IntegerDomainError as err:
            out.update(status="integer-domain", detail=str(err))
            print(json.dumps(out))
            continue
        digest = hashlib.sha256(canonical).hexdigest()
        message = pae(ENTRY_PAYLOAD_TYPE, canonical) if version == 2 else bytes.fromhex(digest)
        try:
            key.verify_signature(Signature(key.keyid, e["signature"]), message)
            verdict = "valid"
        except UnverifiedSignatureError:
            verdict = "invalid"
        out.update(status="canonicalised", sha256=digest, hash_matches=digest == e["hash"], signature=verdict)
        print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ledger_jcs.py LEDGER.json")
    main(sys.argv[1])
