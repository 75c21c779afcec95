//! What the metadata service answers one request, EC2's rules: IMDSv2
//! tokens from `PUT /latest/api/token`, bound to the instance; a GET
//! with a bad token is refused whatever the options, one without a token
//! only when `HttpTokens=required`; a PUT that came through a proxy
//! (`X-Forwarded-For`) is refused; a disabled endpoint says nothing.
//! Pure, apart from the token table it is given.

use std::time::{Duration, Instant};

use super::tokens::{MAX_TTL_SECS, Tokens};
use crate::cloud::metadata::{Facts, tree};
use crate::cloud::metadata_options::{Switch, Tokens as TokenRule};

/// The request, as far as the service reads it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `X-aws-ec2-metadata-token-ttl-seconds`.
    pub ttl: Option<&'a str>,
    /// `X-aws-ec2-metadata-token`.
    pub token: Option<&'a str>,
    /// Whether it carries `X-Forwarded-For`.
    pub forwarded: bool,
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Close the connection unanswered: the endpoint is disabled for
    /// this instance, or the sender is no instance.
    Silence,
    /// An error status (400, 401, 403, 404, 405).
    Status(u16),
    /// 200 with this body.
    Body(Vec<u8>),
    /// A new token, whose packets leave with `hop_limit` as their TTL.
    Token {
        token: String,
        ttl_secs: u64,
        hop_limit: u8,
    },
    /// 500: no token could be made.
    Failed(String),
}

/// The first segment of a path: `latest`, or one of EC2's dated API
/// versions (cloud-init asks for these), YYYY-MM-DD.
fn is_version(segment: &str) -> bool {
    segment == "latest"
        || (segment.len() == 10
            && segment.bytes().enumerate().all(|(n, b)| match n {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            }))
}

/// What the instance of `facts` (none: the sender is no instance) is
/// answered for `asked` at `now`.
pub fn answer(
    facts: Option<&Facts>,
    asked: &Asked<'_>,
    tokens: &mut Tokens,
    now: Instant,
) -> Answer {
    let Some(facts) = facts else {
        return Answer::Silence;
    };
    let options = &facts.instance.metadata_options;
    if options.http_endpoint == Switch::Disabled {
        return Answer::Silence;
    }
    let path = asked.path.trim_start_matches('/');
    let (version, rest) = path.split_once('/').unwrap_or((path, ""));
    let reading = matches!(asked.method, "GET" | "HEAD");
    if version.is_empty() {
        return if reading {
            Answer::Body(b"latest".to_vec())
        } else {
            Answer::Status(405)
        };
    }
    if !is_version(version) {
        return Answer::Status(404);
    }
    let id = &facts.instance.id;
    if rest.trim_end_matches('/') == "api/token" {
        if asked.method != "PUT" {
            return Answer::Status(405);
        }
        if asked.forwarded {
            return Answer::Status(403);
        }
        let Some(ttl_secs) = asked
            .ttl
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|t| (1..=MAX_TTL_SECS).contains(t))
        else {
            return Answer::Status(400);
        };
        return match tokens.issue(id, Duration::from_secs(ttl_secs), now) {
            Ok(token) => Answer::Token {
                token,
                ttl_secs,
                hop_limit: options.http_put_response_hop_limit,
            },
            Err(e) => Answer::Failed(e.to_string()),
        };
    }
    if !reading {
        return Answer::Status(405);
    }
    let allowed = match asked.token {
        Some(token) => tokens.valid(token, id, now),
        None => options.http_tokens == TokenRule::Optional,
    };
    if !allowed {
        return Answer::Status(401);
    }
    match tree::read(&tree::build(facts), rest) {
        Some(body) => Answer::Body(body),
        None => Answer::Status(404),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::instance::State;
    use crate::cloud::instance::tests::instance;
    use crate::cloud::metadata_options::MetadataOptions;
    use crate::cloud::vpc::port::Placement;
    use crate::host::mac::MacAddr;
    use crate::net::cidr::Ipv4Cidr;
    use std::net::Ipv4Addr;

    fn facts(id: &str, options: MetadataOptions) -> Facts {
        let mut i = instance(State::Running);
        i.id = id.into();
        i.metadata_options = options;
        let ip = Ipv4Addr::new(10, 0, 1, 10);
        Facts {
            instance: i,
            tags: Default::default(),
            placement: Placement {
                vpc_id: "vpc-1".into(),
                subnet_id: "subnet-1".into(),
                private_ip: ip,
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                tap: "t-1".into(),
                security_groups: vec!["sg-1".into()],
                source_dest_check: true,
                elastic_ip: None,
                auto_public_ip: false,
                public_ip: None,
            },
            key: None,
            subnet_cidr: Ipv4Cidr::host(ip),
            vpc_cidr: Ipv4Cidr::host(ip),
            group_names: vec![],
            account_id: "123456789012".into(),
            region: "local-1".into(),
        }
    }

    fn get<'a>(path: &'a str, token: Option<&'a str>) -> Asked<'a> {
        Asked {
            method: "GET",
            path,
            ttl: None,
            token,
            forwarded: false,
        }
    }

    fn put(ttl: Option<&str>, forwarded: bool) -> Asked<'_> {
        Asked {
            method: "PUT",
            path: "/latest/api/token",
            ttl,
            token: None,
            forwarded,
        }
    }

    fn token(answer: Answer) -> String {
        match answer {
            Answer::Token { token, .. } => token,
            other => panic!("no token: {other:?}"),
        }
    }

    #[test]
    fn v1_and_v2_when_tokens_are_optional() {
        let f = facts("i-1", MetadataOptions::default());
        let mut tokens = Tokens::default();
        let now = Instant::now();
        let id = Answer::Body(b"i-1".to_vec());
        let path = "/latest/meta-data/instance-id";
        assert_eq!(answer(Some(&f), &get(path, None), &mut tokens, now), id);
        let t = token(answer(Some(&f), &put(Some("60"), false), &mut tokens, now));
        assert_eq!(answer(Some(&f), &get(path, Some(&t)), &mut tokens, now), id);
        // A bad token is refused even when tokens are optional.
        assert_eq!(
            answer(Some(&f), &get(path, Some("forged")), &mut tokens, now),
            Answer::Status(401)
        );
        // Dated versions (cloud-init's) serve the same tree.
        assert_eq!(
            answer(
                Some(&f),
                &get("/2021-03-23/meta-data/instance-id", None),
                &mut tokens,
                now
            ),
            id
        );
        assert_eq!(
            answer(
                Some(&f),
                &get("/other/meta-data/instance-id", None),
                &mut tokens,
                now
            ),
            Answer::Status(404)
        );
        assert_eq!(
            answer(Some(&f), &get("/latest/user-data", None), &mut tokens, now),
            Answer::Status(404)
        );
    }

    #[test]
    fn required_tokens_refuse_v1_and_expired_or_foreign_tokens() {
        let options = MetadataOptions {
            http_tokens: TokenRule::Required,
            http_put_response_hop_limit: 3,
            ..MetadataOptions::default()
        };
        let mine = facts("i-1", options);
        let other = facts("i-2", options);
        let mut tokens = Tokens::default();
        let now = Instant::now();
        let path = "/latest/meta-data/instance-id";
        assert_eq!(
            answer(Some(&mine), &get(path, None), &mut tokens, now),
            Answer::Status(401)
        );
        let issued = answer(Some(&mine), &put(Some("5"), false), &mut tokens, now);
        assert!(
            matches!(
                &issued,
                Answer::Token {
                    ttl_secs: 5,
                    hop_limit: 3,
                    ..
                }
            ),
            "{issued:?}"
        );
        let t = token(issued);
        assert_eq!(
            answer(Some(&mine), &get(path, Some(&t)), &mut tokens, now),
            Answer::Body(b"i-1".to_vec())
        );
        assert_eq!(
            answer(Some(&other), &get(path, Some(&t)), &mut tokens, now),
            Answer::Status(401),
            "another instance's token"
        );
        let later = now + Duration::from_secs(5);
        assert_eq!(
            answer(Some(&mine), &get(path, Some(&t)), &mut tokens, later),
            Answer::Status(401),
            "expired"
        );
    }

    #[test]
    fn token_requests_are_checked_as_ec2_checks_them() {
        let f = facts("i-1", MetadataOptions::default());
        let mut tokens = Tokens::default();
        let now = Instant::now();
        for ttl in [None, Some("0"), Some("21601"), Some("soon")] {
            assert_eq!(
                answer(Some(&f), &put(ttl, false), &mut tokens, now),
                Answer::Status(400),
                "{ttl:?}"
            );
        }
        assert!(matches!(
            answer(Some(&f), &put(Some("21600"), false), &mut tokens, now),
            Answer::Token { .. }
        ));
        assert_eq!(
            answer(Some(&f), &put(Some("60"), true), &mut tokens, now),
            Answer::Status(403)
        );
        let mut get_token = get("/latest/api/token", None);
        assert_eq!(
            answer(Some(&f), &get_token, &mut tokens, now),
            Answer::Status(405)
        );
        get_token.method = "DELETE";
        get_token.path = "/latest/meta-data/";
        assert_eq!(
            answer(Some(&f), &get_token, &mut tokens, now),
            Answer::Status(405)
        );
    }

    #[test]
    fn a_disabled_endpoint_or_a_stranger_gets_silence() {
        let off = facts(
            "i-1",
            MetadataOptions {
                http_endpoint: Switch::Disabled,
                ..MetadataOptions::default()
            },
        );
        let mut tokens = Tokens::default();
        let now = Instant::now();
        let asked = get("/latest/meta-data/instance-id", None);
        assert_eq!(
            answer(Some(&off), &asked, &mut tokens, now),
            Answer::Silence
        );
        assert_eq!(answer(None, &asked, &mut tokens, now), Answer::Silence);
        assert_eq!(
            answer(Some(&off), &put(Some("60"), false), &mut tokens, now),
            Answer::Silence
        );
    }
}
