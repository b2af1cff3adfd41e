//! `peer/tarpc` and `peer/tonic`: the same `add(a, b)` call as
//! `conduit/rpc-uds`, through tarpc and through gRPC (tonic), each over a
//! Unix socket, the server in the peer process.
//!
//! How each is set up (the way its own examples run it):
//! - **tarpc** 0.37: its `serde_transport` (length-delimited frames) with
//!   postcard as the serde format — conduit's own format, so the two differ
//!   in the RPC layer alone (tarpc ships JSON and bincode formats; postcard
//!   encodes these messages smaller than either). Server: `BaseChannel` +
//!   `execute`, each response `tokio::spawn`ed, on tokio's multi-thread
//!   runtime (`#[tokio::main]`, as tarpc's examples).
//! - **tonic** 0.14: a gRPC unary call, HTTP/2 over the Unix socket (the
//!   `Endpoint::connect_with_connector` recipe of tonic's UDS example), prost
//!   messages; the service is written out as `tonic-build` would generate it
//!   (so no `protoc` is needed). Server: `transport::Server` on the
//!   multi-thread runtime.
//!
//! The bench side of both runs its calls on a one-thread runtime (one call
//! at a time blocks on it; the 64 in flight are tasks on it), as
//! `conduit/rpc-uds` runs its `async` calls.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::driver::{Measurement, Plan};
use crate::peer::{Peer, spawn_peer};
use crate::rpc_cases::{err, in_flight_on, measure_calls};

/// A private directory for the peer's socket, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(case: &str) -> io::Result<SocketDir> {
        let dir = std::env::temp_dir().join(format!("conduit-bench-{}-{}", std::process::id(), case.replace('/', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        Ok(SocketDir(dir))
    }

    fn socket(&self) -> PathBuf {
        self.0.join("rpc.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn current_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn multi_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Runs a case whose peer serves on a Unix socket at the path it is given:
/// waits until the peer is ready, measures with `run`, then stops the peer
/// (these servers serve until killed).
fn socket_case(
    name: &str,
    plan: Plan,
    tick: &mut dyn FnMut(),
    run: impl FnOnce(&std::path::Path, u32, Plan, &mut dyn FnMut()) -> io::Result<Measurement>,
) -> io::Result<Measurement> {
    let dir = SocketDir::new(name)?;
    let path = dir.socket();
    let peer = spawn_peer(name, &[path.to_string_lossy().into_owned()])?;
    let m = peer.wait_ready().and_then(|()| run(&path, peer.pid(), plan, tick));
    peer.stop(m)
}

// ---- tarpc ---------------------------------------------------------------

/// The benchmark's service, as tarpc declares it.
#[tarpc::service]
pub trait TarpcAdder {
    /// a + b.
    async fn add(a: i64, b: i64) -> i64;
}

#[derive(Clone)]
struct TarpcAdd;

impl TarpcAdder for TarpcAdd {
    async fn add(self, _: tarpc::context::Context, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}

/// postcard as a `tokio-serde` format for tarpc's serde transport.
struct Postcard<I, O>(std::marker::PhantomData<fn(O) -> I>);

impl<I, O> Default for Postcard<I, O> {
    fn default() -> Self {
        Postcard(std::marker::PhantomData)
    }
}

impl<I, O: serde::Serialize> tokio_serde::Serializer<O> for Postcard<I, O> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &O) -> Result<bytes::Bytes, io::Error> {
        postcard::to_stdvec(item).map(bytes::Bytes::from).map_err(io::Error::other)
    }
}

impl<I: serde::de::DeserializeOwned, O> tokio_serde::Deserializer<I> for Postcard<I, O> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &bytes::BytesMut) -> Result<I, io::Error> {
        postcard::from_bytes(src).map_err(io::Error::other)
    }
}

fn tarpc_transport<I, O>(
    stream: tokio::net::UnixStream,
) -> tarpc::serde_transport::Transport<tokio::net::UnixStream, I, O, Postcard<I, O>>
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
{
    let framed = tokio_util::codec::Framed::new(stream, tokio_util::codec::LengthDelimitedCodec::new());
    tarpc::serde_transport::new(framed, Postcard::default())
}

/// `peer/tarpc`.
pub fn tarpc_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    socket_case("peer/tarpc", plan, tick, |path, pid, plan, tick| {
        let rt = current_thread()?;
        let client = rt.block_on(async {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, io::Error>(TarpcAdderClient::new(tarpc::client::Config::default(), tarpc_transport(stream)).spawn())
        })?;
        let c = client.clone();
        measure_calls(
            "peer/tarpc",
            pid,
            plan,
            tick,
            |i| rt.block_on(client.add(tarpc::context::current(), i, 1)).map_err(err),
            |per_task| {
                in_flight_on(&rt, per_task, move |i| {
                    let c = c.clone();
                    async move { c.add(tarpc::context::current(), i, 1).await.map_err(err) }
                })
            },
        )
    })
}

/// The server of `peer/tarpc`.
pub fn tarpc_peer(p: &Peer) -> io::Result<()> {
    use futures_lite::StreamExt;
    use tarpc::server::Channel;

    let rt = multi_thread()?;
    rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(p.arg(0)?)?;
        p.ready()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let channel = tarpc::server::BaseChannel::with_defaults(tarpc_transport(stream));
            tokio::spawn(channel.execute(TarpcAdd.serve()).for_each(|answer| {
                tokio::spawn(answer);
            }));
        }
    })
}

// ---- tonic (gRPC) --------------------------------------------------------

/// `AddRequest { int64 a = 1; int64 b = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddRequest {
    /// a
    #[prost(int64, tag = "1")]
    pub a: i64,
    /// b
    #[prost(int64, tag = "2")]
    pub b: i64,
}

/// `AddReply { int64 sum = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddReply {
    /// a + b
    #[prost(int64, tag = "1")]
    pub sum: i64,
}

const ADD_PATH: &str = "/bench.Adder/Add";

/// The server side of `service Adder { rpc Add(AddRequest) returns (AddReply); }`.
#[derive(Clone)]
struct TonicAdder;

impl tonic::server::NamedService for TonicAdder {
    const NAME: &'static str = "bench.Adder";
}

struct AddMethod;

impl tonic::server::UnaryService<AddRequest> for AddMethod {
    type Response = AddReply;
    type Future = std::future::Ready<Result<tonic::Response<AddReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<AddRequest>) -> Self::Future {
        let r = request.into_inner();
        std::future::ready(Ok(tonic::Response::new(AddReply { sum: r.a.wrapping_add(r.b) })))
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for TonicAdder {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() == ADD_PATH {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<AddReply, AddRequest>::default());
                Ok(grpc.unary(AddMethod, req).await)
            })
        } else {
            Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// The client side: one unary call.
async fn tonic_add(channel: tonic::transport::Channel, a: i64, b: i64) -> io::Result<i64> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(err)?;
    let codec = tonic_prost::ProstCodec::<AddRequest, AddReply>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(ADD_PATH);
    let reply = grpc.unary(tonic::Request::new(AddRequest { a, b }), path, codec).await.map_err(err)?;
    Ok(reply.into_inner().sum)
}

/// `peer/tonic`.
pub fn tonic_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    socket_case("peer/tonic", plan, tick, |path, pid, plan, tick| {
        let rt = current_thread()?;
        let path = path.to_path_buf();
        let channel = rt.block_on(async move {
            // The authority is not used: every connection goes to the socket.
            tonic::transport::Endpoint::from_static("http://[::]:50051")
                .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                }))
                .await
                .map_err(err)
        })?;
        let c = channel.clone();
        measure_calls(
            "peer/tonic",
            pid,
            plan,
            tick,
            |i| rt.block_on(tonic_add(channel.clone(), i, 1)),
            |per_task| in_flight_on(&rt, per_task, move |i| tonic_add(c.clone(), i, 1)),
        )
    })
}

/// The server of `peer/tonic`.
pub fn tonic_peer(p: &Peer) -> io::Result<()> {
    let rt = multi_thread()?;
    rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(p.arg(0)?)?;
        p.ready()?;
        tonic::transport::Server::builder()
            .serve_with_incoming(TonicAdder, tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .map_err(err)
    })
}
