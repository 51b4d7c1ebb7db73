// Loaded into Azurite (`node -r rehearsal/azurite/sas_version_shim.js azurite-blob ...`) by the rehearsal's
// identity variant (rehearsal/stand_ins.py, AzuriteStandIn with identity=True). Nothing else changes.
//
// Why: azure-storage-blob 12.31.1 (pinned in the server image) signs every SAS with its own service version,
// sv=2026-10-06. For a user-delegation SAS that version's string-to-sign has two lines Azurite 3.35 (which
// knows versions up to 2025-11-05) does not: the signed request headers and signed request query parameters
// (`srh`, `srq`), after the encryption scope (azure/storage/blob/_shared_access_signature.py,
// add_resource_signature). Azurite therefore computes another string, and refuses every block MLflow's client
// puts with the SAS its server made (403 AuthorizationFailure), although it issued the user-delegation key
// itself. Azurite 3.36 and later, which may know the version, need Node.js 22. For a version newer than the
// ones Azurite knows, this adds the two lines, empty (neither MLflow nor its SDK sets them; a SAS that did
// would sign other lines and still be refused), and signs as Azurite would. Key-signed SAS are untouched.
"use strict";
const path = require("path");
const crypto = require("crypto");

const dist = path.join(__dirname, "node_modules", "azurite", "dist", "src");
const signatures = require(path.join(dist, "blob", "authentication", "IBlobSASSignatureValues"));
const LAST_KNOWN_VERSION = require(path.join(dist, "blob", "utils", "constants")).BLOB_API_VERSION;
// Lines of the 2025-07-05 user-delegation string-to-sign up to and including the encryption scope (ses).
const LINES_UP_TO_ENCRYPTION_SCOPE = 21;

const known = signatures.generateBlobSASSignatureWithUDK;
signatures.generateBlobSASSignatureWithUDK = function (values, resource, accountName, key) {
  const [signature, stringToSign] = known(values, resource, accountName, key);
  if (!(values.version > LAST_KNOWN_VERSION)) {
    return [signature, stringToSign];
  }
  const lines = stringToSign.split("\n");
  lines.splice(LINES_UP_TO_ENCRYPTION_SCOPE, 0, "", "");
  const newer = lines.join("\n");
  return [crypto.createHmac("sha256", key).update(newer, "utf8").digest("base64"), newer];
};
