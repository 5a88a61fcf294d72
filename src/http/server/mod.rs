//! The accept loop: what stands between slow or hostile clients and the router.
//! - A client that does not send its request headers within the header timeout is cut off, so
//!   half-open requests cannot pile up.
//! - A connection is cut off once nothing moves on it for too long: the header timeout until
//!   its first request, then `idle_timeout` while no request is being handled, idle or stalled
//!   sending a response its client does not read (see `connections`).
//! - At most `max_connections` connections are open at once: beyond that, the oldest idle one
//!   makes room for the new one, or, when every one is answering a request, the new one is
//!   closed at once. At most `max_connections_per_address` are open from one address (an IPv6
//!   client counts by its /64, which one host usually holds whole).
//! - Shutdown stops accepting, lets in-flight requests finish within `shutdown_grace`, then
//!   cuts off whatever is left: a slow client cannot hold the process up.
//!
//! Requests in flight are bounded by the router (`Limits::max_in_flight`, and per client
//! `max_in_flight_per_client`, shed with 503).

use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service;

mod connections;
use connections::Connections;

pub use crate::config::ServerLimits as Limits;

/// Open connections per address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// A place for one more connection from `ip`, if it has fewer than `max` open.
    fn admit(open: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut counts = open.0.lock().ok()?;
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot { open: open.clone(), ip })
    }
}

/// One connection's place under its address's cap, given back when dropped.
struct AddressSlot {
    open: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.open.0.lock() {
            if let Some(count) = counts.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// How often the accept loop reaps finished connections and tidies what it keeps of them.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` resolves, then drains as described above.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = Connections::new(limits.max_connections);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let per_address = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = housekeeping.tick() => {
                // Finished connection tasks keep their memory until joined.
                while tasks.try_join_next().is_some() {}
                connections.tidy();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let ip = super::per_client::counted_address(peer.ip());
        let Some(address_slot) = PerAddress::admit(&per_address, ip, limits.max_connections_per_address) else {
            continue; // dropping the stream closes it
        };
        let Some(admitted) = connections.admit() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let activity = admitted.activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let (in_flight, handling) = activity.request();
            let mut router = router.clone();
            async move {
                let response = router.call(request.map(axum::body::Body::new)).await?;
                drop(handling);
                // In flight until the whole body is sent (or the client goes away).
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let stream = connections::Moving::new(stream, admitted.activity.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        tasks.spawn(async move {
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = admitted.activity.until_cut_off(header_timeout, idle_timeout) => {
                    tracing::debug!(%peer, "connection cut off: idle too long, or making room");
                }
            }
            // Given back however the task ends (a panic in a handler included).
            drop((address_slot, admitted));
        });
    }
    drop(listener);
    // In-flight requests finish; idle connections close; the rest is cut off after the grace.
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open after the shutdown grace period: cut off"
        );
    }
    tasks.abort_all();
    Ok(())
}
