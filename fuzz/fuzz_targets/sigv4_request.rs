//! What a client sends the endpoint before it is trusted: any request
//! (method, path, query, headers, body) is read for its SigV4 signature
//! and checked, and any body as an IAM policy document, refused with an
//! error or accepted, without crashing.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use gureum::cloud::iam::policy::Policy;
use gureum::cloud::iam::sigv4::{Signature, SignedRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Fields are separated by NUL bytes: method, path, query, then
    // header lines (`Name: value`) up to an empty field, then the body.
    let mut fields = data.split(|&b| b == 0);
    let text = |f: Option<&[u8]>| String::from_utf8_lossy(f.unwrap_or_default()).into_owned();
    let (method, path, query) = (text(fields.next()), text(fields.next()), text(fields.next()));
    let mut headers = Vec::new();
    for line in fields.by_ref() {
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        headers.push((name.to_owned(), value.to_owned()));
    }
    let body: Vec<u8> = fields.collect::<Vec<_>>().join(&0u8);
    let request = SignedRequest {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body: &body,
    };
    if let Ok(signature) = Signature::parse(&request) {
        let now = UNIX_EPOCH + Duration::from_secs(signature.time);
        let _ = signature.verify(&request, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", now);
    }
    if let Ok(document) = std::str::from_utf8(&body) {
        if let Ok(policy) = Policy::parse(document) {
            for statement in &policy.statements {
                let _ = statement.applies(&query, &path);
            }
        }
    }
});
