//! Which session owns which tunnel address. Read lock-free once per batch by the
//! workers' downlink tasks; written (copy and swap) only when a session connects
//! or leaves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::queue::DownlinkTx;

/// The downlink end of one connected session.
#[derive(Debug)]
pub struct SessionPort {
    /// Session index (for logs).
    pub index: u64,
    /// Identifies the connection, so a stale connection cannot remove its successor.
    pub generation: u64,
    /// The worker that owns the session (the TUN queue its uplink writes to).
    pub worker: usize,
    /// The session's downlink queue (`queue.rs`).
    pub tx: DownlinkTx,
}

#[derive(Debug, Default)]
pub struct SessionRoutes {
    table: ArcSwap<HashMap<IpAddr, Arc<SessionPort>>>,
}

impl SessionRoutes {
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<HashMap<IpAddr, Arc<SessionPort>>>> {
        self.table.load()
    }

    /// Routes `addrs` to `port`, replacing any earlier connection of the session.
    pub fn insert(&self, addrs: &[IpAddr], port: Arc<SessionPort>) {
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            for a in addrs {
                t.insert(*a, port.clone());
            }
            t
        });
    }

    /// Removes the routes of `addrs` if they still belong to connection `generation`.
    pub fn remove(&self, addrs: &[IpAddr], generation: u64) {
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            for a in addrs {
                if t.get(a).is_some_and(|p| p.generation == generation) {
                    t.remove(a);
                }
            }
            t
        });
    }

    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Connected sessions per worker (`workers` entries; a worker index past
    /// them is not counted). A dual-stack session has two routes to one port.
    pub fn sessions_per_worker(&self, workers: usize) -> Vec<usize> {
        let table = self.table.load();
        let mut ports: Vec<&Arc<SessionPort>> = table.values().collect();
        ports.sort_unstable_by_key(|p| Arc::as_ptr(p));
        ports.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let mut counts = vec![0; workers];
        for p in ports {
            if let Some(c) = counts.get_mut(p.worker) {
                *c += 1;
            }
        }
        counts
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{QueueLimits, downlink_queue};

    #[test]
    fn stale_generation_does_not_remove_successor() {
        let routes = SessionRoutes::default();
        let a: IpAddr = "198.18.100.10".parse().unwrap();
        let (tx1, _rx1) = downlink_queue(QueueLimits::DEFAULT);
        let (tx2, _rx2) = downlink_queue(QueueLimits::DEFAULT);
        routes.insert(
            &[a],
            Arc::new(SessionPort {
                index: 1,
                generation: 1,
                worker: 0,
                tx: tx1,
            }),
        );
        routes.insert(
            &[a],
            Arc::new(SessionPort {
                index: 1,
                generation: 2,
                worker: 0,
                tx: tx2,
            }),
        );
        routes.remove(&[a], 1);
        assert_eq!(routes.snapshot().get(&a).map(|p| p.generation), Some(2));
        routes.remove(&[a], 2);
        assert!(routes.is_empty());
    }

    #[test]
    fn both_addresses_of_a_dual_stack_session_route_to_it() {
        let routes = SessionRoutes::default();
        let a4: IpAddr = "198.18.100.10".parse().unwrap();
        let a6: IpAddr = "fd00:100::10".parse().unwrap();
        let (tx, _rx) = downlink_queue(QueueLimits::DEFAULT);
        routes.insert(
            &[a4, a6],
            Arc::new(SessionPort {
                index: 1,
                generation: 1,
                worker: 0,
                tx,
            }),
        );
        assert_eq!(routes.sessions_per_worker(2), vec![1, 0]);
        let snap = routes.snapshot();
        assert_eq!(snap.get(&a6).map(|p| p.index), Some(1));
        assert!(Arc::ptr_eq(&snap[&a4], &snap[&a6]));
        assert!(
            snap.get(&"fd00:100::11".parse::<IpAddr>().unwrap())
                .is_none()
        );
        routes.remove(&[a4, a6], 1);
        assert!(routes.is_empty());
    }
}
