//! Per-core workers (issue 13 item 3).
//!
//! N threads, each running its own single-threaded tokio runtime, its own TUN
//! queue (multi-queue TUN, `dataplane::tun`) and its own batch pool. A TLS
//! connection is owned by one worker from accept to close, as a connection is
//! owned by one ocserv worker process: the accept loop (on the shared
//! control-plane runtime) picks the worker with the fewest live connections
//! and spawns the connection there; the handshake, login, CONNECT and the
//! whole tunnel run on that worker's thread. A session's uplink is written to
//! its worker's TUN queue, so the kernel steers its downlink back to the same
//! worker (`dataplane::tun`), and its connected DTLS socket (`dtls_direct.rs`)
//! is registered with that worker's reactor: a packet crosses no thread
//! boundary and takes no lock shared with other workers. The kernel steers
//! only flows the session also writes (a TCP download's ACKs); packets of a
//! one-way downstream flow land on any queue by hash and cross to the session
//! through its channel (`tun-rx-cross-worker`; exact steering would need a
//! TUN steering eBPF program).
//!
//! What stays on the shared multi-thread runtime: the accept loop, the admin
//! socket and SSH CLI (and `reload`, whose `block_in_place` needs that
//! runtime), RADIUS, accounting, cluster, metrics and the DTLS hub (ClientHellos,
//! rebinding, sessions beyond the fd budget; it reaches sessions through their
//! channels).
//!
//! `--workers 0` keeps the former layout: no worker threads, one TUN queue,
//! connections and the downlink reader on the shared runtime (kept to compare
//! against, and as a fallback).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;

use dataplane::tun::{Tun, TunQueue};
use dataplane::{BatchPool, DataplaneCounters, SessionRoutes};

/// What a connection uses for its packets on the worker that owns it.
#[derive(Clone)]
pub struct Lane {
    /// The worker's index (also its TUN queue's).
    pub index: usize,
    /// The worker's TUN queue: the session's uplink is written here.
    pub tun: Tun,
    /// The worker's batch pool.
    pub pool: BatchPool,
}

/// The default worker count: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// `--workers`, else `HEADEND_WORKERS`, else one per core.
pub fn configured_count(flag: Option<usize>) -> Result<usize> {
    if let Some(n) = flag {
        return Ok(n);
    }
    match std::env::var("HEADEND_WORKERS") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("HEADEND_WORKERS={v:?}: not a number")),
        Err(_) => Ok(default_count()),
    }
}

/// Live connections of one worker (TLS connections: logins and tunnels).
#[derive(Debug, Default)]
pub struct WorkerLoad {
    connections: AtomicUsize,
}

impl WorkerLoad {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Counts one connection on its worker for as long as it lives (dropped with
/// the connection's future, on every path: also when the worker's runtime is
/// gone and the future is dropped unpolled).
struct LoadGuard(Arc<WorkerLoad>);

impl LoadGuard {
    fn new(load: Arc<WorkerLoad>) -> Self {
        load.connections.fetch_add(1, Ordering::Relaxed);
        Self(load)
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Worker<L> {
    /// Where its connections are spawned.
    handle: Handle,
    lane: L,
    load: Arc<WorkerLoad>,
}

/// The workers connections are spawned on. `L` is what a connection gets of
/// its worker ([`Lane`]; the tests use plain values).
pub struct Workers<L = Lane> {
    workers: Vec<Worker<L>>,
    /// Where the least-loaded scan starts: rotates so that ties (an idle
    /// headend) spread over the workers instead of filling worker 0 first.
    next: AtomicUsize,
    /// Whether the workers are threads of their own (false: `--workers 0`,
    /// one lane on the shared runtime).
    threaded: bool,
}

/// The index of the least-loaded entry, scanning cyclically from `start`: the
/// first of equal loads from `start` on wins.
pub fn least_loaded<K: Ord + Copy>(loads: &[K], start: usize) -> usize {
    let n = loads.len();
    if n == 0 {
        return 0;
    }
    (0..n)
        .map(|k| (start + k) % n)
        .filter_map(|i| Some((*loads.get(i)?, i)))
        // min_by_key keeps the first of equal keys.
        .min_by_key(|&(load, _)| load)
        .map_or(0, |(_, i)| i)
}

impl<L: Clone + Send + 'static> Workers<L> {
    fn new(workers: Vec<(Handle, L)>, threaded: bool) -> Self {
        Self {
            workers: workers
                .into_iter()
                .map(|(handle, lane)| Worker {
                    handle,
                    lane,
                    load: Arc::default(),
                })
                .collect(),
            next: AtomicUsize::new(0),
            threaded,
        }
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub fn threaded(&self) -> bool {
        self.threaded
    }

    /// Live connections per worker.
    pub fn connections(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.load.connections()).collect()
    }

    /// The worker the next connection goes to: the fewest live connections.
    /// A tunnel is a live connection, and a connection counts from the moment
    /// it is placed: counting tunnels only once their CONNECT arrives sent a
    /// burst of new connections all to the worker that had fewer (58 / 42 of
    /// 100 loadgen sessions at 16 in flight).
    fn pick(&self) -> usize {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        least_loaded(&self.connections(), start)
    }

    /// Runs the connection `job` makes from its worker's lane on the worker
    /// [`pick`](Self::pick) chooses, and returns that worker's index.
    /// `job` is called here but its future runs there: anything bound to a
    /// runtime (the TCP stream's registration) must be made inside the future.
    /// If that worker's runtime is gone, the future is dropped unpolled and
    /// whatever it owns (connection slot, admission ticket) is released.
    pub fn spawn<F>(&self, job: impl FnOnce(L) -> F) -> Option<usize>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.pick();
        let w = self.workers.get(i)?;
        let guard = LoadGuard::new(w.load.clone());
        drop(w.handle.spawn(guarded(guard, job(w.lane.clone()))));
        Some(i)
    }

    /// Live tasks on the workers' own runtimes (0 without worker threads:
    /// they are the shared runtime's).
    pub fn alive_tasks(&self) -> usize {
        if !self.threaded {
            return 0;
        }
        self.workers
            .iter()
            .map(|w| w.handle.metrics().num_alive_tasks())
            .sum()
    }
}

/// `fut` run with `guard` held. The future is boxed: an async block that
/// owns a future and awaits it keeps two copies of its size in its state
/// (the captured value and the awaited one, rust-lang/rust#62958). Inline,
/// that cost every session ~14 KiB, a second copy of its connection's
/// future: idle RSS per DTLS session at 1,000 sessions was 63 KiB, boxed 50
/// (BENCHMARKS.md). Boxed, the wrapper holds two pointers and the guard.
fn guarded<F>(guard: LoadGuard, fut: F) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    let fut = Box::pin(fut);
    async move {
        let _guard = guard;
        fut.await;
    }
}

/// Starts one worker per TUN queue. With `threaded`, each on a thread of its
/// own with a current-thread runtime; without (`--workers 0`, one queue), on
/// the calling runtime. Each worker reads its queue (the downlink); when a
/// read fails for good the error goes to `stopped` (the device is gone: the
/// server stops).
pub fn start(
    queues: Vec<TunQueue>,
    threaded: bool,
    routes: Arc<SessionRoutes>,
    counters: Arc<DataplaneCounters>,
    stopped: UnboundedSender<std::io::Error>,
) -> Result<Workers> {
    let mut workers = Vec::with_capacity(queues.len());
    for queue in queues {
        let index = queue.index();
        let (routes, counters, stopped) = (routes.clone(), counters.clone(), stopped.clone());
        let w = if threaded {
            start_thread(queue, routes, counters, stopped)
                .with_context(|| format!("starting worker {index}"))?
        } else {
            let tun = queue.into_async().context("registering the TUN queue")?;
            let pool = BatchPool::default();
            let lane = Lane {
                index,
                tun: tun.clone(),
                pool: pool.clone(),
            };
            let reader =
                tokio::spawn(async move { tun.run_downlink(routes, pool, counters).await });
            tokio::spawn(async move {
                let _ = stopped.send(reader_ended(reader.await));
            });
            (Handle::current(), lane)
        };
        workers.push(w);
    }
    Ok(Workers::new(workers, threaded))
}

/// Why a worker's TUN reader stopped (it only returns on a fatal error).
fn reader_ended(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Error {
    match r {
        Ok(Ok(())) => std::io::Error::other("TUN reader ended"),
        Ok(Err(e)) => e,
        Err(e) => std::io::Error::other(format!("TUN reader task: {e}")),
    }
}

/// One worker thread: its runtime, its TUN queue registered there, its pool.
fn start_thread(
    queue: TunQueue,
    routes: Arc<SessionRoutes>,
    counters: Arc<DataplaneCounters>,
    stopped: UnboundedSender<std::io::Error>,
) -> Result<(Handle, Lane)> {
    let index = queue.index();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<(Handle, Lane)>>();
    std::thread::Builder::new()
        .name(format!("vpn-worker-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Login work is bounded process-wide (blocking.rs); this
                // bounds the rest.
                .max_blocking_threads(crate::blocking::max_blocking_threads())
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // The runtime is driven by this block_on: connections spawned on
            // its handle run while the downlink runs, i.e. for the process's
            // life. A panic there (a connection's own panic stays in its task)
            // would leave this worker's sessions dead: it stops the server.
            let run = std::panic::AssertUnwindSafe(|| {
                rt.block_on(async move {
                    let tun = match queue.into_async() {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return None;
                        }
                    };
                    let pool = BatchPool::default();
                    let lane = Lane {
                        index,
                        tun: tun.clone(),
                        pool: pool.clone(),
                    };
                    let _ = ready_tx.send(Ok((Handle::current(), lane)));
                    Some(reader_ended(Ok(tun
                        .run_downlink(routes, pool, counters)
                        .await)))
                })
            });
            match std::panic::catch_unwind(run) {
                Ok(Some(e)) => {
                    let _ = stopped.send(e);
                }
                Ok(None) => {}
                Err(_) => {
                    let _ = stopped.send(std::io::Error::other(format!("worker {index} panicked")));
                }
            }
        })
        .context("spawning the thread")?;
    ready_rx
        .recv()
        .context("the worker thread ended before it started")?
        .context("TUN queue")
}

/// `show counters` rows: per worker, its sessions, live connections and the
/// packets read from its TUN queue (`tun-rx-cross-worker` says how many of
/// all those were for another worker's session).
pub fn render_counters(workers: &Workers, routes: &SessionRoutes) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{:<22}: {}", "workers", workers.len());
    let sessions = routes.sessions_per_worker(workers.len());
    let connections = workers.connections();
    for (i, w) in workers.workers.iter().enumerate() {
        let rows = [
            ("sessions", sessions.get(i).copied().unwrap_or(0) as u64),
            (
                "connections",
                connections.get(i).copied().unwrap_or(0) as u64,
            ),
            ("tun-rx", w.lane.tun.rx_packets()),
        ];
        for (name, v) in rows {
            let _ = writeln!(out, "{:<22}: {v}", format!("worker-{i}-{name}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn least_loaded_wins_and_ties_rotate() {
        assert_eq!(least_loaded(&[3, 1, 2], 0), 1);
        assert_eq!(least_loaded(&[3, 1, 2], 2), 1);
        // Ties: the first from `start` on.
        assert_eq!(least_loaded(&[1, 0, 0], 0), 1);
        assert_eq!(least_loaded(&[1, 0, 0], 2), 2);
        assert_eq!(least_loaded(&[0, 0], 1), 1);
        assert_eq!(least_loaded(&[0, 0], 2), 0);
        assert_eq!(least_loaded::<usize>(&[], 5), 0);
        assert_eq!(least_loaded(&[(1, 1), (0, 5)], 0), 1);
    }

    #[test]
    fn the_load_guard_wrapper_holds_the_future_once() {
        let load = Arc::new(WorkerLoad::default());
        // A stand-in for a connection: a future with a large state.
        let conn = async {
            let buf = [7u8; 16 * 1024];
            tokio::task::yield_now().await;
            std::hint::black_box(&buf);
        };
        assert!(std::mem::size_of_val(&conn) >= 16 * 1024);
        let task = guarded(LoadGuard::new(load.clone()), conn);
        // Not the connection's size again (let alone twice): two pointers
        // and the guard.
        assert!(
            std::mem::size_of_val(&task) < 256,
            "wrapper is {} bytes",
            std::mem::size_of_val(&task)
        );
        assert_eq!(load.connections(), 1);
        drop(task);
        assert_eq!(load.connections(), 0);
    }

    /// Runtimes on threads of their own, as the workers are; a connection
    /// there waits until `release` is dropped.
    fn runtimes(n: usize) -> (Vec<tokio::runtime::Runtime>, Vec<(Handle, usize)>) {
        let rts: Vec<_> = (0..n)
            .map(|_| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap()
            })
            .collect();
        let handles = rts
            .iter()
            .enumerate()
            .map(|(i, rt)| (rt.handle().clone(), i))
            .collect();
        (rts, handles)
    }

    #[test]
    fn connections_spread_over_workers_and_are_counted_while_they_live() {
        let (_rts, handles) = runtimes(3);
        let workers = Workers::new(handles, true);
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        let mut picked = Vec::new();
        for _ in 0..7 {
            let (mut release, ran) = (release_rx.clone(), ran_tx.clone());
            picked.push(
                workers
                    .spawn(move |lane| async move {
                        let _ = ran.send(lane);
                        let _ = release.wait_for(|r| *r).await;
                    })
                    .unwrap(),
            );
        }
        let mut ran: Vec<usize> = (0..7).map(|_| ran_rx.recv().unwrap()).collect();
        ran.sort_unstable();
        // Each job ran on the worker it was given to (its lane), and the
        // loads differ by at most one.
        let mut p = picked.clone();
        p.sort_unstable();
        assert_eq!(ran, p);
        let loads = workers.connections();
        assert_eq!(loads.iter().sum::<usize>(), 7);
        assert!(
            loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
            "{loads:?}"
        );
        // The next one goes to a least-loaded worker.
        let min = *loads.iter().min().unwrap();
        let next = workers.spawn(|_| async {}).unwrap();
        assert_eq!(loads[next], min, "{loads:?} -> {next}");
        // Connections that end are no longer counted.
        release_tx.send(true).unwrap();
        let settled = (0..1000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            workers.connections().iter().sum::<usize>() == 0
        });
        assert!(settled, "{:?}", workers.connections());
    }

    /// A client that logs in on one connection and opens its tunnel on the
    /// next (openconnect does): the tunnels still spread evenly.
    #[test]
    fn tunnels_spread_when_logins_and_tunnels_alternate() {
        let (_rts, handles) = runtimes(2);
        let workers = Workers::new(handles, true);
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let settle = |live: usize| {
            let ok = (0..1000).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                workers.connections().iter().sum::<usize>() == live
            });
            assert!(ok, "{:?}", workers.connections());
        };
        for k in 0..8 {
            // The login: over at once.
            workers.spawn(|_| async {}).unwrap();
            settle(k);
            // The tunnel: stays up.
            let mut release = release_rx.clone();
            workers
                .spawn(move |_| async move {
                    let _ = release.wait_for(|r| *r).await;
                })
                .unwrap();
            settle(k + 1);
        }
        assert_eq!(workers.connections(), vec![4, 4]);
        release_tx.send(true).unwrap();
    }

    /// A burst of new connections (none a tunnel yet) spreads at once: each
    /// counts on its worker from the moment it is placed.
    #[test]
    fn a_burst_of_new_connections_evens_out_the_workers() {
        let (_rts, handles) = runtimes(2);
        let workers = Workers::new(handles, true);
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let hold = |workers: &Workers<usize>| {
            let mut release = release_rx.clone();
            workers.spawn(move |_| async move {
                let _ = release.wait_for(|r| *r).await;
            })
        };
        // Worker 0 already has two tunnels.
        let _held = [
            LoadGuard::new(workers.workers[0].load.clone()),
            LoadGuard::new(workers.workers[0].load.clone()),
        ];
        let placed: Vec<usize> = (0..4).map(|_| hold(&workers).unwrap()).collect();
        assert_eq!(placed.iter().filter(|&&w| w == 1).count(), 3, "{placed:?}");
        assert_eq!(workers.connections(), vec![3, 3]);
        release_tx.send(true).unwrap();
    }

    #[test]
    fn a_failed_handoff_releases_the_slot_and_the_admission_ticket() {
        let (rts, handles) = runtimes(1);
        // The worker's runtime is gone: its handle can no longer run anything.
        drop(rts);
        let workers = Workers::new(handles, true);
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let admission = crate::threat::admission::Admission::new(Default::default());
        let ip: IpAddr = "198.18.0.7".parse().unwrap();
        let permit = slots.clone().try_acquire_owned().unwrap();
        let ticket = admission.admit(ip).unwrap();
        assert_eq!(slots.available_permits(), 0);
        assert_ne!(admission.counts(ip), (0, 0));
        let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p = polled.clone();
        workers.spawn(move |_| async move {
            p.store(true, Ordering::SeqCst);
            drop((permit, ticket));
        });
        assert!(!polled.load(Ordering::SeqCst));
        assert_eq!(slots.available_permits(), 1);
        assert_eq!(admission.counts(ip), (0, 0));
        assert_eq!(workers.connections(), vec![0]);
    }
}
