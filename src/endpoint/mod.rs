//! The daemon's Query API endpoint: EC2 (version 2016-11-15) over HTTP,
//! so that the aws CLI, boto3 and Terraform drive gureum. One more front
//! end over the core API: requests become `cloud::api::Action`s run by
//! the daemon's executor, answers become EC2's XML.
//!
//! A request is routed by the service of its SigV4 credential scope
//! (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`); the region comes
//! from it too.

pub mod autoscaling;
pub mod ec2;
pub mod elbv2;
pub mod error;
pub mod iam;
pub mod params;
pub mod sts;
mod xml;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ssh_key::rand_core::{OsRng, RngCore};
use tokio::net::TcpListener;

use crate::cloud::iam::{SignedRequest, authenticate};
use crate::cloud::lifecycle::Context;
use crate::daemon::Executor;
use error::Ec2Error;
use params::Params;

/// Where the endpoint listens unless told otherwise: the port
/// EC2-compatible endpoints have used since Eucalyptus.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8773";

/// The largest request body read (RunInstances' user data is at most
/// 16 KiB; nothing EC2 takes comes near this).
const MAX_BODY: usize = 1 << 20;

/// One answer: an HTTP status and the whole XML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    fn error(e: &Ec2Error, request_id: &str) -> Self {
        Self {
            status: e.status,
            body: e.document(request_id),
        }
    }
}

/// What serving a request needs.
#[derive(Debug)]
struct Endpoint {
    executor: Executor,
    ctx: Context,
}

/// Serves `listener` until the runtime ends; each connection on a task
/// of its own, each request's actions on a blocking thread.
pub async fn serve(listener: TcpListener, executor: Executor, ctx: Context) {
    let endpoint = Arc::new(Endpoint { executor, ctx });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, or a client gone before accept: the
                // listener itself is fine.
                eprintln!("gureum daemon: endpoint: cannot accept a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(endpoint.clone(), request));
            // A client that hangs up mid-request is no error of ours.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `address` for `serve`.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

async fn answer(
    endpoint: Arc<Endpoint>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = request_id();
    let (parts, body) = request.into_parts();
    let reply = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            let query = parts.uri.query().unwrap_or("");
            let params = Params::parse(query.as_bytes(), &body);
            let authorization = parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let received = Received {
                method: parts.method.as_str().to_owned(),
                path: parts.uri.path().to_owned(),
                query: query.to_owned(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        (k.as_str().to_owned(), value)
                    })
                    .collect(),
                body,
            };
            dispatch(&endpoint, received, params, authorization, &request_id).await
        }
        Err(e) => Reply::error(
            &Ec2Error::client(
                "InvalidRequest",
                format!("the request body could not be read (at most {MAX_BODY} bytes): {e}"),
            ),
            &request_id,
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    Ok(response)
}

/// The parts of a request SigV4 covers, owned by the thread that checks
/// them.
struct Received {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

async fn dispatch(
    endpoint: &Arc<Endpoint>,
    received: Received,
    params: Params,
    authorization: Option<&str>,
    request_id: &str,
) -> Reply {
    // The service as the request states it, for the envelope of an error
    // found before its signature is checked.
    let scope = match Scope::of(authorization, &params) {
        Ok(scope) => scope,
        Err(e) => return Reply::error(&e, request_id),
    };
    let endpoint = endpoint.clone();
    let id = request_id.to_owned();
    let running = tokio::task::spawn_blocking(move || {
        let signed = SignedRequest {
            method: &received.method,
            path: &received.path,
            query: &received.query,
            headers: &received.headers,
            body: &received.body,
        };
        let who = match authenticate(&endpoint.ctx, &signed, SystemTime::now()) {
            Ok(who) => who,
            Err(e) => {
                return match scope.service.as_str() {
                    "iam" => iam::refused(&e, &id),
                    "sts" => sts::refused(&e, &id),
                    "elasticloadbalancing" => elbv2::refused(&e, &id),
                    "autoscaling" => autoscaling::refused(&e, &id),
                    _ => Reply::error(&Ec2Error::new(e.code(), e.to_string(), e.status()), &id),
                };
            }
        };
        match who.service.as_str() {
            "ec2" => ec2::handle(
                &endpoint.ctx,
                &endpoint.executor,
                &who.caller,
                &who.region,
                &params,
                &id,
            ),
            "iam" => iam::handle(&endpoint.ctx, &who.caller, params.pairs(), &id),
            "sts" => sts::handle(&endpoint.ctx, &who.caller, params.pairs(), &id),
            "elasticloadbalancing" => elbv2::handle(
                &endpoint.ctx,
                &endpoint.executor,
                &who.caller,
                params.pairs(),
                &id,
            ),
            "autoscaling" => autoscaling::handle(
                &endpoint.ctx,
                &endpoint.executor,
                &who.caller,
                params.pairs(),
                &id,
            ),
            other => Reply::error(
                &Ec2Error::client(
                    "InvalidAction",
                    format!(
                        "this endpoint does not serve the service '{other}' (it serves ec2, \
                         elasticloadbalancing, autoscaling, iam and sts)"
                    ),
                ),
                &id,
            ),
        }
    })
    .await;
    running.unwrap_or_else(|e| {
        Reply::error(
            &Ec2Error::new("InternalError", format!("the request failed: {e}"), 500),
            request_id,
        )
    })
}

/// A Query API whose operations are core actions run by the daemon's
/// executor (ELBv2, Auto Scaling): the request's `Action`, allowed by
/// `authorize` as `SERVICE:ACTION` (on `*`: policies name these
/// services' resources by ARN, which this does not match yet), then run
/// and answered in the service's envelope.
struct Service {
    /// The IAM service prefix.
    name: &'static str,
    namespace: &'static str,
    /// The service's error for a failed core action.
    failure: fn(crate::cloud::api::ApiError) -> iam::Failure,
}

impl Service {
    fn handle(
        &self,
        ctx: &Context,
        caller: &crate::cloud::iam::Caller,
        params: &[(String, String)],
        request_id: &str,
        run: impl FnOnce(&iam::Params<'_>, &str) -> Result<Option<iam::Xml>, iam::Failure>,
    ) -> Reply {
        let params = iam::Params(params);
        let action = params.get("Action").unwrap_or_default();
        let outcome =
            crate::cloud::iam::authorize(ctx, caller, &format!("{}:{action}", self.name), "*")
                .map_err(self.failure)
                .and_then(|()| run(&params, action));
        iam::answer(self.namespace, action, request_id, outcome)
    }
}

fn missing(name: &str) -> iam::Failure {
    iam::Failure::new(
        400,
        "ValidationError",
        format!("the parameter {name} is required"),
    )
}

/// Parameter `name`, required.
fn need(params: &iam::Params<'_>, name: &str) -> Result<String, iam::Failure> {
    params
        .get(name)
        .map(str::to_owned)
        .ok_or_else(|| missing(name))
}

/// Parameter `name` as a number (or another `FromStr`), if given.
fn number<T: std::str::FromStr>(
    params: &iam::Params<'_>,
    name: &str,
) -> Result<Option<T>, iam::Failure> {
    params
        .get(name)
        .map(|text| {
            text.parse().map_err(|_| {
                iam::Failure::new(
                    400,
                    "ValidationError",
                    format!("{name} '{text}' is not valid"),
                )
            })
        })
        .transpose()
}

/// The values of list `name` (`NAME.member.1`, `NAME.member.2`, ...).
fn members(params: &iam::Params<'_>, name: &str) -> Vec<String> {
    (1..)
        .map_while(|n| params.get(&format!("{name}.member.{n}")).map(str::to_owned))
        .collect()
}

/// `Tags.member.N.Key` / `.Value`.
fn tags(params: &iam::Params<'_>) -> crate::cloud::tags::Tags {
    (1..)
        .map_while(|n| {
            let key = params.get(&format!("Tags.member.{n}.Key"))?;
            let value = params.get(&format!("Tags.member.{n}.Value")).unwrap_or("");
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

fn unexpected() -> iam::Failure {
    iam::Failure::new(
        500,
        "InternalFailure",
        "the core API answered with another kind of record",
    )
}

/// The service and region a request is signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    service: String,
    region: String,
}

impl Scope {
    /// From the Authorization header, or the presigned query's
    /// `X-Amz-Credential`.
    fn of(authorization: Option<&str>, params: &Params) -> Result<Self, Ec2Error> {
        let credential = authorization
            .and_then(|a| a.split_once("Credential=").map(|(_, rest)| rest))
            .map(|rest| rest.split([',', ' ']).next().unwrap_or(rest))
            .or_else(|| params.get("X-Amz-Credential"))
            .ok_or_else(|| {
                Ec2Error::new(
                    "MissingAuthenticationToken",
                    "the request is not signed: give it AWS credentials (SigV4)",
                    401,
                )
            })?;
        let parts: Vec<&str> = credential.split('/').collect();
        match parts.as_slice() {
            [_key, _date, region, service, "aws4_request"] => Ok(Self {
                service: (*service).to_owned(),
                region: (*region).to_owned(),
            }),
            _ => Err(Ec2Error::client(
                "IncompleteSignature",
                format!(
                    "the credential '{credential}' is not KEY/DATE/REGION/SERVICE/aws4_request"
                ),
            )),
        }
    }
}

/// A new request ID, shaped as EC2's (a UUID).
fn request_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or("");
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_names_service_and_region() {
        let header = "AWS4-HMAC-SHA256 Credential=AKID/20261203/eu-west-1/ec2/aws4_request, \
                      SignedHeaders=host;x-amz-date, Signature=abc";
        let scope = Scope::of(Some(header), &Params::default()).unwrap();
        assert_eq!(scope.service, "ec2");
        assert_eq!(scope.region, "eu-west-1");
        let presigned = Params::parse(
            b"X-Amz-Credential=AKID%2F20261203%2Fus-east-1%2Fsts%2Faws4_request",
            b"",
        );
        assert_eq!(Scope::of(None, &presigned).unwrap().service, "sts");
        assert_eq!(
            Scope::of(None, &Params::default()).unwrap_err().code,
            "MissingAuthenticationToken"
        );
        assert_eq!(request_id().len(), 36);
    }
}
