//! The DERP map as one client can use it.

use headway_proto::tailcfg::DerpMap;

/// What a client of capability version `capver` can use: clients before
/// 1.82 (capver 115) read `CertName` as a host name to verify, not as a
/// `sha256-raw:` pin, so for them the pin is left out and the certificate
/// must verify through their trust store (e.g. `SSL_CERT_FILE`).
pub fn derp_map_for(map: &DerpMap, capver: i32) -> std::borrow::Cow<'_, DerpMap> {
    const PIN_AWARE: i32 = 115;
    let pinned = map
        .regions
        .values()
        .flat_map(|r| &r.nodes)
        .any(|n| n.cert_name.starts_with("sha256-raw:"));
    if capver >= PIN_AWARE || !pinned {
        return std::borrow::Cow::Borrowed(map);
    }
    let mut m = map.clone();
    for n in m.regions.values_mut().flat_map(|r| r.nodes.iter_mut()) {
        if n.cert_name.starts_with("sha256-raw:") {
            n.cert_name.clear();
        }
    }
    std::borrow::Cow::Owned(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use headway_proto::tailcfg::{DerpNode, DerpRegion};

    #[test]
    fn old_clients_get_no_sha256_pin() {
        let mut m = DerpMap::default();
        m.regions.insert(
            999,
            DerpRegion {
                region_id: 999,
                nodes: vec![DerpNode {
                    cert_name: "sha256-raw:abcd".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert_eq!(
            derp_map_for(&m, 133).regions[&999].nodes[0].cert_name,
            "sha256-raw:abcd"
        );
        assert_eq!(derp_map_for(&m, 109).regions[&999].nodes[0].cert_name, "");
    }
}
