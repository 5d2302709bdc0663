#!/usr/bin/env python3
"""Checks every DSSE envelope of `hsx export` directories with securesystemslib and rfc8785, without hsx
(docs/interop.md):

    python check_envelopes.py EXPORT_DIR [EXPORT_DIR ...]

Each directory's `export.json` lists its documents (file, line, kind, key id, payload type, entry hash)
and its signers' public keys as PEM files. For every envelope — a line of a JSON-lines file, a whole
file (in-toto layout and links), or a Sigstore bundle's `dsseEnvelope` — it checks:

  * the key: the PEM file's raw key is the one export.json names, and the envelope's key id is the key's
    (hsx's `sha256:<hex of the raw key's SHA-256>` for the ledger signer, securesystemslib's own default
    key id, computed here, for the export signer);
  * the signature: securesystemslib's `Envelope.verify` (ed25519 over the DSSE pre-authentication encoding);
  * the payload is RFC 8785 canonical JSON: rfc8785.dumps(json.loads(payload)) == payload;
  * an entry's payload hashes (SHA-256) to the entry's hash; the head's payload names the head's hash;
  * and the negative: the same envelope with one payload byte changed fails `Envelope.verify`.

Exit status 1 when any check fails; the last line counts what passed.
"""
import base64
import hashlib
import json
import os
import sys

import rfc8785
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}", file=sys.stderr)


def load_signer(export_dir, ref):
    """The signer's key from its PEM file, checked against export.json; with both of its key ids."""
    with open(os.path.join(export_dir, ref["pem_file"]), "rb") as f:
        public = load_pem_public_key(f.read())
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    where = f"{export_dir}/{ref['pem_file']}"
    if raw.hex() != ref["public_key"]:
        fail(where, "the PEM key is not the public key export.json names")
    hsx_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    if hsx_id != ref["key_id"]:
        fail(where, f"hsx key id {ref['key_id']} is not sha256 of the key ({hsx_id})")
    sslib_id = SSlibKey.from_crypto(public).keyid  # securesystemslib's default key id, computed by it
    if sslib_id != ref["sslib_keyid"]:
        fail(where, f"securesystemslib key id {ref['sslib_keyid']} is not securesystemslib's ({sslib_id})")
    return public, {hsx_id, sslib_id}


def envelope_of(export_dir, doc):
    path = os.path.join(export_dir, doc["file"])
    with open(path, encoding="utf-8") as f:
        if doc.get("line"):
            data = json.loads(f.read().splitlines()[doc["line"] - 1])
        else:
            data = json.load(f)
    return data.get("dsseEnvelope", data)


def check_dir(export_dir, counts):
    with open(os.path.join(export_dir, "export.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    signers = [manifest["ledger_signer"]] + ([manifest["export_signer"]] if manifest.get("export_signer") else [])
    keys = [load_signer(export_dir, s) for s in signers]
    for doc in manifest["documents"]:
        where = f"{export_dir}/{doc['file']}" + (f" line {doc['line']}" if doc.get("line") else "")
        env_dict = envelope_of(export_dir, doc)
        if env_dict.get("payloadType") != doc["payload_type"]:
            fail(where, f"payloadType {env_dict.get('payloadType')!r} is not {doc['payload_type']!r}")
        public = next((p for p, ids in keys if doc["keyid"] in ids), None)
        if public is None:
            fail(where, f"key id {doc['keyid']} is none of the signers'")
            continue
        key = SSlibKey.from_crypto(public, keyid=doc["keyid"])
        envelope = Envelope.from_dict(json.loads(json.dumps(env_dict)))
        if [s for s in envelope.signatures] != [doc["keyid"]]:
            fail(where, f"signature key ids {list(envelope.signatures)} are not [{doc['keyid']!r}]")
        try:
            envelope.verify([key], 1)
            counts["verified"] += 1
        except VerificationError as e:
            fail(where, f"securesystemslib: {e}")
        payload = envelope.payload
        try:
            if rfc8785.dumps(json.loads(payload)) == payload:
                counts["canonical"] += 1
            else:
                fail(where, "the payload is not RFC 8785 canonical JSON")
        except rfc8785.CanonicalizationError as e:
            fail(where, f"rfc8785 cannot canonicalise the payload: {type(e).__name__}: {e}")
        if doc["kind"] == "entry" and hashlib.sha256(payload).hexdigest() != doc["entry_hash"]:
            fail(where, "the payload's SHA-256 is not the entry's hash")
        if doc["kind"] == "head" and json.loads(payload).get("hash") != doc["entry_hash"]:
            fail(where, "the head's payload does not name the head hash")
        # One payload byte changed: the signature must no longer verify.
        tampered = dict(env_dict)
        changed = bytearray(payload)
        changed[len(changed) // 2] ^= 0x01
        tampered["payload"] = base64.b64encode(bytes(changed)).decode()
        try:
            Envelope.from_dict(json.loads(json.dumps(tampered))).verify([key], 1)
            fail(where, "a payload with one byte changed still verifies")
        except VerificationError:
            counts["tampered_rejected"] += 1
        counts["envelopes"] += 1


def main(dirs):
    counts = {"envelopes": 0, "verified": 0, "canonical": 0, "tampered_rejected": 0}
    for d in dirs:
        check_dir(d, counts)
    print(
        f"securesystemslib + rfc8785: {counts['envelopes']} envelopes; {counts['verified']} signatures verify, "
        f"{counts['canonical']} payloads are RFC 8785 canonical, {counts['tampered_rejected']} with one payload "
        f"byte changed are rejected; {len(failures)} failures"
    )
    sys.exit(1 if failures or counts["envelopes"] == 0 else 0)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: check_envelopes.py EXPORT_DIR [EXPORT_DIR ...]")
    main(sys.argv[1:])
