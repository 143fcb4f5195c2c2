import { errorMessage, fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { CanonicalJsonError } from "./canonical-json.ts";
import type { JsonObject } from "./json-object.ts";
import { isValidServerName } from "./server-name.ts";
import { signatureOf, verifyJsonSignature } from "./signatures.ts";
import type { SigningKey } from "./signing-key.ts";

/** What a federation request signature covers (spec "Request Authentication"). */
export interface FederationRequest {
  readonly method: string;
  /** Path and query exactly as put on the wire, starting with `/_matrix/`. */
  readonly uri: string;
  readonly origin: string;
  readonly destination: string;
  /** The JSON body, if the request has one. */
  readonly content?: unknown;
}

/** A received request as the receiving server sees it; the origin comes from the header. */
export type ReceivedRequest = Omit<FederationRequest, "origin">;

export interface XMatrixAuth {
  readonly origin: string;
  /** Older servers omit it; the spec asks recipients to accept that. */
  readonly destination: string | undefined;
  readonly key: string;
  readonly sig: string;
}

export function requestSigningJson(request: FederationRequest): JsonObject {
  const json: JsonObject = {
    method: request.method,
    uri: request.uri,
    origin: request.origin,
    destination: request.destination,
  };
  if (request.content !== undefined) json["content"] = request.content;
  return json;
}

const METHOD = /^[A-Z]+$/;
const URI = /^\/[^\s#]*$/;
const KEY_ID = /^[A-Za-z0-9_]+:[A-Za-z0-9_]+$/;

/**
 * The value of the `Authorization` header for `request`, in the conservative form the
 * spec asks senders to use: one space after the scheme, lower-case names, quoted
 * values, no whitespace around commas.
 */
export function xMatrixAuthorization(request: FederationRequest, key: SigningKey): Result<string> {
  for (const [what, name] of [["origin", request.origin], ["destination", request.destination]] as const) {
    if (!isValidServerName(name)) return fail("E_BAD_SERVER_NAME", `The ${what} "${name}" is not a valid server name.`);
  }
  if (!METHOD.test(request.method)) {
    return fail("E_BAD_REQUEST", `The HTTP method "${request.method}" must be upper-case, as sent on the wire.`);
  }
  if (!URI.test(request.uri)) {
    return fail("E_BAD_REQUEST", "The request target must be a path (and query) starting with /.");
  }
  let sig: string;
  try {
    sig = signatureOf(requestSigningJson(request), key);
  } catch (err) {
    if (!(err instanceof CanonicalJsonError)) throw err;
    return fail("E_BAD_JSON", "The request body cannot be encoded as canonical JSON.", errorMessage(err));
  }
  return ok(
    `X-Matrix origin="${request.origin}",destination="${request.destination}",key="${key.keyId}",sig="${sig}"`,
  );
}

// RFC 9110 §5.6.2 token characters.
const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const UNQUOTED_VALUE = /[^\s,"]+/y;
const OWS = /[ \t]*/y;

/**
 * Parses `Authorization: X-Matrix ...` as RFC 9110 §11.4 and the spec allow: names in
 * any case and order, spaces or tabs around commas and `=`, values quoted (with
 * backslash escapes) or bare, bare values containing `:` for older servers. Unknown
 * parameters are ignored.
 */
export function parseXMatrix(header: string): Result<XMatrixAuth> {
  const scheme = /^X-Matrix +/i.exec(header);
  if (scheme === null) return malformed("it does not use the X-Matrix scheme");
  const params = parseParams(header, scheme[0].length);
  if (!params.ok) return params;
  const values = params.value;
  const origin = values.get("origin");
  const key = values.get("key");
  const sig = values.get("sig");
  const destination = values.get("destination");
  if (origin === undefined || key === undefined || sig === undefined) {
    return malformed("origin, key and sig are all required");
  }
  if (!isValidServerName(origin)) return malformed("origin is not a valid server name");
  if (destination !== undefined && !isValidServerName(destination)) {
    return malformed("destination is not a valid server name");
  }
  return ok({ origin, destination, key, sig });
}

function parseParams(header: string, start: number): Result<Map<string, string>> {
  const values = new Map<string, string>();
  let at = skip(OWS, header, start);
  while (at < header.length) {
    const name = match(TOKEN, header, at);
    if (name === undefined) return malformed(`expected a parameter name at character ${at}`);
    at = skip(OWS, header, at + name.length);
    if (header[at] !== "=") return malformed(`expected "=" after ${name}`);
    at = skip(OWS, header, at + 1);
    const value = header[at] === '"' ? readQuoted(header, at) : readBare(header, at);
    if (value === undefined) return malformed(`the value of ${name} is malformed`);
    const lowerName = name.toLowerCase();
    if (values.has(lowerName)) return malformed(`${lowerName} appears twice`);
    values.set(lowerName, value.text);
    at = skip(OWS, header, value.end);
    if (at >= header.length) break;
    if (header[at] !== ",") return malformed(`expected "," at character ${at}`);
    at = skip(OWS, header, at + 1);
  }
  return ok(values);
}

function readQuoted(header: string, openingQuote: number): { text: string; end: number } | undefined {
  let text = "";
  for (let at = openingQuote + 1; at < header.length; at++) {
    const char = header[at]!;
    if (char === '"') return { text, end: at + 1 };
    if (char === "\\") {
      at++;
      if (at >= header.length) return undefined;
      text += header[at]!;
    } else {
      text += char;
    }
  }
  return undefined;
}

function readBare(header: string, at: number): { text: string; end: number } | undefined {
  const text = match(UNQUOTED_VALUE, header, at);
  return text === undefined ? undefined : { text, end: at + text.length };
}

function match(pattern: RegExp, text: string, at: number): string | undefined {
  pattern.lastIndex = at;
  return pattern.exec(text)?.[0];
}

function skip(pattern: RegExp, text: string, at: number): number {
  return at + (match(pattern, text, at)?.length ?? 0);
}

function malformed(why: string): Result<never> {
  return fail("E_BAD_AUTH_HEADER", "Malformed X-Matrix Authorization header.", `malformed X-Matrix header: ${why}`);
}

/**
 * Checks a parsed header against the request as received, given the origin's public key
 * for `auth.key`. The destination signed is always our own name, so a header that omits
 * it still only verifies for requests addressed to us.
 */
export function verifyXMatrix(auth: XMatrixAuth, request: ReceivedRequest, publicKey: Uint8Array): Result<void> {
  if (auth.destination !== undefined && auth.destination !== request.destination) {
    return fail(
      "E_WRONG_DESTINATION",
      "The request was addressed to another server.",
      `X-Matrix destination ${auth.destination} is not ${request.destination}`,
    );
  }
  if (!KEY_ID.test(auth.key)) return malformed("key is not a key id");
  const signed = {
    ...requestSigningJson({ ...request, origin: auth.origin }),
    signatures: { [auth.origin]: { [auth.key]: auth.sig } },
  };
  return verifyJsonSignature(signed, auth.origin, auth.key, publicKey);
}
