//! What the accept loop knows of each open connection: whether a request is being handled or
//! its response sent, since when it has been idle, and when a byte last moved on it. That gives
//! two rules:
//! - until its first request starts, a connection is cut off after the header timeout (also a
//!   client that sends nothing, or less than a request line, which hyper's own header timer
//!   never sees); after it, once no byte has moved for the idle timeout while no request is
//!   being handled: idle between requests, or stalled sending a response its client stopped
//!   reading (a zero window), while a slow reader that keeps reading is never cut. A request
//!   being handled is bounded by the request timeout instead;
//! - when the connection cap is reached, the oldest connection with nothing in flight makes
//!   room for the new one, so that a flood of idle connections cannot lock others out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Memory is given back to the system at most this often.
const TRIM_AT_MOST_EVERY: Duration = Duration::from_secs(60);
/// Connections looked at, at most, to find one to cut off when the cap is reached.
const LOOK_AT: usize = 64;

/// One open connection, as the accept loop sees it.
pub struct Activity {
    epoch: Instant,
    /// Requests being answered: from their headers until their response body is dropped.
    busy: AtomicUsize,
    /// Requests whose handler has not returned yet.
    handling: AtomicUsize,
    /// When a byte last moved either way: milliseconds since `epoch`.
    moved_at: AtomicU64,
    /// Whether a request has started on it.
    served: AtomicBool,
    /// When it last became idle (opened, or a response finished): milliseconds since `epoch`.
    idle_since: AtomicU64,
    cut: Notify,
    /// Woken when a request starts: the limit then changes from the header timeout.
    started: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        Activity {
            epoch,
            busy: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
            moved_at: AtomicU64::new(millis(epoch.elapsed())),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(millis(epoch.elapsed())),
            cut: Notify::new(),
            started: Notify::new(),
        }
    }

    /// Marks a request as started; it counts as in flight until the guard is dropped, and as
    /// being handled until the `Handling` guard is.
    pub fn request(self: &Arc<Self>) -> (InFlight, Handling) {
        self.served.store(true, Ordering::Release);
        self.moved();
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.handling.fetch_add(1, Ordering::AcqRel);
        self.started.notify_waiters();
        (InFlight(self.clone()), Handling(self.clone()))
    }

    /// Bytes moved on the connection.
    pub fn moved(&self) {
        self.moved_at.store(millis(self.epoch.elapsed()), Ordering::Release);
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Resolves when the connection is to be cut off by the rules above, or was chosen to make
    /// room.
    pub async fn until_cut_off(&self, header_timeout: Duration, idle_timeout: Duration) {
        let watch = async {
            loop {
                let now = Instant::now();
                let since = |at: &AtomicU64| self.epoch + Duration::from_millis(at.load(Ordering::Acquire));
                // Registered before `served` is read, so that a request starting in between
                // still wakes it.
                let started = self.started.notified();
                tokio::pin!(started);
                started.as_mut().enable();
                let deadline = if !self.served.load(Ordering::Acquire) {
                    // Until the first request starts (then the limit is another).
                    let deadline = since(&self.idle_since) + header_timeout;
                    if now >= deadline {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = started => {}
                    }
                    continue;
                } else if self.handling.load(Ordering::Acquire) > 0 {
                    tokio::time::sleep(idle_timeout).await;
                    continue;
                } else {
                    since(&self.idle_since).max(since(&self.moved_at)) + idle_timeout
                };
                if now >= deadline {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            }
        };
        tokio::select! {
            () = watch => {}
            () = self.cut.notified() => {}
        }
    }
}

/// A request whose handler is running.
pub struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream, telling its `Activity` whenever bytes move.
pub struct Moving<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Moving<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Moving { inner, activity }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Moving<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.moved();
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Moving<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A request in flight on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(millis(activity.epoch.elapsed()), Ordering::Release);
        activity.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every open connection, oldest first, and how many there are.
pub struct Connections {
    epoch: Instant,
    max: usize,
    open: Arc<AtomicUsize>,
    /// The most open at once since memory was last given back.
    peak: AtomicUsize,
    /// When memory was last given back (trimming a large heap takes a while: at most once a
    /// minute, and off the accept loop).
    last_trim: Mutex<Option<Instant>>,
    oldest_first: Mutex<VecDeque<Weak<Activity>>>,
}

/// A connection's place under the cap, given back when dropped.
pub struct Admitted {
    pub activity: Arc<Activity>,
    open: Arc<AtomicUsize>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Connections {
            epoch: Instant::now(),
            max,
            open: Arc::default(),
            peak: AtomicUsize::new(0),
            last_trim: Mutex::new(None),
            oldest_first: Mutex::new(VecDeque::new()),
        }
    }

    /// Forgets closed connections, and after a burst of connections has gone (fewer than half
    /// of the peak open, the peak above `BURST`) gives the memory their buffers took back to
    /// the operating system: glibc's allocator keeps freed memory in its heaps, so resident
    /// memory would stay at the burst's height (about 17 KiB a connection) long after it.
    pub fn tidy(&self) {
        const BURST: usize = 1000;
        if let Ok(mut oldest_first) = self.oldest_first.lock() {
            oldest_first.retain(|connection| connection.strong_count() > 0);
            let keep = oldest_first.len() * 2;
            oldest_first.shrink_to(keep);
        }
        let open = self.open.load(Ordering::Acquire);
        let peak = self.peak.load(Ordering::Acquire);
        let Ok(mut last_trim) = self.last_trim.lock() else {
            return;
        };
        let due = last_trim.is_none_or(|at| at.elapsed() >= TRIM_AT_MOST_EVERY);
        if peak >= BURST && open < peak / 2 && due {
            self.peak.store(open, Ordering::Release);
            *last_trim = Some(Instant::now());
            tokio::task::spawn_blocking(trim_heap);
        }
    }

    /// Admits a new connection: under the cap, or by cutting off the oldest idle one. `None`
    /// when every connection looked at is answering a request (the new one is closed).
    pub fn admit(&self) -> Option<Admitted> {
        let Ok(mut oldest_first) = self.oldest_first.lock() else {
            return None;
        };
        let open = self.open.load(Ordering::Acquire);
        // A connection cut off to make room still counts until its task ends (at once); up
        // to `LOOK_AT` such may be on their way out.
        if open >= self.max && (open >= self.max + LOOK_AT || !make_room(&mut oldest_first)) {
            return None;
        }
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(open, Ordering::AcqRel);
        if oldest_first.len() > 2 * open + LOOK_AT {
            // Closed connections are forgotten as often as they would double the queue.
            oldest_first.retain(|connection| connection.strong_count() > 0);
        }
        let activity = Arc::new(Activity::new(self.epoch));
        oldest_first.push_back(Arc::downgrade(&activity));
        Some(Admitted {
            activity,
            open: self.open.clone(),
        })
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointers and only returns free memory of glibc's heaps to
    // the kernel; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Cuts off the oldest idle connection among the first `LOOK_AT`; the busy ones looked at go
/// to the back. Whether one was cut off.
fn make_room(oldest_first: &mut VecDeque<Weak<Activity>>) -> bool {
    for _ in 0..LOOK_AT {
        let Some(next) = oldest_first.pop_front() else {
            return false;
        };
        let Some(activity) = next.upgrade() else {
            continue; // closed already
        };
        if activity.idle() {
            activity.cut.notify_one();
            return true;
        }
        oldest_first.push_back(next);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_cap_every_connection_is_admitted() {
        let connections = Connections::new(2);
        let first = connections.admit();
        let second = connections.admit();
        assert!(first.is_some() && second.is_some());
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let connections = Connections::new(2);
        let oldest = connections.admit().unwrap();
        let busy = connections.admit().unwrap();
        let _request = busy.activity.request();

        let third = connections.admit();

        assert!(third.is_some());
        let cut = tokio::time::timeout(
            Duration::from_secs(1),
            oldest
                .activity
                .until_cut_off(Duration::from_secs(60), Duration::from_secs(60)),
        );
        assert!(cut.await.is_ok(), "the oldest idle connection was not cut off");
    }

    #[test]
    fn at_the_cap_with_every_connection_answering_the_new_one_is_refused() {
        let connections = Connections::new(2);
        let first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        let _requests = (first.activity.request(), second.activity.request());

        assert!(connections.admit().is_none());
    }

    #[test]
    fn closed_connections_are_forgotten() {
        let connections = Connections::new(10);
        for _ in 0..1000 {
            drop(connections.admit());
        }
        let queued = connections.oldest_first.lock().unwrap().len();
        assert!(
            queued <= 2 + LOOK_AT,
            "{queued} closed connections kept (one open at a time)"
        );
        connections.tidy();
        assert_eq!(connections.oldest_first.lock().unwrap().len(), 0);
    }

    #[test]
    fn a_closed_connection_gives_its_place_back() {
        let connections = Connections::new(1);
        let only = connections.admit().unwrap();
        let _request = only.activity.request();
        assert!(connections.admit().is_none());

        drop(only);

        assert!(connections.admit().is_some());
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_request_is_cut_off_after_the_header_timeout() {
        let connections = Connections::new(10);
        let silent = connections.admit().unwrap();

        let header_timeout = Duration::from_millis(100);
        let cut = tokio::time::timeout(
            Duration::from_secs(5),
            silent.activity.until_cut_off(header_timeout, Duration::from_secs(60)),
        );

        assert!(cut.await.is_ok());
    }

    const SHORT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_connection_whose_request_is_being_handled_is_not_cut_off() {
        let connections = Connections::new(10);
        let busy = connections.admit().unwrap();
        let _request = busy.activity.request();

        let cut = tokio::time::timeout(SHORT * 10, busy.activity.until_cut_off(SHORT, SHORT));

        assert!(cut.await.is_err());
    }

    #[tokio::test]
    async fn a_response_whose_client_stopped_reading_is_cut_off_once_nothing_moves() {
        let connections = Connections::new(10);
        let stalled = connections.admit().unwrap();
        let (_in_flight, handling) = stalled.activity.request();
        drop(handling); // the handler answered; its body is being sent

        let cut = tokio::time::timeout(Duration::from_secs(10), stalled.activity.until_cut_off(SHORT, SHORT));

        assert!(cut.await.is_ok());
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let connections = Connections::new(10);
        let slow = connections.admit().unwrap();
        let (in_flight, handling) = slow.activity.request();
        drop(handling);
        let activity = slow.activity.clone();
        let reading = async move {
            // The body is handed over, then goes out a little at a time for a long while.
            drop(in_flight);
            for _ in 0..20 {
                tokio::time::sleep(SHORT / 2).await;
                activity.moved();
            }
        };

        let cut = tokio::select! {
            () = slow.activity.until_cut_off(SHORT, SHORT) => true,
            () = reading => false,
        };

        assert!(!cut, "cut off while bytes kept moving");
    }

    #[tokio::test]
    async fn once_a_request_starts_the_idle_timeout_counts_not_the_header_timeout() {
        let connections = Connections::new(10);
        let connection = connections.admit().unwrap();
        let activity = connection.activity.clone();
        let watching = tokio::spawn(async move { activity.until_cut_off(Duration::from_secs(60), SHORT).await });
        // The watch is asleep until the header timeout when the request comes.
        tokio::time::sleep(SHORT).await;
        drop(connection.activity.request());

        let cut = tokio::time::timeout(SHORT * 10, watching).await;

        assert!(cut.is_ok(), "still waiting for the header timeout");
    }

    #[tokio::test]
    async fn an_idle_connection_is_cut_off_after_the_idle_timeout() {
        let connections = Connections::new(10);
        let idle = connections.admit().unwrap();
        drop(idle.activity.request());

        let cut = tokio::time::timeout(Duration::from_secs(10), idle.activity.until_cut_off(SHORT, SHORT));

        assert!(cut.await.is_ok());
    }
}
