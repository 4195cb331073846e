//! `headway auth register|approve|reject` (and `nodes register`): decisions
//! on machines waiting on their AuthURL.

use headway_api::wire::{AuthDecisionRequest, AuthRegisterRequest, Empty, NodeResponse};

use super::Ctx;
use crate::cli::AuthCommand;

pub async fn run(ctx: &Ctx, command: AuthCommand) -> anyhow::Result<()> {
    match command {
        AuthCommand::Register(args) => register(ctx, &args.user, &args.auth_id.auth_id).await,
        AuthCommand::Approve(args) => {
            let request = AuthDecisionRequest {
                auth_id: args.auth_id,
            };
            let done: Empty = ctx.client.post("/api/v1/auth/approve", &request).await?;
            ctx.out.print(&done, || "Auth request approved".into())
        }
        AuthCommand::Reject(args) => {
            let request = AuthDecisionRequest {
                auth_id: args.auth_id,
            };
            let done: Empty = ctx.client.post("/api/v1/auth/reject", &request).await?;
            ctx.out.print(&done, || "Auth request rejected".into())
        }
    }
}

pub async fn register(ctx: &Ctx, user: &str, auth_id: &str) -> anyhow::Result<()> {
    let request = AuthRegisterRequest {
        user: user.to_string(),
        auth_id: auth_id.to_string(),
    };
    let registered: NodeResponse = ctx.client.post("/api/v1/auth/register", &request).await?;
    let node = registered.node;
    ctx.out
        .print(&node, || format!("Node {} registered", node.given_name))
}
