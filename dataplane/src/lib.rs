//! The batch packet path between the TUN device and VPN sessions.
//!
//! Downlink: each worker's task reads its own TUN queue in batches, finds the
//! session that owns each destination address, and hands each session one
//! [`PacketBatch`] per batch (its queue bounded in packets and bytes: `queue.rs`). Uplink: each session checks that a packet's source
//! is its own assigned address and writes its packets in a batch to its
//! worker's TUN queue. Nothing on these paths allocates per
//! packet: batches come from a pool and are reused; the routing table is read
//! lock-free once per batch.

pub mod batch;
pub mod counters;
pub mod enforce;
pub mod hitlog;
pub mod packet;
pub mod policy;
pub mod queue;
pub mod routes;
pub mod tun;

pub use batch::{BatchPool, PacketBatch};
pub use counters::DataplaneCounters;
pub use queue::{DownlinkRx, DownlinkTx, QueueLimits, downlink_queue};
pub use routes::{SessionPort, SessionRoutes};
