//! `headway nodes list|delete|expire|rename|move|tag|approve-routes|list-routes`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use headway_api::wire::{
    Empty, ExpireNodeRequest, ListNodesResponse, MoveNodeRequest, Node, NodeResponse,
    SetApprovedRoutesRequest, SetTagsRequest,
};
use headway_state::clock::{Clock, SystemClock};

use super::Ctx;
use crate::cli::{
    ApproveRoutes, ExpireNode, ListNodes, ListRoutes, MoveNode, NodeSelector, NodesCommand,
    RenameNode, TagNode,
};
use crate::client::encode;
use crate::output::{self, Table};

pub async fn run(ctx: &Ctx, command: NodesCommand) -> anyhow::Result<()> {
    match command {
        NodesCommand::List(args) => list(ctx, args).await,
        NodesCommand::Delete(args) => delete(ctx, args).await,
        NodesCommand::Expire(args) => expire(ctx, args).await,
        NodesCommand::Rename(args) => rename(ctx, args).await,
        NodesCommand::Move(args) => move_to(ctx, args).await,
        NodesCommand::Tag(args) => tag(ctx, args).await,
        NodesCommand::Register(args) => super::auth::register(ctx, &args.user, &args.key).await,
        NodesCommand::ApproveRoutes(args) => approve_routes(ctx, args).await,
        NodesCommand::ListRoutes(args) => list_routes(ctx, args).await,
    }
}

fn node_path(node: &NodeSelector) -> String {
    format!("/api/v1/node/{}", node.identifier)
}

async fn list(ctx: &Ctx, args: ListNodes) -> anyhow::Result<()> {
    let query = args
        .user
        .map(|u| format!("?user={}", encode(&u)))
        .unwrap_or_default();
    let listed: ListNodesResponse = ctx.client.get(&format!("/api/v1/node{query}")).await?;
    ctx.out.print(&listed.nodes, || {
        nodes_table(&listed.nodes, SystemClock.now()).to_string()
    })
}

/// `mkey:0123abcd`: the key's type and its first 8 hex digits.
fn short_key(key: &str) -> String {
    match key.split_once(':') {
        Some((kind, hex)) => format!("{kind}:{}", hex.get(..8).unwrap_or(hex)),
        None => key.to_string(),
    }
}

pub fn nodes_table(nodes: &[Node], now: DateTime<Utc>) -> Table {
    let mut table = Table::new(&[
        "ID",
        "Hostname",
        "Name",
        "MachineKey",
        "NodeKey",
        "User",
        "Tags",
        "IP addresses",
        "Ephemeral",
        "Last seen",
        "Expiration",
        "Connected",
        "Expired",
    ]);
    for n in nodes {
        let expired = n.expiry.is_some_and(|e| e <= now);
        table.row(vec![
            n.id.to_string(),
            n.name.clone(),
            n.given_name.clone(),
            short_key(&n.machine_key),
            short_key(&n.node_key),
            n.user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
            n.tags.join(", "),
            n.ip_addresses.join(", "),
            n.pre_auth_key
                .as_ref()
                .is_some_and(|k| k.ephemeral)
                .to_string(),
            output::optional_time(&n.last_seen, ""),
            output::optional_time(&n.expiry, "N/A"),
            if n.online { "online" } else { "offline" }.into(),
            if expired { "yes" } else { "no" }.into(),
        ]);
    }
    table
}

async fn delete(ctx: &Ctx, args: NodeSelector) -> anyhow::Result<()> {
    let path = node_path(&args);
    let node: NodeResponse = ctx.client.get(&path).await?;
    let question = format!(
        "Do you want to remove the node {} ({})?",
        node.node.given_name, node.node.id
    );
    if !ctx.confirm(question).await? {
        return ctx
            .out
            .print(&serde_json::json!({"result": "Node not deleted"}), || {
                "Node not deleted".into()
            });
    }
    let done: Empty = ctx.client.delete(&path).await?;
    ctx.out.print(&done, || "Node deleted".into())
}

async fn expire(ctx: &Ctx, args: ExpireNode) -> anyhow::Result<()> {
    let expiry = args
        .expiry
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| {
                    format!(
                        "--expiry {text:?} is not an RFC 3339 time such as 2026-08-27T10:00:00Z"
                    )
                })
        })
        .transpose()?;
    let request = ExpireNodeRequest {
        expiry,
        disable_expiry: args.disable,
    };
    let node: NodeResponse = ctx
        .client
        .post(&format!("{}/expire", node_path(&args.node)), &request)
        .await?;
    let done = if args.disable {
        "Node expiry disabled"
    } else {
        "Node expired"
    };
    ctx.out.print(&node.node, || done.into())
}

async fn rename(ctx: &Ctx, args: RenameNode) -> anyhow::Result<()> {
    let path = format!(
        "{}/rename/{}",
        node_path(&args.node),
        encode(&args.new_name)
    );
    let node: NodeResponse = ctx.client.post(&path, &Empty {}).await?;
    ctx.out.print(&node.node, || "Node renamed".into())
}

async fn move_to(ctx: &Ctx, args: MoveNode) -> anyhow::Result<()> {
    let user = ctx.find_user(&args.user).await?;
    let request = MoveNodeRequest { user: user.id };
    let node: NodeResponse = ctx
        .client
        .post(&format!("{}/user", node_path(&args.node)), &request)
        .await?;
    ctx.out
        .print(&node.node, || "Node moved to another user".into())
}

async fn tag(ctx: &Ctx, args: TagNode) -> anyhow::Result<()> {
    let request = SetTagsRequest {
        tags: args.tags.into_iter().filter(|t| !t.is_empty()).collect(),
    };
    let node: NodeResponse = ctx
        .client
        .post(&format!("{}/tags", node_path(&args.node)), &request)
        .await?;
    ctx.out.print(&node.node, || "Node updated".into())
}

async fn approve_routes(ctx: &Ctx, args: ApproveRoutes) -> anyhow::Result<()> {
    let request = SetApprovedRoutesRequest {
        routes: args
            .routes
            .into_iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect(),
    };
    let node: NodeResponse = ctx
        .client
        .post(
            &format!("{}/approve_routes", node_path(&args.node)),
            &request,
        )
        .await?;
    ctx.out.print(&node.node, || "Node updated".into())
}

/// The nodes with routes (advertised, approved or served), as headscale's
/// `list-routes` shows them.
async fn list_routes(ctx: &Ctx, args: ListRoutes) -> anyhow::Result<()> {
    let nodes: Vec<Node> = match args.identifier {
        Some(id) => {
            let node: NodeResponse = ctx.client.get(&format!("/api/v1/node/{id}")).await?;
            vec![node.node]
        }
        None => {
            let listed: ListNodesResponse = ctx.client.get("/api/v1/node").await?;
            listed.nodes
        }
    };
    let nodes: Vec<Node> = nodes
        .into_iter()
        .filter(|n| {
            !(n.approved_routes.is_empty()
                && n.available_routes.is_empty()
                && n.subnet_routes.is_empty())
        })
        .collect();
    ctx.out.print(&nodes, || routes_table(&nodes).to_string())
}

pub fn routes_table(nodes: &[Node]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "Hostname",
        "Approved",
        "Available",
        "Serving (Primary)",
    ]);
    for n in nodes {
        table.row(vec![
            n.id.to_string(),
            n.given_name.clone(),
            n.approved_routes.join(", "),
            n.available_routes.join(", "),
            n.subnet_routes.join(", "),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use headway_api::wire::{User, WireRegisterMethod};

    fn node(expiry: Option<DateTime<Utc>>) -> Node {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Node {
            id: 7.into(),
            machine_key: format!("mkey:{}", "ab".repeat(32)),
            node_key: format!("nodekey:{}", "cd".repeat(32)),
            disco_key: format!("discokey:{}", "ef".repeat(32)),
            ip_addresses: vec!["100.64.0.1".into(), "fd7a:115c:a1e0::1".into()],
            name: "My Laptop".into(),
            user: Some(User {
                id: 1.into(),
                name: "alice".into(),
                created_at: t,
                display_name: String::new(),
                email: String::new(),
                provider_id: String::new(),
                provider: String::new(),
                profile_pic_url: String::new(),
            }),
            last_seen: None,
            expiry,
            pre_auth_key: None,
            created_at: t,
            register_method: WireRegisterMethod::RegisterMethodAuthKey,
            given_name: "my-laptop".into(),
            online: true,
            approved_routes: vec![],
            available_routes: vec![],
            subnet_routes: vec![],
            tags: vec!["tag:a".into(), "tag:b".into()],
        }
    }

    #[test]
    fn the_node_table() {
        let now = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let past = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
        let text = nodes_table(&[node(None), node(Some(past))], now).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("ID | Hostname  | Name      | MachineKey    | NodeKey"),
            "{text}"
        );
        let cells: Vec<&str> = lines[1].split(" | ").map(str::trim).collect();
        assert_eq!(
            cells,
            [
                "7",
                "My Laptop",
                "my-laptop",
                "mkey:abababab",
                "nodekey:cdcdcdcd",
                "alice",
                "tag:a, tag:b",
                "100.64.0.1, fd7a:115c:a1e0::1",
                "false",
                "",
                "N/A",
                "online",
                "no"
            ]
        );
        assert!(
            lines[2].ends_with("| 2026-01-15 00:00:00 | online    | yes"),
            "{text}"
        );
    }

    #[test]
    fn the_routes_table() {
        let mut n = node(None);
        n.approved_routes = vec!["10.0.0.0/24".into()];
        n.available_routes = vec!["10.0.0.0/24".into(), "10.1.0.0/24".into()];
        n.subnet_routes = vec!["10.0.0.0/24".into()];
        let text = routes_table(&[n]).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let cells: Vec<&str> = lines[1].split(" | ").map(str::trim).collect();
        assert_eq!(
            cells,
            [
                "7",
                "my-laptop",
                "10.0.0.0/24",
                "10.0.0.0/24, 10.1.0.0/24",
                "10.0.0.0/24"
            ]
        );
    }

    #[test]
    fn short_keys() {
        assert_eq!(short_key("nodekey:0123456789abcdef"), "nodekey:01234567");
        assert_eq!(short_key("mkey:01"), "mkey:01");
        assert_eq!(short_key(""), "");
    }
}
