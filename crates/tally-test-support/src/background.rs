//! A server under test in this process, on a tokio runtime of its own, for a test that talks to
//! it the blocking way (real sockets, `ureq`, raw HTTP).

use std::future::Future;
use std::net::SocketAddr;

/// A multi-threaded runtime (two workers) that runs what is spawned on it until it is dropped.
pub fn background_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Binds a listener on a free loopback port, spawns `serve(listener)` on `runtime`, and returns
/// the address.
pub fn serve_on_loopback<F>(
    runtime: &tokio::runtime::Runtime,
    serve: impl FnOnce(tokio::net::TcpListener) -> F,
) -> SocketAddr
where
    F: Future<Output = ()> + Send + 'static,
{
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(serve(listener));
        addr
    })
}

/// `router` served by `tally-service`'s listener with these limits on a free loopback port, on
/// a runtime of its own (returned: the server runs until it is dropped), never shut down.
#[cfg(feature = "service")]
pub fn serve_router(
    router: axum::Router,
    limits: tally_service::serve::Limits,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = background_runtime();
    let addr = serve_router_on(&runtime, router, limits);
    (addr, runtime)
}

/// [`serve_router`] on `runtime` (where the router's state was made, with what it spawned).
#[cfg(feature = "service")]
pub fn serve_router_on(
    runtime: &tokio::runtime::Runtime,
    router: axum::Router,
    limits: tally_service::serve::Limits,
) -> SocketAddr {
    serve_on_loopback(runtime, |listener| {
        tally_service::serve::serve(
            listener,
            router,
            limits,
            std::future::pending(),
            std::time::Duration::ZERO,
        )
    })
}
