//! The DERP map clients receive: the embedded region plus regions from
//! `derp.paths` files and `derp.urls`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use headway_proto::tailcfg::{DerpMap, DerpNode, DerpRegion};
use serde::Deserialize;

/// A DERP map file as headscale reads it: YAML with Go's lower-cased field
/// names (`regionid`, `hostname`…); the JSON spellings are accepted too.
#[derive(Debug, Deserialize)]
struct MapFile {
    #[serde(alias = "Regions")]
    regions: BTreeMap<i32, RegionFile>,
}

#[derive(Debug, Deserialize)]
struct RegionFile {
    #[serde(alias = "RegionID")]
    regionid: i32,
    #[serde(default, alias = "RegionCode")]
    regioncode: String,
    #[serde(default, alias = "RegionName")]
    regionname: String,
    #[serde(default, alias = "Avoid")]
    avoid: bool,
    #[serde(default, alias = "NoMeasureNoHome")]
    nomeasurenohome: bool,
    #[serde(default, alias = "Nodes")]
    nodes: Vec<NodeFile>,
}

#[derive(Debug, Deserialize)]
struct NodeFile {
    #[serde(alias = "Name")]
    name: String,
    #[serde(alias = "RegionID")]
    regionid: i32,
    #[serde(alias = "HostName")]
    hostname: String,
    #[serde(default, alias = "CertName")]
    certname: String,
    #[serde(default, alias = "IPv4")]
    ipv4: String,
    #[serde(default, alias = "IPv6")]
    ipv6: String,
    #[serde(default, alias = "STUNPort")]
    stunport: i32,
    #[serde(default, alias = "STUNOnly")]
    stunonly: bool,
    #[serde(default, alias = "DERPPort")]
    derpport: i32,
    #[serde(default, alias = "InsecureForTests")]
    insecurefortests: bool,
    #[serde(default, alias = "CanPort80")]
    canport80: bool,
}

impl From<MapFile> for DerpMap {
    fn from(f: MapFile) -> Self {
        let regions = f
            .regions
            .into_values()
            .map(|r| {
                (
                    r.regionid,
                    DerpRegion {
                        region_id: r.regionid,
                        region_code: r.regioncode,
                        region_name: r.regionname,
                        avoid: r.avoid,
                        no_measure_no_home: r.nomeasurenohome,
                        nodes: r
                            .nodes
                            .into_iter()
                            .map(|n| DerpNode {
                                name: n.name,
                                region_id: n.regionid,
                                host_name: n.hostname,
                                cert_name: n.certname,
                                ipv4: n.ipv4,
                                ipv6: n.ipv6,
                                stun_port: n.stunport,
                                stun_only: n.stunonly,
                                derp_port: n.derpport,
                                insecure_for_tests: n.insecurefortests,
                                can_port80: n.canport80,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        DerpMap {
            regions,
            ..Default::default()
        }
    }
}

/// Reads a DERP map file (YAML or JSON).
pub fn load_file(path: &Path) -> anyhow::Result<DerpMap> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("derp.paths: reading {}", path.display()))?;
    let file: MapFile = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("derp.paths: {} is not a DERP map (expected `regions: {{<id>: {{regionid, nodes: [...]}}}}`)", path.display()))?;
    let map = DerpMap::from(file);
    for (id, r) in &map.regions {
        if *id != r.region_id {
            anyhow::bail!(
                "derp.paths: {}: region key {id} differs from its regionid {}",
                path.display(),
                r.region_id
            );
        }
    }
    Ok(map)
}

/// Fetches a DERP map (Tailscale's JSON) from a URL, with a timeout.
pub async fn fetch(url: &url::Url) -> anyhow::Result<DerpMap> {
    use http_body_util::{BodyExt, Empty};
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let uri: http::Uri = url
        .as_str()
        .parse()
        .with_context(|| format!("derp.urls: {url} is not a valid URI"))?;
    let fut = async {
        let resp = client.get(uri).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after 10 s"))??;
    if !status.is_success() {
        anyhow::bail!("HTTP {status}");
    }
    serde_json::from_slice(&body).context("not a DERP map JSON document")
}

/// Merges `more` into `map`; regions with the same id are replaced (later wins).
pub fn merge(map: &mut DerpMap, more: DerpMap) {
    map.regions.extend(more.regions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headscale_style_yaml_maps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("derp.yaml");
        std::fs::write(
            &p,
            "regions:\n  900:\n    regionid: 900\n    regioncode: custom\n    regionname: My Region\n    nodes:\n      - name: 900a\n        regionid: 900\n        hostname: derp.example.com\n        ipv4: 192.0.2.10\n        stunport: 0\n        stunonly: false\n        derpport: 0\n",
        )
        .unwrap();
        let m = load_file(&p).unwrap();
        let r = &m.regions[&900];
        assert_eq!(r.region_code, "custom");
        assert_eq!(r.nodes[0].host_name, "derp.example.com");
        assert_eq!(r.nodes[0].ipv4, "192.0.2.10");
        std::fs::write(&p, "regions: [1, 2]").unwrap();
        let err = format!("{:#}", load_file(&p).unwrap_err());
        assert!(err.contains("is not a DERP map"), "{err}");
    }
}
