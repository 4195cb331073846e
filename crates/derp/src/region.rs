//! The DERP-map entry that describes Headway's embedded relay.

use std::net::{Ipv4Addr, Ipv6Addr};

use headway_proto::tailcfg::{DerpNode, DerpRegion};

/// What the DERP map must say about the embedded relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedRegion {
    /// 900–999 are reserved for self-hosted relays (headscale uses 999).
    pub region_id: i32,
    pub region_code: String,
    pub region_name: String,
    /// TLS server name, `Host` header and DNS name (or an IP literal).
    pub host_name: String,
    /// Dial this address instead of resolving `host_name` (IPv4).
    pub ipv4: Option<Ipv4Addr>,
    /// Dial this address instead of resolving `host_name` (IPv6).
    pub ipv6: Option<Ipv6Addr>,
    /// Port of the DERP HTTPS listener.
    pub derp_port: u16,
    /// Port of the STUN server; `None` when STUN is off.
    pub stun_port: Option<u16>,
    /// `sha256-raw:<hex>` to pin a self-signed certificate (Tailscale ≥ 1.82);
    /// `None` when the certificate verifies through public roots.
    pub cert_name: Option<String>,
    /// Clients skip certificate verification entirely (tests; the only way for
    /// clients older than 1.82 to use a self-signed certificate).
    pub insecure_for_tests: bool,
}

impl EmbeddedRegion {
    /// The region with its single node, named after the region id like headscale does.
    pub fn to_region(&self) -> DerpRegion {
        let node = DerpNode {
            name: self.region_id.to_string(),
            region_id: self.region_id,
            host_name: self.host_name.clone(),
            cert_name: self.cert_name.clone().unwrap_or_default(),
            ipv4: self.ipv4.map(|ip| ip.to_string()).unwrap_or_default(),
            ipv6: self.ipv6.map(|ip| ip.to_string()).unwrap_or_default(),
            // In the DERP map, STUN port 0 means 3478 and -1 means "no STUN".
            stun_port: self.stun_port.map_or(-1, i32::from),
            stun_only: false,
            derp_port: i32::from(self.derp_port),
            insecure_for_tests: self.insecure_for_tests,
            stun_test_ip: String::new(),
            can_port80: false,
        };
        DerpRegion {
            region_id: self.region_id,
            region_code: self.region_code.clone(),
            region_name: self.region_name.clone(),
            nodes: vec![node],
            ..DerpRegion::default()
        }
    }
}

/// Shorthand for [`EmbeddedRegion::to_region`].
pub fn embedded_region(region: &EmbeddedRegion) -> DerpRegion {
    region.to_region()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_json_has_what_clients_read() {
        let r = EmbeddedRegion {
            region_id: 999,
            region_code: "headway".into(),
            region_name: "Headway Embedded DERP".into(),
            host_name: "203.0.113.7".into(),
            ipv4: Some(Ipv4Addr::new(203, 0, 113, 7)),
            ipv6: None,
            derp_port: 8443,
            stun_port: Some(3478),
            cert_name: Some(format!("sha256-raw:{}", "ab".repeat(32))),
            insecure_for_tests: false,
        };
        let v = serde_json::to_value(r.to_region()).unwrap();
        assert_eq!(v["RegionID"], 999);
        assert_eq!(v["RegionCode"], "headway");
        let n = &v["Nodes"][0];
        assert_eq!(n["Name"], "999");
        assert_eq!(n["RegionID"], 999);
        assert_eq!(n["HostName"], "203.0.113.7");
        assert_eq!(n["IPv4"], "203.0.113.7");
        assert!(n.get("IPv6").is_none());
        assert_eq!(n["DERPPort"], 8443);
        assert_eq!(n["STUNPort"], 3478);
        assert_eq!(n["CertName"], format!("sha256-raw:{}", "ab".repeat(32)));
        assert!(n.get("InsecureForTests").is_none());

        let no_stun = EmbeddedRegion {
            stun_port: None,
            cert_name: None,
            ..r
        };
        let v = serde_json::to_value(embedded_region(&no_stun)).unwrap();
        assert_eq!(v["Nodes"][0]["STUNPort"], -1);
        assert!(v["Nodes"][0].get("CertName").is_none());
    }
}
