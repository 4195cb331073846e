//! What a simulated node reads from its map stream: frames off the wire, and
//! from each message only the fields the measurements need.
//!
//! A real client decodes the whole `MapResponse`; thousands of simulated
//! nodes in one process cannot afford to keep (or even build) full maps, so a
//! [`Digest`] holds peer ids, the keys of changed peers and the patches, and
//! serde skips the rest without allocating. The `strict` option of the
//! generator also decodes every message with the real `tailcfg` types.

use bytes::BytesMut;
use headway_proto::framing::{self, Compression};
use headway_proto::keys::NodePublic;
use serde::Deserialize;

/// One frame of the map stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Bytes on the wire (inside Noise): the 4-byte length and the compressed payload.
    pub wire_bytes: usize,
    /// The decompressed JSON.
    pub json: Vec<u8>,
}

/// Splits complete frames off the front of `buf`, leaving a partial one.
///
/// Each frame is cut out first so its compressed size is known, then decoded
/// by the project's own [`framing::decode_frames`].
pub fn split_frames(buf: &mut BytesMut) -> std::io::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    while buf.len() >= 4 {
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > framing::MAX_MESSAGE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "map frame of {len} bytes exceeds the {}-byte limit",
                    framing::MAX_MESSAGE
                ),
            ));
        }
        if buf.len() < 4 + len {
            break;
        }
        let mut one = buf.split_to(4 + len);
        let wire_bytes = one.len();
        for json in framing::decode_frames(&mut one, Compression::Zstd)? {
            frames.push(Frame { wire_bytes, json });
        }
    }
    Ok(frames)
}

/// A peer in `Peers` (full maps): its id is all the generator keeps.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PeerId {
    #[serde(rename = "ID")]
    pub id: u64,
}

/// A peer in `PeersChanged`: the key tells which node joined.
#[derive(Debug, Clone, Deserialize)]
pub struct ChangedPeer {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(rename = "Key")]
    pub key: NodePublic,
}

/// An entry of `PeersChangedPatch`.
#[derive(Debug, Clone, Deserialize)]
pub struct Patch {
    #[serde(rename = "NodeID")]
    pub node_id: u64,
    #[serde(rename = "Endpoints", default)]
    pub endpoints: Option<Vec<String>>,
    #[serde(rename = "Online", default)]
    pub online: Option<bool>,
}

/// The receiving node's own record.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SelfNode {
    #[serde(rename = "ID")]
    pub id: u64,
}

/// The parts of a `MapResponse` the generator uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Digest {
    #[serde(rename = "KeepAlive")]
    pub keep_alive: bool,
    #[serde(rename = "Node")]
    pub node: Option<SelfNode>,
    #[serde(rename = "Peers")]
    pub peers: Vec<PeerId>,
    #[serde(rename = "PeersChanged")]
    pub peers_changed: Vec<ChangedPeer>,
    #[serde(rename = "PeersRemoved")]
    pub peers_removed: Vec<u64>,
    #[serde(rename = "PeersChangedPatch")]
    pub patches: Vec<Patch>,
    #[serde(rename = "DERPMap")]
    derp_map: Option<serde::de::IgnoredAny>,
}

impl Digest {
    pub fn parse(json: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json)
    }

    /// A full map: the first message of every stream (and a resync) carries
    /// the node itself and the DERP map.
    pub fn is_full_map(&self) -> bool {
        self.node.is_some() && self.derp_map.is_some()
    }
}

/// Peer ids as a bit set: node ids are small dense integers, so 10,000 nodes
/// each knowing 10,000 peers take 1.25 KiB each instead of a hash set's ~160.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSet {
    words: Vec<u64>,
    len: usize,
}

impl PeerSet {
    pub fn insert(&mut self, id: u64) {
        let (word, bit) = ((id / 64) as usize, id % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & (1 << bit) == 0 {
            self.words[word] |= 1 << bit;
            self.len += 1;
        }
    }

    pub fn remove(&mut self, id: u64) {
        let (word, bit) = ((id / 64) as usize, id % 64);
        if let Some(w) = self.words.get_mut(word)
            && *w & (1 << bit) != 0
        {
            *w &= !(1 << bit);
            self.len -= 1;
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        let (word, bit) = ((id / 64) as usize, id % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, w)| {
            (0..64)
                .filter(move |bit| w & (1 << bit) != 0)
                .map(move |bit| i as u64 * 64 + bit)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset_of(&self, other: &PeerSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use headway_proto::keys::PrivateKey;
    use headway_proto::tailcfg::{MapResponse, Node, PeerChange};

    use super::*;

    #[test]
    fn frames_are_split_with_their_wire_size_and_partial_ones_wait() {
        let key = PrivateKey::generate().node_public();
        let full = MapResponse {
            node: Some(Node {
                id: 7,
                ..Default::default()
            }),
            derp_map: Some(Default::default()),
            peers: vec![
                Node {
                    id: 8,
                    ..Default::default()
                },
                Node {
                    id: 9,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let delta = MapResponse {
            peers_changed: vec![Node {
                id: 10,
                key,
                ..Default::default()
            }],
            peers_changed_patch: vec![PeerChange {
                node_id: 8,
                endpoints: Some(vec!["192.0.2.1:41641".parse().unwrap()]),
                ..Default::default()
            }],
            peers_removed: vec![9],
            ..Default::default()
        };
        let a = framing::frame(&full, Compression::Zstd).unwrap();
        let b = framing::frame(&delta, Compression::Zstd).unwrap();
        let mut buf = BytesMut::new();
        buf.put_slice(&a);
        buf.put_slice(&b[..b.len() - 1]);
        let frames = split_frames(&mut buf).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].wire_bytes, a.len());
        let first = Digest::parse(&frames[0].json).unwrap();
        assert!(first.is_full_map());
        assert_eq!(first.node.unwrap().id, 7);
        assert_eq!(first.peers.iter().map(|p| p.id).collect::<Vec<_>>(), [8, 9]);

        buf.put_slice(&b[b.len() - 1..]);
        let frames = split_frames(&mut buf).unwrap();
        assert!(buf.is_empty());
        let second = Digest::parse(&frames[0].json).unwrap();
        assert!(!second.is_full_map());
        assert_eq!(second.peers_changed[0].key, key);
        assert_eq!(second.peers_removed, [9]);
        assert_eq!(
            second.patches[0].endpoints.as_deref(),
            Some(&["192.0.2.1:41641".to_string()][..])
        );
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(u32::MAX);
        assert!(split_frames(&mut buf).is_err());
    }

    #[test]
    fn peer_set_counts_members_once() {
        let mut s = PeerSet::default();
        for id in [1, 64, 1, 10_000] {
            s.insert(id);
        }
        assert_eq!(s.len(), 3);
        assert!(s.contains(10_000) && !s.contains(2));
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 64, 10_000]);
        s.remove(64);
        s.remove(64);
        s.remove(1 << 40);
        assert_eq!(s.len(), 2);
        let mut bigger = s.clone();
        bigger.insert(3);
        assert!(s.is_subset_of(&bigger) && !bigger.is_subset_of(&s));
        s.clear();
        assert!(s.is_empty() && !s.contains(1));
    }
}
