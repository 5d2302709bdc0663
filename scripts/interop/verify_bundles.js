#!/usr/bin/env node
// Verifies every Sigstore bundle of an `hsx export --format sigstore` directory with @sigstore/verify,
// without hsx (docs/interop.md):
//
//   NODE_PATH=$HSX_CACHE/interop/npm/node_modules node verify_bundles.js EXPORT_DIR
//
// The bundles carry a public-key hint and no certificate, transparency-log entry or timestamp, so the
// verifier is given the key for the hint (ledger_signer.pem, as SubjectPublicKeyInfo DER) and thresholds
// of 0 for logs and timestamps: it checks the DSSE signature, nothing about time or logging. For each
// bundle it also checks that the payload's SHA-256 is the entry hash export.json names, and that the
// same bundle with one payload byte changed fails. Exit status 1 when any check fails.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { bundleFromJSON, BUNDLE_V03_MEDIA_TYPE } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function main(dir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'export.json'), 'utf8'));
  const signer = manifest.ledger_signer;
  const pem = fs.readFileSync(path.join(dir, signer.pem_file), 'utf8');
  const der = crypto.createPublicKey(pem).export({ type: 'spki', format: 'der' });
  const root = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const trust = toTrustMaterial(root, { [signer.key_id]: { rawBytes: der } });
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, tsaThreshold: 0 });
  const failures = [];
  let verified = 0;
  let rejected = 0;
  for (const doc of manifest.documents) {
    const file = path.join(dir, doc.file);
    const json = JSON.parse(fs.readFileSync(file, 'utf8'));
    try {
      if (json.mediaType !== BUNDLE_V03_MEDIA_TYPE) throw new Error(`mediaType ${json.mediaType}`);
      const bundle = bundleFromJSON(json);
      if (bundle.verificationMaterial.content.publicKey.hint !== signer.key_id) throw new Error('hint');
      verifier.verify(toSignedEntity(bundle));
      const payload = bundle.content.dsseEnvelope.payload;
      const digest = crypto.createHash('sha256').update(payload).digest('hex');
      if (doc.kind === 'entry' && digest !== doc.entry_hash) throw new Error("the payload's SHA-256 is not the entry hash");
      verified += 1;
    } catch (e) {
      failures.push(`${doc.file}: ${e.message}`);
      continue;
    }
    // One payload byte changed: the signature must no longer verify.
    const bytes = Buffer.from(json.dsseEnvelope.payload, 'base64');
    bytes[bytes.length >> 1] ^= 0x01;
    const changed = { ...json, dsseEnvelope: { ...json.dsseEnvelope, payload: bytes.toString('base64') } };
    try {
      verifier.verify(toSignedEntity(bundleFromJSON(changed)));
      failures.push(`${doc.file}: a payload with one byte changed still verifies`);
    } catch (e) {
      if (e.code === 'SIGNATURE_ERROR') rejected += 1;
      else failures.push(`${doc.file}: the changed payload failed for another reason: ${e.code} ${e.message}`);
    }
  }
  for (const f of failures) console.error(`FAIL ${f}`);
  console.log(
    `@sigstore/verify: ${manifest.documents.length} bundles; ${verified} verify, ${rejected} with one payload byte ` +
      `changed are rejected; ${failures.length} failures`,
  );
  process.exit(failures.length === 0 && verified > 0 ? 0 : 1);
}

if (process.argv.length !== 3) {
  console.error('usage: verify_bundles.js EXPORT_DIR');
  process.exit(2);
}
main(process.argv[2]);
