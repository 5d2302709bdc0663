#!/usr/bin/env python3
"""Runs in-toto's own verifier on an `hsx export --format in-toto` directory, and on tampered copies that
it must refuse (docs/interop.md):

    python check_intoto.py EXPORT_DIR EXPORT_SIGNER_PRIVATE_KEY.pem WORK_DIR

  pass      in-toto-verify --layout root.layout --verification-keys export_signer.pem --link-dir links
  tampered  a link whose product digest was edited, not re-signed          -> must fail (signature)
  swapped   a producer's link with two products' digests swapped, re-signed with the export signer's
            key (a signer that lies): its consumers' MATCH rules must fail  -> must fail (artifact rules)
  missing   a link deleted                                                  -> must fail (no link)
  layout    the layout with one rule edited, not re-signed                  -> must fail (layout signature)

Each negative must fail for its reason: the failure message must name it. Exit status 1 otherwise.
"""
import base64
import json
import os
import shutil
import subprocess
import sys

from cryptography.hazmat.primitives.serialization import load_pem_private_key

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type, body):
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(body), body)


def in_toto_verify(d):
    bindir = os.path.dirname(sys.executable)
    r = subprocess.run(
        [os.path.join(bindir, "in-toto-verify"), "--layout", "root.layout", "--verification-keys",
         "export_signer.pem", "--link-dir", "links"],
        cwd=d, capture_output=True, text=True, check=False,
    )
    return r.returncode, (r.stdout + r.stderr).strip()


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write(path, envelope):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(envelope, f, indent=2)


def payload(envelope):
    return json.loads(base64.b64decode(envelope["payload"]))


def with_payload(envelope, doc, key=None):
    """The envelope around `doc`; re-signed with `key` when given, else keeping the old signature."""
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    out = dict(envelope, payload=base64.b64encode(body).decode())
    if key is not None:
        sig = key.sign(pae(PAYLOAD_TYPE, body))
        out["signatures"] = [dict(envelope["signatures"][0], sig=base64.b64encode(sig).decode())]
    return out


def main(export_dir, key_path, work):
    with open(key_path, "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    links = os.path.join(export_dir, "links")
    names = sorted(os.listdir(links))
    link_docs = {n: payload(read(os.path.join(links, n))) for n in names}
    # A producer whose products a later step consumes through a MATCH rule, with two products to swap.
    layout = payload(read(os.path.join(export_dir, "root.layout")))
    consumed = {}
    for step in layout["steps"]:
        for rule in step["expected_materials"]:
            if rule[0] == "MATCH":
                consumed.setdefault(rule[-1], set()).add(rule[1])
    producer = next(
        n for n in names
        if len(consumed.get(link_docs[n]["name"], ())) >= 2
        and len({d["sha256"] for p, d in link_docs[n]["products"].items() if p in consumed[link_docs[n]["name"]]}) >= 2
    )
    failures = []

    def case(name, prepare, expect_ok, expect_text=()):
        d = os.path.join(work, name)
        shutil.copytree(export_dir, d)
        what = prepare(d) or ""
        rc, out = in_toto_verify(d)
        lines = out.splitlines()
        last = next((l for l in reversed(lines) if "Error" in l), lines[-1] if lines else "")
        ok = rc == 0
        good = ok == expect_ok and all(t in out for t in expect_text)
        print(f"in-toto-verify {name:9} {'passes' if ok else 'fails '} ({'as it must' if good else 'WRONG'}){what}"
              + ("" if ok else f": {last}"))
        if not good:
            failures.append(f"{name}: rc {rc}: {out}")

    def tamper(d):
        p = os.path.join(d, "links", producer)
        env = read(p)
        doc = payload(env)
        name = sorted(doc["products"])[0]
        digest = doc["products"][name]["sha256"]
        doc["products"][name]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
        write(p, with_payload(env, doc))
        return f" [{producer}: {name} digest edited]"

    def swap(d):
        p = os.path.join(d, "links", producer)
        env = read(p)
        doc = payload(env)
        step = doc["name"]
        a, b = [x for x in sorted(consumed[step]) if x in doc["products"]][:2]
        if doc["products"][a] == doc["products"][b]:
            a, b = next(
                (x, y) for x in sorted(consumed[step]) for y in sorted(consumed[step])
                if x in doc["products"] and y in doc["products"] and doc["products"][x] != doc["products"][y]
            )
        doc["products"][a], doc["products"][b] = doc["products"][b], doc["products"][a]
        write(p, with_payload(env, doc, key))
        return f" [{producer}: {a} and {b} swapped, re-signed]"

    def missing(d):
        os.remove(os.path.join(d, "links", producer))
        return f" [{producer} deleted]"

    def edit_layout(d):
        p = os.path.join(d, "root.layout")
        env = read(p)
        doc = payload(env)
        doc["steps"][-1]["expected_products"].insert(0, ["ALLOW", "*"])
        write(p, with_payload(env, doc))
        return " [a rule added to the last step]"

    case("pass", lambda d: None, True)
    case("tampered", tamper, False, ("ThresholdVerificationError",))
    case("swapped", swap, False, ("RuleVerificationError",))
    case("missing", missing, False, ("LinkNotFoundError",))
    case("layout", edit_layout, False, ("SignatureVerificationError",))
    print(f"in-toto-verify: {len(link_docs)} links, layout with {len(layout['steps'])} steps; "
          f"{5 - len(failures)} of 5 cases as they must be")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: check_intoto.py EXPORT_DIR EXPORT_SIGNER_PRIVATE_KEY.pem WORK_DIR")
    main(*sys.argv[1:])
