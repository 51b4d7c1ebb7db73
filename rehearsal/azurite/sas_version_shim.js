// Loaded into Azurite (`node -r rehearsal/azurite/sas_version_shim.js azurite-blob ...`) by the rehearsal's
// identity variant (rehearsal/stand_ins.py, AzuriteStandIn with identity=True). Three changes, nothing else.
//
// 1. The service version. azure-storage-blob 12.31.1 (pinned in the server image) signs every SAS with its own
// service version, sv=2026-10-06. For a user-delegation SAS that version's string-to-sign has two lines Azurite 3.35
// (which knows versions up to 2025-11-05) does not: the canonicalized signed request headers and signed request
// query parameters (`srh`, `srq`), after the encryption scope (azure/storage/blob/_shared_access_signature.py,
// add_resource_signature; https://learn.microsoft.com/rest/api/storageservices/create-user-delegation-sas, the
// string-to-sign of version 2026-04-06 and later). Azurite therefore computes another string, and refused every
// block MLflow's client put with the SAS its server made (403 AuthorizationFailure), although it issued the
// user-delegation key itself. Azurite 3.36 and later, which may know the version, need Node.js 22. For a version
// newer than the ones Azurite knows, this adds the two lines and signs as Azurite would. Key-signed SAS are
// untouched.
//
// 2. Signed request query parameters, enforced as Azure documents them (same page, "Signed request query
// parameters"): `srq` lists parameter names; the request must carry each (else 403), and the string-to-sign holds
// "\n<name>:<value>" for each, in srq's order, with the values the request carries (URL-decoded), so another value
// fails the signature (403). That is the SDK's canonical form too (_shared/shared_access_signature.py,
// add_request_query_params). mlflow_guard.artifacts signs each part URL with srq=comp,blockid: the URL then puts
// that one block and nothing else (no Put Blob, no Put Block List, no other block). Signed request headers (`srh`)
// are not implemented: a SAS with them signs lines this leaves empty and is refused (neither MLflow nor the guard
// sets them).
//
// 3. An RBAC-like refusal of user-delegation keys (issue 26, second review, item 5): Azure answers Get User
// Delegation Key 403 AuthorizationPermissionMismatch to an identity without "Storage Blob Delegator" (or before
// the assignment has propagated), and mlflow_guard.artifacts then falls back to proxied uploads with a warning.
// Azurite grants every valid token a key; here an object id (the token's `oid`) listed, one per line, in the file
// DELEGATOR_MISSING_FILE of Azurite's --location directory is refused so, read on every request: a test
// takes the role away and gives it back while the stack runs.
"use strict";
const path = require("path");
const fs = require("fs");
const crypto = require("crypto");

const dist = path.join(__dirname, "node_modules", "azurite", "dist", "src");
const signatures = require(path.join(dist, "blob", "authentication", "IBlobSASSignatureValues"));
const SASAuthenticator = require(path.join(dist, "blob", "authentication", "BlobSASAuthenticator")).default;
const ServiceHandler = require(path.join(dist, "blob", "handlers", "ServiceHandler")).default;
const StorageErrorFactory = require(path.join(dist, "blob", "errors", "StorageErrorFactory")).default;
const BlobStorageContext = require(path.join(dist, "blob", "context", "BlobStorageContext")).default;
const LAST_KNOWN_VERSION = require(path.join(dist, "blob", "utils", "constants")).BLOB_API_VERSION;
// Lines of the 2025-07-05 user-delegation string-to-sign up to and including the encryption scope (ses).
const LINES_UP_TO_ENCRYPTION_SCOPE = 21;
const DELEGATOR_MISSING_FILE = "rehearsal-delegator-missing";

// (2) The request's values of the parameters srq names, as the string-to-sign holds them.
const readValues = SASAuthenticator.prototype.getBlobSASSignatureValuesFromRequest;
SASAuthenticator.prototype.getBlobSASSignatureValuesFromRequest = function (req, containerName, blobName, context) {
  const values = readValues.call(this, req, containerName, blobName, context);
  if (values === undefined) {
    return values;
  }
  const srq = req.getQuery("srq");
  values.signedRequestQuery = "";
  if (srq) {
    for (const name of decodeURIComponent(srq).split(",")) {
      const value = req.getQuery(name);
      if (typeof value !== "string") {
        // Azure: "the query parameter specified in srq was not found" (403 AuthenticationFailed).
        throw StorageErrorFactory.getAuthorizationFailure(context ? context.contextId : undefined);
      }
      values.signedRequestQuery += `\n${name}:${value}`;
    }
  }
  values.signedRequestHeaders = req.getQuery("srh") ? "(signed request headers: not implemented)" : "";
  return values;
};

// (1) The version's two lines.
const known = signatures.generateBlobSASSignatureWithUDK;
signatures.generateBlobSASSignatureWithUDK = function (values, resource, accountName, key) {
  const [signature, stringToSign] = known(values, resource, accountName, key);
  if (!(values.version > LAST_KNOWN_VERSION)) {
    return [signature, stringToSign];
  }
  const lines = stringToSign.split("\n");
  lines.splice(LINES_UP_TO_ENCRYPTION_SCOPE, 0, values.signedRequestHeaders || "", values.signedRequestQuery || "");
  const newer = lines.join("\n");
  return [crypto.createHmac("sha256", key).update(newer, "utf8").digest("base64"), newer];
};

// (3) Get User Delegation Key refused to the object ids listed.
function location() {
  const at = process.argv.indexOf("--location");
  return at >= 0 ? process.argv[at + 1] : process.cwd();
}

const issueKey = ServiceHandler.prototype.getUserDelegationKey;
ServiceHandler.prototype.getUserDelegationKey = async function (keyInfo, options, context) {
  let refused = [];
  try {
    refused = fs.readFileSync(path.join(location(), DELEGATOR_MISSING_FILE), "utf8").split("\n").map((s) => s.trim());
  } catch (error) {
    if (error.code !== "ENOENT") {
      throw error;
    }
  }
  const authorization = new BlobStorageContext(context).request.getHeader("authorization") || "";
  const token = authorization.replace(/^Bearer\s+/i, "");
  let oid;
  try {
    oid = JSON.parse(Buffer.from(token.split(".")[1] || "", "base64url").toString("utf8")).oid;
  } catch (error) {
    oid = undefined;
  }
  if (oid && refused.includes(oid)) {
    throw StorageErrorFactory.getAuthorizationPermissionMismatch(context.contextId);
  }
  return issueKey.call(this, keyInfo, options, context);
};
