//! CPU-heavy login work (PBKDF2 of local passwords, SAML signature checks with
//! libxmlsec1) runs off the async workers, but no more of it at once than there
//! are cores: 64 logins in flight used to start 64 blocking-pool threads (each
//! with its stack and malloc arena) for work that two cores finish no sooner.
//! The rest wait here, in order, as tasks (a few hundred bytes each), not as
//! threads (issue 12).

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;
use tokio::task::JoinError;

/// Runs blocking closures on tokio's blocking pool, at most `permits` at once.
#[derive(Debug)]
pub struct BlockingLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl BlockingLimit {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// How many closures may run at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits for a permit (fair: first come, first served), then runs `f` on
    /// the blocking pool. The permit moves into the closure: it is held until
    /// `f` returns, also when the awaiting task is dropped meanwhile (the
    /// thread stays busy either way).
    pub async fn run<F, T>(&self, f: F) -> Result<T, JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The semaphore is never closed: acquire_owned cannot fail.
        let permit = self.permits.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
    }
}

/// Threads for login work: one per core (PBKDF2 is pure CPU), at least 2 so a
/// slow SAML check does not hold up every password login.
pub fn default_limit() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
        .clamp(2, 16)
}

/// The process-wide limit for login work.
pub static LOGIN: LazyLock<BlockingLimit> = LazyLock::new(|| BlockingLimit::new(default_limit()));

/// The runtime's whole blocking pool: login work plus the rest (stdin, the odd
/// file), instead of tokio's default of 512 threads.
pub fn max_blocking_threads() -> usize {
    default_limit() * 2 + 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_limit_run_at_once() {
        let limit = Arc::new(BlockingLimit::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut jobs = tokio::task::JoinSet::new();
        for i in 0..12usize {
            let (limit, running, peak) = (limit.clone(), running.clone(), peak.clone());
            jobs.spawn(async move {
                limit
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        // Long enough that unlimited jobs would overlap.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i * 2
                    })
                    .await
                    .unwrap()
            });
        }
        let mut sum = 0;
        while let Some(r) = jobs.join_next().await {
            sum += r.unwrap();
        }
        assert_eq!(sum, (0..12).map(|i| i * 2).sum::<usize>());
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "peak concurrency {peak}");
        assert_eq!(limit.max(), 2);
    }

    #[test]
    fn limits_are_bounded() {
        assert!((2..=16).contains(&default_limit()));
        assert!(max_blocking_threads() > default_limit());
        assert_eq!(BlockingLimit::new(0).max(), 1);
    }
}
