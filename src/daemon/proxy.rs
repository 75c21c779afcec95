//! Application load balancers' HTTP proxies, in the daemon: for each
//! application balancer, a thread that enters the balancer's namespace
//! and serves its listeners there on a runtime of its own (hyper, HTTP/1.1),
//! so that the listening sockets are on the balancer's addresses and the
//! connections to targets leave from them, across the VPC's router:
//! the balancer's security groups judge what comes in, the targets'
//! what it sends, as for an instance.
//!
//! A request goes to the first listener rule by priority that matches
//! it, else to the listener's default target group, and to that group's
//! healthy targets in turn (round robin), with `X-Forwarded-For`
//! (appended to), `X-Forwarded-Proto` and `X-Forwarded-Port`. A group
//! with no healthy target answers 503, a target that cannot be reached
//! or fails mid-answer 502, one that does not answer in time 504, as
//! ELBv2's do.
//!
//! What each proxy serves (`cloud::elb::routes`) is read from the store
//! every `SYNC_EVERY` and handed to its thread, which changes its
//! sockets when the addresses or ports changed and routes each request
//! by the newest table: health and rule changes take effect without a
//! restart or a dropped connection. Threads rather than a process per
//! balancer: the table changes with every health transition, and nothing
//! outlives the daemon (its sockets close with it), so a daemon killed
//! leaves nothing for the next one or the reconciler to find.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::Told;
use crate::cloud::elb::routes::{self, Proxy};
use crate::cloud::elb::rule::Asked;
use crate::cloud::lifecycle::Context;
use crate::host::netns::{self, Netns};

/// How often the proxies are compared with the store: a rule or health
/// change is followed within this.
const SYNC_EVERY: Duration = Duration::from_millis(500);
/// How often a proxy tries again to listen where it could not (its
/// address not there yet).
const RETRY_BIND: Duration = Duration::from_secs(1);
/// Connections one balancer serves at once; more are closed at once.
const CONNECTIONS: usize = 1024;
/// How long a client has to send a request's head (ELBv2's idle
/// timeout is 60 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a target has to start its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers of one hop only (RFC 9110 7.6.1), not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One balancer's running proxy.
struct Running {
    /// Its namespace (device and inode): one made again needs a new
    /// thread.
    namespace: (u64, u64),
    table: watch::Sender<Arc<Proxy>>,
    thread: JoinHandle<Result<(), netns::Error>>,
}

/// Serves every application load balancer of the store in `ctx`, on a
/// thread of its own, for as long as the daemon runs.
pub fn start(ctx: Context) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("elb-proxy".into())
        .spawn(move || supervise(&ctx))
        .map(drop)
}

fn supervise(ctx: &Context) {
    let mut store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no application load balancers: {e}");
            return;
        }
    };
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut told = Told::default();
    loop {
        match store.read(routes::proxies) {
            Ok(proxies) => {
                // A dropped sender ends its thread.
                running.retain(|id, _| proxies.iter().any(|p| p.id == *id));
                told.retain(|id| proxies.iter().any(|p| p.id == id));
                for proxy in proxies {
                    let id = proxy.id.clone();
                    let result = sync(&mut running, proxy);
                    told.outcome("load balancer proxy of", &id, result);
                }
            }
            Err(e) => eprintln!("gureum daemon: proxies: cannot read the load balancers: {e}"),
        }
        std::thread::sleep(SYNC_EVERY);
    }
}

/// Makes sure `proxy` is served, by the newest table, in its current
/// namespace.
fn sync(running: &mut HashMap<String, Running>, proxy: Proxy) -> Result<(), String> {
    let path = Path::new(netns::NETNS_DIR).join(&proxy.netns);
    let namespace = match std::fs::metadata(&path) {
        Ok(m) => (m.dev(), m.ino()),
        Err(e) => {
            running.remove(&proxy.id);
            return Err(format!("its namespace {} is not there ({e})", proxy.netns));
        }
    };
    if let Some(now) = running.get(&proxy.id) {
        if now.namespace == namespace && !now.thread.is_finished() {
            now.table.send_if_modified(|table| {
                let changed = **table != proxy;
                if changed {
                    *table = Arc::new(proxy);
                }
                changed
            });
            return Ok(());
        }
    }
    if let Some(old) = running.remove(&proxy.id) {
        drop(old.table);
        if old.thread.is_finished() {
            match old.thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("gureum daemon: proxy of {}: {e}", proxy.id),
                Err(_) => eprintln!("gureum daemon: proxy of {} panicked", proxy.id),
            }
        }
    }
    let netns = Netns::open(&proxy.netns).map_err(|e| e.to_string())?;
    let id = proxy.id.clone();
    let (table, watched) = watch::channel(Arc::new(proxy));
    let name = id.clone();
    let thread = netns
        .spawn(move || serve_balancer(&name, watched))
        .map_err(|e| e.to_string())?;
    running.insert(
        id,
        Running {
            namespace,
            table,
            thread,
        },
    );
    Ok(())
}

/// What every connection of one balancer shares.
struct Shared {
    table: watch::Receiver<Arc<Proxy>>,
    /// The next target of each group, for round robin.
    turns: Mutex<HashMap<String, usize>>,
    slots: Arc<Semaphore>,
}

impl Shared {
    /// The next of `targets` of `group`, if it has any.
    fn pick(&self, group: &str, targets: &[SocketAddrV4]) -> Option<SocketAddrV4> {
        if targets.is_empty() {
            return None;
        }
        let mut turns = self
            .turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let turn = turns.entry(group.to_owned()).or_default();
        let picked = targets.get(*turn % targets.len()).copied();
        *turn = turn.wrapping_add(1);
        picked
    }
}

/// Runs, inside the balancer's namespace, until its table's sender is
/// dropped.
fn serve_balancer(id: &str, table: watch::Receiver<Arc<Proxy>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gureum daemon: proxy of {id}: cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(listen(id, table));
}

/// Keeps a socket on each of the balancer's addresses and listener ports.
async fn listen(id: &str, mut table: watch::Receiver<Arc<Proxy>>) {
    let shared = Arc::new(Shared {
        table: table.clone(),
        turns: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(CONNECTIONS)),
    });
    let mut bound: HashMap<SocketAddrV4, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut told: Option<String> = None;
    loop {
        let wanted = table.borrow_and_update().sockets();
        bound.retain(|address, task| {
            let keep = wanted.contains(address) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let mut failed = Vec::new();
        for address in wanted {
            if bound.contains_key(&address) {
                continue;
            }
            match TcpListener::bind(address).await {
                Ok(listener) => {
                    let task = tokio::spawn(accept(listener, address.port(), shared.clone()));
                    bound.insert(address, task);
                }
                Err(e) => failed.push(format!("cannot listen on {address}: {e}")),
            }
        }
        let now = (!failed.is_empty()).then(|| failed.join("; "));
        if now.is_some() && now != told {
            eprintln!(
                "gureum daemon: proxy of {id}: {}; trying again",
                now.as_deref().unwrap_or_default()
            );
        }
        told = now;
        // A change, or time to try a failed socket again; an error: its
        // balancer is gone (the supervisor dropped the sender).
        if let Ok(Err(_)) = tokio::time::timeout(RETRY_BIND, table.changed()).await {
            break;
        }
    }
    for task in bound.values() {
        task.abort();
    }
}

/// Accepts the connections of listener `port` on `listener`.
async fn accept(listener: TcpListener, port: u16, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // A kept-alive client's next answer must not wait for its
                // delayed ACK of the last (Nagle): 40 ms a request.
                let _ = stream.set_nodelay(true);
                // Over the limit: closed at once, unanswered.
                let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    connection(stream, peer, port, shared).await;
                    drop(slot);
                });
            }
            Err(_) => {
                // Out of descriptors, or a client gone before accept.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one client connection, request after request.
async fn connection(stream: TcpStream, peer: SocketAddr, port: u16, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(forward(&shared, request, peer, port).await) }
    });
    // A client that hangs up or sends nonsense is no error of ours.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Body = Either<Incoming, Full<Bytes>>;

/// The balancer's own answer `status`.
fn answer(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Why a target gave no answer.
enum Failed {
    Unreachable,
    Timeout,
}

/// Sends `request` from `peer` on listener `port` to a target, and its
/// answer back.
async fn forward(
    shared: &Shared,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    port: u16,
) -> Response<Body> {
    let table = shared.table.borrow().clone();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let asked = Asked {
        path: request.uri().path(),
        host,
    };
    let Some((group, targets)) = table.route(port, &asked) else {
        // The listener went while the connection was open.
        return answer(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some(target) = shared.pick(group, targets) else {
        return answer(StatusCode::SERVICE_UNAVAILABLE);
    };
    prepare(&mut request, peer, port);
    if !request.headers().contains_key(header::HOST) {
        // An HTTP/1.0 client may send none; HTTP/1.1 to the target wants one.
        if let Ok(value) = HeaderValue::from_str(&target.to_string()) {
            request.headers_mut().insert(header::HOST, value);
        }
    }
    match send(target, request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Left(body))
        }
        Err(Failed::Unreachable) => answer(StatusCode::BAD_GATEWAY),
        Err(Failed::Timeout) => answer(StatusCode::GATEWAY_TIMEOUT),
    }
}

/// Makes the client's request the one to a target: HTTP/1.1 in origin
/// form, without hop-by-hop headers, with the X-Forwarded ones.
fn prepare(request: &mut Request<Incoming>, peer: SocketAddr, port: u16) {
    let origin = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = origin.parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    drop_hop_by_hop(headers);
    forwarded_headers(headers, peer, port);
}

/// Adds the client's address to X-Forwarded-For (after any there), and
/// X-Forwarded-Proto and X-Forwarded-Port.
fn forwarded_headers(headers: &mut HeaderMap, peer: SocketAddr, port: u16) {
    const FOR: &str = "x-forwarded-for";
    let client = peer.ip().to_string();
    let before: Vec<&str> = headers
        .get_all(FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let chain = if before.is_empty() {
        client.clone()
    } else {
        format!("{}, {client}", before.join(", "))
    };
    let value = HeaderValue::from_str(&chain)
        .or_else(|_| HeaderValue::from_str(&client))
        .ok();
    if let Some(value) = value {
        headers.insert(FOR, value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-port", HeaderValue::from(port));
}

/// Removes the hop-by-hop headers, and those the Connection header names.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// One exchange with `target` on a connection of its own, made in the
/// balancer's namespace (this thread's).
async fn send(
    target: SocketAddrV4,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, Failed> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| Failed::Timeout)?
        .map_err(|_| Failed::Unreachable)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, exchange) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failed::Unreachable)?;
    // Drives the connection until the answer's body is read.
    tokio::spawn(exchange);
    tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| Failed::Timeout)?
        .map_err(|_| Failed::Unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_appended_to_and_hop_by_hop_headers_go() {
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut headers = HeaderMap::new();
        forwarded_headers(&mut headers, peer, 80);
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-port"], "80");
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        forwarded_headers(&mut headers, peer, 8080);
        drop_hop_by_hop(&mut headers);
        assert_eq!(
            headers["x-forwarded-for"],
            "198.51.100.1, 10.0.0.9, 192.0.2.7"
        );
        assert_eq!(headers["x-forwarded-port"], "8080");
        assert!(!headers.contains_key("x-secret"));
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key(header::UPGRADE));
        assert_eq!(headers[header::HOST], "example.com");
    }

    #[test]
    fn targets_take_turns_per_group() {
        let (_keep, table) = watch::channel(Arc::new(Proxy {
            id: String::new(),
            netns: String::new(),
            addresses: vec![],
            listeners: vec![],
            groups: Default::default(),
        }));
        let shared = Shared {
            table,
            turns: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(1)),
        };
        let t = |n| SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, n), 80);
        let both = [t(1), t(2)];
        let picked: Vec<_> = (0..4).map(|_| shared.pick("a", &both).unwrap()).collect();
        assert_eq!(picked, [t(1), t(2), t(1), t(2)]);
        assert_eq!(
            shared.pick("b", &both),
            Some(t(1)),
            "each group its own turn"
        );
        assert_eq!(shared.pick("a", &[]), None);
    }
}
