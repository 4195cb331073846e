//! Typed change events. Every committed change is announced as one of these:
//! the sessions' pending sets are updated from it, and other listeners (audit,
//! metrics, other replicas) receive it on a broadcast channel. Events carry
//! ids, not records, so they are small and can cross a process boundary; the
//! listener reads the current record back.

use headway_proto::tailcfg::PeerChange;
use serde::{Deserialize, Serialize};

use crate::model::{NodeId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    NodeAdded {
        node: NodeId,
    },
    /// Something peers see changed (name, key, addresses, tags, owner, expiry, peer-visible host info).
    NodeUpdated {
        node: NodeId,
    },
    NodeRemoved {
        node: NodeId,
    },
    /// A small change (endpoints, DERP home, disco key, online state).
    NodePatched {
        change: PeerChange,
    },
    UserChanged {
        user: UserId,
    },
    UserRemoved {
        user: UserId,
    },
    PolicyChanged,
    DnsChanged,
    DerpMapChanged,
}
