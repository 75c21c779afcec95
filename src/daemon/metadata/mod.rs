//! The instance metadata service (IMDS) in the daemon: in every VPC's
//! namespace, a socket on 169.254.169.254:80 (the address is part of
//! the VPC's desired state, on its loopback) served by hyper. The
//! instance asking is the one whose port has the connection's source
//! address: anti-spoofing pins each port's address and MAC, and the VPC
//! firewall lets a port reach the service only from its own address, so
//! no header an instance could forge is ever believed. What it answers
//! is `request::answer` over `cloud::metadata`.

mod request;
mod tokens;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::Told;
use crate::cloud::Error;
use crate::cloud::lifecycle::Context;
use crate::cloud::metadata::{self, ADDRESS, Facts};
use crate::cloud::store::Store;
use crate::cloud::vpc::network::Vpc;
use crate::host::netns::{self, Netns};
use request::{Answer, Asked};
use tokens::Tokens;

/// The service's port, as on EC2.
const PORT: u16 = 80;

/// How often the VPCs served are compared with the store's: a new VPC
/// is served within this, a deleted one stops being.
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Connections open at once: from one instance, and into one VPC. The
/// guest is hostile: one opening connections in a loop is refused more,
/// and cannot take the daemon's descriptors from the other VPCs, the EC2
/// endpoint or the reconciler.
const CONNECTIONS_PER_INSTANCE: usize = 16;
const CONNECTIONS_PER_VPC: usize = 256;
/// How long a connection may last, kept alive or not: a metadata
/// exchange takes milliseconds.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// What every connection shares: the store (read only) and the tokens.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    tokens: Mutex<Tokens>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere left the data as it was: a read or an insert.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The facts of the instance at `address` in `vpc`, read on a thread
    /// that may block.
    async fn facts(
        self: &Arc<Self>,
        vpc: &str,
        address: Ipv4Addr,
    ) -> Result<Option<Facts>, String> {
        let shared = self.clone();
        let vpc = vpc.to_owned();
        tokio::task::spawn_blocking(move || {
            lock(&shared.store)
                .read(|tx| metadata::facts(tx, &vpc, address))
                .map_err(|e: Error| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// One VPC's listener.
#[derive(Debug)]
struct Served {
    /// The namespace it listens in (device and inode of its file): a VPC
    /// namespace made again needs a new socket.
    namespace: (u64, u64),
    task: JoinHandle<()>,
}

/// Serves the metadata of every VPC of the store in `ctx` until the
/// runtime ends.
pub async fn serve(ctx: Context) {
    let store = match ctx.open_store() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("gureum daemon: no metadata service: {e}");
            return;
        }
    };
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        tokens: Mutex::new(Tokens::default()),
    });
    let mut served: HashMap<String, Served> = HashMap::new();
    let mut told = Told::default();
    let mut ticks = tokio::time::interval(SYNC_EVERY);
    loop {
        ticks.tick().await;
        let reader = shared.clone();
        let vpcs = tokio::task::spawn_blocking(move || {
            lock(&reader.store).read(|tx| tx.list::<Vpc>().map_err(Error::from))
        })
        .await;
        let vpcs = match vpcs {
            Ok(Ok(vpcs)) => vpcs,
            Ok(Err(e)) => {
                eprintln!("gureum daemon: metadata: cannot list the VPCs: {e}");
                continue;
            }
            Err(e) => {
                eprintln!("gureum daemon: metadata: cannot list the VPCs: {e}");
                continue;
            }
        };
        served.retain(|id, s| {
            let keep = vpcs.iter().any(|v| v.id == *id);
            if !keep {
                s.task.abort();
            }
            keep
        });
        for vpc in &vpcs {
            let result = sync(&shared, &mut served, vpc);
            told.outcome("metadata: not serving", &vpc.id, result);
        }
    }
}

/// Makes sure `vpc` has a listener in its current namespace.
fn sync(
    shared: &Arc<Shared>,
    served: &mut HashMap<String, Served>,
    vpc: &Vpc,
) -> Result<(), String> {
    let path = std::path::Path::new(netns::NETNS_DIR).join(&vpc.netns);
    let namespace = match std::fs::metadata(&path) {
        Ok(m) => (m.dev(), m.ino()),
        Err(e) => {
            if let Some(old) = served.remove(&vpc.id) {
                old.task.abort();
            }
            return Err(format!("its namespace {} is not there ({e})", vpc.netns));
        }
    };
    if let Some(s) = served.get(&vpc.id) {
        if s.namespace == namespace && !s.task.is_finished() {
            return Ok(());
        }
    }
    if let Some(old) = served.remove(&vpc.id) {
        old.task.abort();
    }
    let listener = bind(&vpc.netns)?;
    let task = tokio::spawn(accept(shared.clone(), vpc.id.clone(), listener));
    served.insert(vpc.id.clone(), Served { namespace, task });
    Ok(())
}

/// A socket on the metadata address in namespace `name`.
fn bind(name: &str) -> Result<TcpListener, String> {
    let netns = Netns::open(name).map_err(|e| e.to_string())?;
    let address = SocketAddrV4::new(ADDRESS, PORT);
    let listener = netns
        .run(|| std::net::TcpListener::bind(address))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot listen on {address} in {name}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the socket in {name} non-blocking: {e}"))?;
    TcpListener::from_std(listener).map_err(|e| format!("cannot serve the socket in {name}: {e}"))
}

/// The connections open in one VPC, by instance address.
#[derive(Debug, Default)]
struct Open(Mutex<HashMap<Ipv4Addr, usize>>);

/// One open connection, counted until it is dropped.
struct Counted {
    open: Arc<Open>,
    source: Ipv4Addr,
}

impl Open {
    /// Counts a connection from `source`, if neither it nor the VPC has
    /// its fill.
    fn admit(self: &Arc<Self>, source: Ipv4Addr) -> Option<Counted> {
        let mut open = lock(&self.0);
        let total: usize = open.values().sum();
        let mine = open.entry(source).or_default();
        if *mine >= CONNECTIONS_PER_INSTANCE || total >= CONNECTIONS_PER_VPC {
            return None;
        }
        *mine += 1;
        Some(Counted {
            open: self.clone(),
            source,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = lock(&self.open.0);
        if let Some(count) = open.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// Accepts connections from `vpc`'s instances.
async fn accept(shared: Arc<Shared>, vpc: String, listener: TcpListener) {
    let open = Arc::new(Open::default());
    loop {
        match listener.accept().await {
            Ok((stream, SocketAddr::V4(peer))) => {
                // Over the limit: closed at once, unanswered.
                let Some(counted) = open.admit(*peer.ip()) else {
                    continue;
                };
                let serve = connection(shared.clone(), vpc.clone(), stream, *peer.ip());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve).await;
                    drop(counted);
                });
            }
            // IPv6 is not served (nor routed) in VPCs.
            Ok(_) => {}
            Err(e) => {
                // Out of descriptors, or a client gone before accept.
                eprintln!("gureum daemon: metadata: cannot accept in {vpc}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why a connection is closed unanswered.
#[derive(Debug, thiserror::Error)]
#[error("the metadata service does not answer this sender")]
struct Silence;

/// Serves one connection of the instance at `source`.
async fn connection(shared: Arc<Shared>, vpc: String, stream: TcpStream, source: Ipv4Addr) {
    // A second handle on the socket, to set the TTL of a token's packets
    // (the hop limit) while hyper owns the stream.
    let socket = match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Arc::new(std::net::TcpStream::from(fd)),
        Err(e) => {
            eprintln!("gureum daemon: metadata: cannot serve {source}: {e}");
            return;
        }
    };
    let service = service_fn(move |request| {
        let (shared, vpc, socket) = (shared.clone(), vpc.clone(), socket.clone());
        async move { respond(&shared, &vpc, source, &socket, &request).await }
    });
    // A client that hangs up, or one told nothing, is no error of ours.
    // One that shuts its sending side after the request (a shell's `nc`)
    // still gets its answer.
    let _ = http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The header `name` of `request`, if it is text.
fn header<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn respond(
    shared: &Arc<Shared>,
    vpc: &str,
    source: Ipv4Addr,
    socket: &std::net::TcpStream,
    request: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Silence> {
    let facts = match shared.facts(vpc, source).await {
        Ok(facts) => facts,
        Err(e) => {
            eprintln!("gureum daemon: metadata: cannot read the store for {source}: {e}");
            return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()));
        }
    };
    let asked = Asked {
        method: request.method().as_str(),
        path: request.uri().path(),
        ttl: header(request, "x-aws-ec2-metadata-token-ttl-seconds"),
        token: header(request, "x-aws-ec2-metadata-token"),
        forwarded: request.headers().contains_key("x-forwarded-for"),
    };
    let answer = request::answer(
        facts.as_ref(),
        &asked,
        &mut lock(&shared.tokens),
        Instant::now(),
    );
    Ok(match answer {
        Answer::Silence => return Err(Silence),
        Answer::Body(body) => reply(StatusCode::OK, Bytes::from(body)),
        Answer::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            reply(status, Bytes::from(status.canonical_reason().unwrap_or("")))
        }
        Answer::Token {
            token,
            ttl_secs,
            hop_limit,
        } => {
            if let Err(e) = socket.set_ttl(u32::from(hop_limit)) {
                eprintln!("gureum daemon: metadata: cannot set the hop limit for {source}: {e}");
            }
            let mut response = reply(StatusCode::OK, Bytes::from(token));
            response.headers_mut().insert(
                "x-aws-ec2-metadata-token-ttl-seconds",
                hyper::header::HeaderValue::from(ttl_secs),
            );
            response
        }
        Answer::Failed(why) => {
            eprintln!("gureum daemon: metadata: {why}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new())
        }
    })
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_per_instance_and_per_vpc() {
        let open = Arc::new(Open::default());
        let a = Ipv4Addr::new(10, 0, 1, 10);
        let mut held: Vec<Counted> = (0..CONNECTIONS_PER_INSTANCE)
            .map(|_| open.admit(a).unwrap())
            .collect();
        assert!(open.admit(a).is_none(), "a's fill is reached");
        let b = open.admit(Ipv4Addr::new(10, 0, 1, 11));
        assert!(b.is_some(), "another instance is still served");
        held.pop();
        assert!(open.admit(a).is_some(), "a closed one makes room");
        drop((held, b));
        assert!(
            lock(&open.0).is_empty(),
            "every count goes with its connection"
        );
        let many: Vec<Counted> = (0..CONNECTIONS_PER_VPC)
            .map(|n| {
                let host = u8::try_from(n / CONNECTIONS_PER_INSTANCE).unwrap();
                open.admit(Ipv4Addr::new(10, 0, 2, host)).unwrap()
            })
            .collect();
        assert!(
            open.admit(Ipv4Addr::new(10, 0, 3, 1)).is_none(),
            "the VPC's fill"
        );
        drop(many);
    }
}
