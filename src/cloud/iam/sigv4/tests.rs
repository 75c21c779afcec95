//! Known answers: the AWS SigV4 test suite's `get-vanilla`, the IAM
//! ListUsers example of AWS's documentation, and requests whose
//! expected signatures were computed with Python's `hmac`/`hashlib`
//! from the canonical requests written out here by hand from the spec.

use super::*;

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20150830T123600Z";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn signed_at() -> SystemTime {
    at(time::parse_basic_utc(DATE).unwrap())
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn authorization(service: &str, signed: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/20150830/us-east-1/{service}/aws4_request, \
         SignedHeaders={signed}, Signature={signature}"
    )
}

const VANILLA: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn vanilla(signature: &str) -> Vec<(String, String)> {
    headers(&[
        ("Host", "example.amazonaws.com"),
        ("X-Amz-Date", DATE),
        (
            "Authorization",
            &authorization("service", "host;x-amz-date", signature),
        ),
    ])
}

fn get<'a>(path: &'a str, query: &'a str, headers: &'a [(String, String)]) -> SignedRequest<'a> {
    SignedRequest {
        method: "GET",
        path,
        query,
        headers,
        body: b"",
    }
}

fn verify(request: &SignedRequest<'_>, now: SystemTime) -> Result<Signature, AuthError> {
    let sig = Signature::parse(request)?;
    sig.verify(request, SECRET, now)?;
    Ok(sig)
}

#[test]
fn get_vanilla_from_the_aws_test_suite() {
    let h = vanilla(VANILLA);
    let request = get("/", "", &h);
    let sig = verify(&request, signed_at()).unwrap();
    assert_eq!(sig.access_key, KEY);
    assert_eq!(
        sig.scope,
        Scope {
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into()
        }
    );
    assert_eq!(
        canonical_request(&request, &sig.signed_headers, Form::Header).unwrap(),
        format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
        )
    );
    assert_eq!(
        sign(
            SECRET,
            &sig.scope,
            &string_to_sign(
                DATE,
                &sig.scope,
                &canonical_request(&request, &sig.signed_headers, Form::Header).unwrap()
            )
        )
        .unwrap(),
        VANILLA
    );
}

/// The headers of a form request to IAM with `signature`.
fn iam_form_headers(signature: &str) -> Vec<(String, String)> {
    headers(&[
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", DATE),
        (
            "Authorization",
            &authorization("iam", "content-type;host;x-amz-date", signature),
        ),
    ])
}

#[test]
fn the_iam_list_users_example_of_the_aws_documentation() {
    let h = iam_form_headers("5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    let sig = verify(
        &get("/", "Action=ListUsers&Version=2010-05-08", &h),
        signed_at(),
    )
    .unwrap();
    assert_eq!(sig.scope.service, "iam");
}

#[test]
fn a_form_body_is_signed_through_its_hash() {
    let body = b"Action=ListUsers&Version=2010-05-08";
    let h = iam_form_headers("5d76d0de3e0ffe5a7a23cfce21b99d6f4e5060aad86bd9dc7c617f224e5b492a");
    let post = |body: &'static [u8]| SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &h,
        body,
    };
    verify(&post(body), signed_at()).unwrap();
    let err = verify(&post(b"Action=DeleteUser&Version=2010-05-08"), signed_at()).unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
}

#[test]
fn paths_queries_and_headers_are_canonicalised_as_the_spec_says() {
    let h = headers(&[
        ("Host", "example.amazonaws.com"),
        ("My-Header1", "  value1 "),
        ("my-header1", "value2 with  spaces"),
        ("X-Amz-Date", DATE),
        ("User-Agent", "not signed"),
        (
            "Authorization",
            &authorization(
                "service",
                "host;My-Header1;x-amz-date",
                "769656831b358a6bbd853615ad2919c70d88ee8d7858f57025fe5a33631f356b",
            ),
        ),
    ]);
    let request = get(
        "/./example%20space/x/../%E1%88%B4",
        "Param2=a%20b%2Bc&Param1=value2&&Param1=Value1",
        &h,
    );
    let sig = verify(&request, signed_at()).unwrap();
    assert_eq!(
        canonical_request(&request, &sig.signed_headers, Form::Header).unwrap(),
        format!(
            "GET\n/example%2520space/%25E1%2588%25B4\nParam1=Value1&Param1=value2&Param2=a%20b%2Bc\n\
             host:example.amazonaws.com\nmy-header1:value1,value2 with spaces\nx-amz-date:{DATE}\n\n\
             host;my-header1;x-amz-date\n{EMPTY_SHA256}"
        )
    );
}

#[test]
fn uris_keep_their_slashes_and_lose_dot_segments() {
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri("/./"), "/");
    assert_eq!(canonical_uri("//a//b/"), "/a/b/");
    assert_eq!(canonical_uri("/a/../.."), "/");
    assert_eq!(canonical_uri("/a~b-c_d.e"), "/a~b-c_d.e");
    assert_eq!(canonical_uri("/a:b"), "/a%3Ab");
}

#[test]
fn the_presigned_form_verifies_without_its_own_signature() {
    let query = "Action=ListUsers&Version=2010-05-08&X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fiam%2Faws4_request\
        &X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=c1d81d2c1667f724b714de8de01eb28808ee3df2bd3757c049afb139adde2df0";
    let h = headers(&[("Host", "iam.amazonaws.com")]);
    let request = get("/", query, &h);
    let sig = verify(&request, signed_at() + Duration::from_secs(59)).unwrap();
    assert_eq!(sig.form, Form::Query { expires: Some(60) });
    let late = verify(&request, signed_at() + Duration::from_secs(61)).unwrap_err();
    assert!(matches!(late, AuthError::Expired { .. }), "{late}");
    assert_eq!(late.code(), "SignatureDoesNotMatch");
    let tampered = query.replace("ListUsers", "ListUser");
    let err = verify(&get("/", &tampered, &h), signed_at()).unwrap_err();
    assert_eq!(err, AuthError::Mismatch(MISMATCH.into()));
}

#[test]
fn the_clock_may_be_15_minutes_off_either_way_and_no_more() {
    let h = vanilla(VANILLA);
    let request = get("/", "", &h);
    let skew = MAX_SKEW;
    verify(&request, signed_at() + skew).unwrap();
    verify(&request, signed_at() - skew).unwrap();
    let old = verify(&request, signed_at() + skew + Duration::from_secs(1)).unwrap_err();
    assert!(
        old.to_string().starts_with(
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z \
             (20150830T125101Z - 15 min.)"
        ),
        "{old}"
    );
    let early = verify(&request, signed_at() - skew - Duration::from_secs(1)).unwrap_err();
    assert!(
        early.to_string().starts_with("Signature not yet current"),
        "{early}"
    );
    // EC2 calls it RequestExpired; the others SignatureDoesNotMatch.
    assert_eq!(old.code(), "SignatureDoesNotMatch");
    let ec2 = AuthError::Expired {
        service: "ec2".into(),
        message: String::new(),
    };
    assert_eq!(ec2.code(), "RequestExpired");
}

#[test]
fn a_wrong_secret_or_a_changed_request_does_not_match() {
    let h = vanilla(VANILLA);
    let request = get("/", "", &h);
    let sig = Signature::parse(&request).unwrap();
    let err = sig
        .verify(
            &request,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ",
            signed_at(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    assert_eq!(err.status(), 403);
    for changed in [get("/x", "", &h), get("/", "a=b", &h)] {
        assert_eq!(
            verify(&changed, signed_at()).unwrap_err().code(),
            "SignatureDoesNotMatch"
        );
    }
    let wrong = vanilla(&VANILLA.replace('5', "6"));
    assert_eq!(
        verify(&get("/", "", &wrong), signed_at())
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
}

#[test]
fn malformed_authorisations_are_refused_with_aws_codes() {
    let code = |h: Vec<(String, String)>, query: &str| {
        Signature::parse(&get("/", query, &h)).unwrap_err().code()
    };
    assert_eq!(
        code(headers(&[("Host", "h")]), ""),
        "MissingAuthenticationToken"
    );
    assert_eq!(
        code(
            headers(&[("Authorization", "AWS AKID:sig"), ("X-Amz-Date", DATE)]),
            ""
        ),
        "AuthFailure"
    );
    let base =
        |auth: &str| headers(&[("Host", "h"), ("X-Amz-Date", DATE), ("Authorization", auth)]);
    for bad in [
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws5_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=x-amz-date, Signature=00",
        "AWS4-HMAC-SHA256 garbage",
    ] {
        assert_eq!(code(base(bad), ""), "IncompleteSignature", "{bad}");
    }
    let good = authorization("iam", "host;x-amz-date", VANILLA);
    assert_eq!(
        code(headers(&[("Host", "h"), ("Authorization", &good)]), ""),
        "IncompleteSignature"
    );
    assert_eq!(
        code(
            headers(&[
                ("Host", "h"),
                ("X-Amz-Date", "20150831T000000Z"),
                ("Authorization", &good)
            ]),
            ""
        ),
        "SignatureDoesNotMatch"
    );
    assert_eq!(
        code(base(&good), "X-Amz-Algorithm=AWS4-HMAC-SHA256"),
        "IncompleteSignature"
    );
    assert_eq!(
        code(
            headers(&[("Host", "h")]),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        ),
        "IncompleteSignature"
    );
    // A well-formed header parses; its signature is checked later.
    assert!(Signature::parse(&get("/", "", &base(&good))).is_ok());
    assert_eq!(
        code(
            headers(&[
                ("Host", "h"),
                ("X-Amz-Date", DATE),
                ("X-Amz-Security-Token", "t"),
                ("Authorization", &good)
            ]),
            ""
        ),
        "InvalidClientTokenId"
    );
}

#[test]
fn a_payload_hash_header_must_be_the_body_s() {
    let h = |sha: &str| {
        headers(&[
            ("Host", "h"),
            ("X-Amz-Date", DATE),
            ("x-amz-content-sha256", sha),
        ])
    };
    let with = |h: &[(String, String)], body: &'static [u8]| {
        payload_hash(&SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: h,
            body,
        })
    };
    assert_eq!(with(&h(EMPTY_SHA256), b"").unwrap(), EMPTY_SHA256);
    assert_eq!(
        with(&h("UNSIGNED-PAYLOAD"), b"").unwrap(),
        "UNSIGNED-PAYLOAD"
    );
    assert_eq!(
        with(&h("UNSIGNED-PAYLOAD"), b"Action=CreateUser")
            .unwrap_err()
            .code(),
        "SignatureDoesNotMatch"
    );
    assert_eq!(
        with(&h(EMPTY_SHA256), b"x").unwrap_err().code(),
        "SignatureDoesNotMatch"
    );
}
