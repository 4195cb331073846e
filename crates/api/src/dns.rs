//! `GET /api/v1/dns`: the DNS settings the server gives its nodes. Read
//! only: they come from the configuration file (`dns.*`) and the extra
//! records file, which the server follows; there is nothing to set here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use headway_state::Tailnet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<Arc<Tailnet>> {
    OpenApiRouter::new().routes(routes!(get_dns))
}

/// An extra DNS record (`dns.extra_records` or `dns.extra_records_path`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DnsRecord {
    pub name: String,
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The DNS settings in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsResponse {
    pub magic_dns: bool,
    /// MagicDNS names are `<node>.<baseDomain>`.
    pub base_domain: String,
    pub override_local_dns: bool,
    /// Global resolvers (addresses or DoH/DoT URLs).
    pub nameservers: Vec<String>,
    /// Split DNS: domain → its resolvers.
    pub split: BTreeMap<String, Vec<String>>,
    pub search_domains: Vec<String>,
    /// From the configuration and the extra records file.
    pub extra_records: Vec<DnsRecord>,
}

/// Get DNS settings
///
/// What every node is told about DNS. Set in the configuration file
/// (`dns.*`); the extra records file is followed while the server runs.
#[utoipa::path(
    get, path = "/api/v1/dns", operation_id = "getDns", tag = "DNS",
    responses((status = 200, body = DnsResponse))
)]
pub(crate) async fn get_dns(State(tailnet): State<Arc<Tailnet>>) -> Json<DnsResponse> {
    let dns = &tailnet.settings().dns;
    let extra = tailnet.extra_dns_records();
    let extra_records = dns
        .extra_records
        .iter()
        .chain(extra.iter())
        .map(|r| DnsRecord {
            name: r.name.clone(),
            kind: if r.r#type.is_empty() {
                "A".to_string()
            } else {
                r.r#type.clone()
            },
            value: r.value.clone(),
        })
        .collect();
    Json(DnsResponse {
        magic_dns: dns.magic_dns,
        base_domain: dns.base_domain.clone(),
        override_local_dns: dns.override_local_dns,
        nameservers: dns.nameservers.clone(),
        split: dns.split.clone(),
        search_domains: dns.search_domains.clone(),
        extra_records,
    })
}
