//! AWS Signature Version 4, the verifying side: the Authorization header
//! form and the presigned query form, with the canonical request built
//! as AWS defines it
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>).
//!
//! The cryptography is RustCrypto's: `sha2` for SHA-256 and `hmac` for
//! HMAC-SHA256, whose `verify_slice` compares the signature in constant
//! time (through `subtle`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

use crate::cloud::time;

/// The one algorithm verified.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's time may be from this host's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The longest a presigned request may stay valid (7 days), as AWS.
const MAX_EXPIRES: u64 = 604_800;
/// What the credential scope ends with.
const TERMINATOR: &str = "aws4_request";
/// The payload hash of a request that does not sign its body.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Query strings: everything but RFC 3986's unreserved characters is
/// percent-encoded (as in IAM's policy documents in its answers).
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Paths: the same, keeping the slashes.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// As received, still percent-encoded.
    pub path: &'a str,
    /// The raw query string, "" if none.
    pub query: &'a str,
    /// Names as received.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Why a request is not authenticated. `code` is the AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "Request is missing Authentication Token: sign it with AWS Signature Version 4 (the aws \
         CLI and SDKs do), with an access key from `gureum iam create-access-key`"
    )]
    Missing,
    #[error(
        "unsupported signing algorithm '{0}': gureum verifies AWS4-HMAC-SHA256 (Signature \
         Version 4) only"
    )]
    Algorithm(String),
    #[error("{0}")]
    Incomplete(String),
    #[error(
        "The security token included in the request is invalid: access key {0} is not known \
         here; create one with `gureum iam create-access-key` (`gureum iam list-access-keys` \
         shows them)"
    )]
    UnknownKey(String),
    #[error(
        "The security token included in the request is invalid: access key {0} is inactive; \
         sign with an active key"
    )]
    InactiveKey(String),
    #[error(
        "The security token included in the request is invalid: gureum issues no session \
         tokens; unset AWS_SESSION_TOKEN (X-Amz-Security-Token) and sign with a long-term \
         access key"
    )]
    SessionToken,
    #[error("{message}")]
    Expired { service: String, message: String },
    #[error("{0}")]
    Mismatch(String),
    #[error("cannot check the request's signature: {0}")]
    Internal(String),
}

/// What AWS says when the signature is wrong.
const MISMATCH: &str = "The request signature we calculated does not match the signature you \
     provided. Check your AWS Secret Access Key and signing method.";

impl AuthError {
    /// The AWS error code: EC2 calls an out-of-date request
    /// RequestExpired, IAM and STS SignatureDoesNotMatch.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::Algorithm(_) => "AuthFailure",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::UnknownKey(_) | AuthError::InactiveKey(_) | AuthError::SessionToken => {
                "InvalidClientTokenId"
            }
            AuthError::Expired { service, .. } if service == "ec2" => "RequestExpired",
            AuthError::Expired { .. } | AuthError::Mismatch(_) => "SignatureDoesNotMatch",
            AuthError::Internal(_) => "InternalFailure",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Incomplete(_) => 400,
            AuthError::Internal(_) => 500,
            _ => 403,
        }
    }
}

fn incomplete(message: impl Into<String>) -> AuthError {
    AuthError::Incomplete(message.into())
}

/// The credential scope: `DATE/REGION/SERVICE/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    fn text(&self) -> String {
        format!(
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// Which form carries the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Header,
    /// Presigned, valid for this many seconds after its date.
    Query {
        expires: Option<u64>,
    },
}

/// What a request says about its signature, before any key is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub access_key: String,
    pub scope: Scope,
    /// `X-Amz-Date` as sent, and as seconds since the epoch.
    pub amz_date: String,
    pub time: u64,
    /// Lowercase, sorted.
    pub signed_headers: Vec<String>,
    pub form: Form,
    signature: Vec<u8>,
}

/// The value of header `name` (any case): every occurrence.
fn header_values<'a>(request: &'a SignedRequest<'_>, name: &str) -> Vec<&'a str> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn header<'a>(request: &'a SignedRequest<'_>, name: &str) -> Option<&'a str> {
    header_values(request, name).into_iter().next()
}

/// The query's parameters, percent-decoded (a `+` stays a `+`).
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

impl Signature {
    /// Reads the signature's parts from the Authorization header or the
    /// presigned query parameters.
    pub fn parse(request: &SignedRequest<'_>) -> Result<Self, AuthError> {
        let params = query_params(request.query);
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("X-Amz-Security-Token").is_some()
            || header(request, "x-amz-security-token").is_some()
        {
            return Err(AuthError::SessionToken);
        }
        let authorization = header(request, "authorization");
        let presigned = param("X-Amz-Algorithm").is_some() || param("X-Amz-Signature").is_some();
        match (authorization, presigned) {
            (Some(_), true) => Err(incomplete(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or \
                 the Authorization header should be specified",
            )),
            (None, false) => Err(AuthError::Missing),
            (Some(auth), false) => Self::from_header(request, auth),
            (None, true) => {
                let need = |name: &str| {
                    param(name).ok_or_else(|| {
                        incomplete(format!(
                            "AWS query-string parameters must include '{name}'. Re-examine the \
                             query-string parameters."
                        ))
                    })
                };
                let algorithm = need("X-Amz-Algorithm")?;
                if algorithm != ALGORITHM {
                    return Err(AuthError::Algorithm(algorithm.to_owned()));
                }
                let expires = match param("X-Amz-Expires") {
                    None => None,
                    Some(text) => Some(
                        text.parse::<u64>()
                            .ok()
                            .filter(|e| (1..=MAX_EXPIRES).contains(e))
                            .ok_or_else(|| {
                                incomplete(format!(
                                    "X-Amz-Expires must be a number of seconds from 1 to \
                                     {MAX_EXPIRES}, not '{text}'"
                                ))
                            })?,
                    ),
                };
                Self::build(
                    need("X-Amz-Credential")?,
                    need("X-Amz-SignedHeaders")?,
                    need("X-Amz-Signature")?,
                    Some(need("X-Amz-Date")?),
                    Form::Query { expires },
                )
            }
        }
    }

    fn from_header(request: &SignedRequest<'_>, auth: &str) -> Result<Self, AuthError> {
        let auth = auth.trim();
        let (algorithm, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        if algorithm != ALGORITHM {
            return Err(AuthError::Algorithm(algorithm.to_owned()));
        }
        let mut parts = std::collections::BTreeMap::new();
        for part in rest.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').ok_or_else(|| {
                incomplete(format!(
                    "'{part}' in the Authorization header is not a key=value pair"
                ))
            })?;
            parts.insert(k.trim(), v.trim());
        }
        let missing: Vec<String> = ["Credential", "SignedHeaders", "Signature"]
            .iter()
            .filter(|k| !parts.contains_key(*k))
            .map(|k| format!("Authorization header requires '{k}' parameter."))
            .collect();
        if !missing.is_empty() {
            return Err(incomplete(format!(
                "{} Authorization={auth}",
                missing.join(" ")
            )));
        }
        let get = |k: &str| parts.get(k).copied().unwrap_or_default();
        let date = header(request, "x-amz-date");
        if date.is_none() {
            return Err(incomplete(
                "Authorization header requires existence of a 'X-Amz-Date' header",
            ));
        }
        Self::build(
            get("Credential"),
            get("SignedHeaders"),
            get("Signature"),
            date,
            Form::Header,
        )
    }

    fn build(
        credential: &str,
        signed_headers: &str,
        signature: &str,
        amz_date: Option<&str>,
        form: Form,
    ) -> Result<Self, AuthError> {
        let fields: Vec<&str> = credential.split('/').collect();
        let [key, date, region, service, terminator] = fields.as_slice() else {
            return Err(incomplete(format!(
                "Credential '{credential}' must be ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request"
            )));
        };
        if *terminator != TERMINATOR {
            return Err(incomplete(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not \
                 '{terminator}'."
            )));
        }
        if key.is_empty() || region.is_empty() || service.is_empty() {
            return Err(incomplete(format!(
                "Credential '{credential}' has an empty access key, region or service"
            )));
        }
        let amz_date = amz_date.unwrap_or_default().trim();
        let time = time::parse_basic_utc(amz_date).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date '{amz_date}' must be an ISO 8601 basic time, as 20150830T123600Z"
            ))
        })?;
        if amz_date.get(..8) != Some(*date) {
            return Err(AuthError::Mismatch(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{date}' != '{}', from '{amz_date}'.",
                amz_date.get(..8).unwrap_or_default()
            )));
        }
        let mut names: Vec<String> = signed_headers
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        names.sort();
        names.dedup();
        if !names.iter().any(|h| h == "host") {
            return Err(incomplete(format!(
                "'Host' must be a 'SignedHeader' in the AWS Authorization (signed headers: \
                 '{signed_headers}')"
            )));
        }
        let signature = hex_bytes(signature).ok_or_else(|| {
            AuthError::Mismatch(format!("{MISMATCH} (the signature is not 64 hex digits)"))
        })?;
        Ok(Self {
            access_key: (*key).to_owned(),
            scope: Scope {
                date: (*date).to_owned(),
                region: (*region).to_owned(),
                service: (*service).to_owned(),
            },
            amz_date: amz_date.to_owned(),
            time,
            signed_headers: names,
            form,
            signature,
        })
    }

    /// Checks the request's time against `now` and its signature against
    /// `secret`.
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
        secret: &str,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        self.check_time(now)?;
        let canonical = canonical_request(request, &self.signed_headers, self.form)?;
        let to_sign = string_to_sign(&self.amz_date, &self.scope, &canonical);
        mac(secret, &self.scope, &to_sign)?
            .verify_slice(&self.signature)
            .map_err(|_| AuthError::Mismatch(MISMATCH.into()))
    }

    fn check_time(&self, now: SystemTime) -> Result<(), AuthError> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let skew = MAX_SKEW.as_secs();
        let expired = |message: String| AuthError::Expired {
            service: self.scope.service.clone(),
            message,
        };
        let stamp = time::format_basic_utc;
        if self.time > now + skew {
            return Err(expired(format!(
                "Signature not yet current: {} is still later than {} ({} + 15 min.); check the \
                 clocks of the client and of this host",
                self.amz_date,
                stamp(now + skew),
                stamp(now)
            )));
        }
        match self.form {
            Form::Query {
                expires: Some(expires),
            } => {
                if now > self.time + expires {
                    return Err(expired(format!(
                        "Request has expired: it was signed at {} for {expires} s, and it is now \
                         {}; presign it again",
                        self.amz_date,
                        stamp(now)
                    )));
                }
            }
            _ => {
                if self.time + skew < now {
                    return Err(expired(format!(
                        "Signature expired: {} is now earlier than {} ({} - 15 min.); sign the \
                         request again, and check the clocks of the client and of this host",
                        self.amz_date,
                        stamp(now - skew),
                        stamp(now)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Lowercase or uppercase hex of 32 bytes.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical request: method, path, query, headers, signed headers
/// and payload hash, one per line.
pub fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
    form: Form,
) -> Result<String, AuthError> {
    let mut headers = String::new();
    for name in signed_headers {
        let values = header_values(request, name);
        if values.is_empty() {
            return Err(AuthError::Mismatch(format!(
                "{MISMATCH} (signed header '{name}' is not in the request)"
            )));
        }
        let values: Vec<String> = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        canonical_uri(request.path),
        canonical_query(request.query, matches!(form, Form::Query { .. })),
        signed_headers.join(";"),
        payload_hash(request)?
    ))
}

/// The path with `.` and `..` segments and empty segments removed, each
/// character outside the unreserved ones percent-encoded (so a path
/// received percent-encoded is encoded twice, as AWS wants for every
/// service but S3).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let lead = if path.starts_with('/') { "/" } else { "" };
    let trail = if path.ends_with('/') && !kept.is_empty() {
        "/"
    } else {
        ""
    };
    let normal = format!("{lead}{}{trail}", kept.join("/"));
    percent_encode(normal.as_bytes(), PATH).to_string()
}

/// The query's parameters re-encoded as AWS encodes them and sorted by
/// name, then value; a presigned request's own signature left out.
fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(k, v)| {
            let enc = |t: &str| {
                let bytes: Vec<u8> = percent_decode_str(t).collect();
                percent_encode(&bytes, UNRESERVED).to_string()
            };
            (enc(k), enc(v))
        })
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `x-amz-content-sha256` when the client sent it (it must then be the
/// body's hash, or UNSIGNED-PAYLOAD for an empty body: the body carries
/// the request's parameters), else the body's SHA-256.
fn payload_hash(request: &SignedRequest<'_>) -> Result<String, AuthError> {
    let body = hex(&Sha256::digest(request.body));
    match header(request, "x-amz-content-sha256").map(str::trim) {
        None => Ok(body),
        Some(UNSIGNED_PAYLOAD) if request.body.is_empty() => Ok(UNSIGNED_PAYLOAD.into()),
        Some(sent) if sent.eq_ignore_ascii_case(&body) => Ok(sent.to_owned()),
        Some(sent) => Err(AuthError::Mismatch(format!(
            "The provided 'x-amz-content-sha256' header ({sent}) does not match what was \
             computed from the body ({body}); a request whose body is not empty must sign it"
        ))),
    }
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.text(),
        hex(&Sha256::digest(canonical.as_bytes()))
    )
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Result<HmacSha256, AuthError> {
    let mut mac =
        HmacSha256::new_from_slice(key).map_err(|e| AuthError::Internal(e.to_string()))?;
    mac.update(data.as_bytes());
    Ok(mac)
}

/// HMAC-SHA256 over `to_sign` with the key derived from `secret` and the
/// scope, before its final result is taken.
fn mac(secret: &str, scope: &Scope, to_sign: &str) -> Result<HmacSha256, AuthError> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [
        scope.date.as_str(),
        scope.region.as_str(),
        scope.service.as_str(),
        TERMINATOR,
    ] {
        key = hmac(&key, part)?.finalize().into_bytes().to_vec();
    }
    hmac(&key, to_sign)
}

/// The signature (hex) of `to_sign` with `secret` in `scope`: what a
/// client computes.
pub fn sign(secret: &str, scope: &Scope, to_sign: &str) -> Result<String, AuthError> {
    Ok(hex(&mac(secret, scope, to_sign)?.finalize().into_bytes()))
}

#[cfg(test)]
mod tests;
