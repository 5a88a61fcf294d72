//! Requests in flight per client: no one client (by its address as `extract::client_address`
//! reads it, so behind a trusted proxy each client behind it counts on its own; IPv6 by its /64)
//! may hold more than its share of the server's in-flight slots. Beyond it, its requests are shed
//! at once with 503 `overloaded` and `Retry-After`, as the server-wide limit sheds, while other
//! clients are still answered. The connection cap per address (`server`) cannot do this behind a
//! proxy, where every client arrives on the proxy's connections.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::extract::client_address;
use crate::config::TrustedProxies;
use crate::error::ApiError;

/// What the middleware needs: the cap, the proxies whose `X-Forwarded-For` is believed, and the
/// count per client.
#[derive(Clone)]
pub struct PerClient {
    max: usize,
    trusted: Arc<TrustedProxies>,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    pub fn new(max: usize, trusted: Arc<TrustedProxies>) -> Self {
        PerClient {
            max: max.max(1),
            trusted,
            counts: Arc::default(),
        }
    }

    /// A slot for one more request of `client`, if it has fewer than the cap in flight.
    fn admit(&self, client: IpAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            counts: self.counts.clone(),
            client,
        })
    }
}

/// One request's place under its client's cap, given back when the handler is done.
struct Slot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// The address a client's requests count against: IPv4 as it is, IPv6 by its /64 (which one
/// host usually holds whole).
pub fn counted_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Sheds a request whose client already has the cap in flight.
pub async fn limit(State(per_client): State<PerClient>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // Without a peer address (not served over TCP) there is no client to count.
    let Some(peer) = peer else {
        return next.run(request).await;
    };
    let client = counted_address(client_address(peer, request.headers(), &per_client.trusted));
    let Some(_slot) = per_client.admit(client) else {
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_cap_and_its_slots_back() {
        let per_client = PerClient::new(2, Arc::new(TrustedProxies::new(Vec::new())));
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());

        let held = [per_client.admit(a), per_client.admit(a)];
        assert!(held.iter().all(Option::is_some));
        assert!(
            per_client.admit(a).is_none(),
            "a third request of one client was admitted"
        );
        assert!(per_client.admit(b).is_some(), "another client was refused");

        drop(held);
        let again = per_client.admit(a);
        assert!(again.is_some());
        assert_eq!(per_client.counts.lock().unwrap().get(&a), Some(&1));
        drop(again);
        assert!(
            per_client.counts.lock().unwrap().is_empty(),
            "a client with nothing in flight is still kept"
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64_bit_prefix_and_ipv4_by_address_also_when_mapped() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();

        assert_eq!(counted_address(one), counted_address(same));
        assert_ne!(counted_address(one), counted_address(other));
        assert_eq!(
            counted_address("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_ne!(
            counted_address("192.0.2.7".parse().unwrap()),
            counted_address("192.0.2.8".parse().unwrap())
        );
    }
}
