//! `headway oauth-clients create|list|delete`: the OAuth clients of the
//! Tailscale-compatible v2 API.
//!
//! The secret is printed once, by `create`, and nowhere else.

use headway_api::wire::{
    CreateOAuthClientRequest, CreateOAuthClientResponse, Empty, ListOAuthClientsResponse,
    OAuthClient,
};

use super::Ctx;
use crate::cli::{CreateOauthClient, OauthClientSelector, OauthClientsCommand};
use crate::client::encode;
use crate::output::{self, Table};

pub async fn run(ctx: &Ctx, command: OauthClientsCommand) -> anyhow::Result<()> {
    match command {
        OauthClientsCommand::Create(args) => create(ctx, args).await,
        OauthClientsCommand::List => list(ctx).await,
        OauthClientsCommand::Delete(args) => delete(ctx, args).await,
    }
}

async fn create(ctx: &Ctx, args: CreateOauthClient) -> anyhow::Result<()> {
    let request = CreateOAuthClientRequest {
        description: args.description,
        scopes: nonempty(args.scopes),
        tags: nonempty(args.tags),
    };
    let created: CreateOAuthClientResponse =
        ctx.client.post("/api/v1/oauthclient", &request).await?;
    ctx.out.print(&created, || {
        format!(
            "OAuth client {} created.\nSecret (shown once, store it now): {}",
            created.oauth_client.client_id, created.client_secret
        )
    })
}

fn nonempty(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let listed: ListOAuthClientsResponse = ctx.client.get("/api/v1/oauthclient").await?;
    ctx.out.print(&listed.oauth_clients, || {
        clients_table(&listed.oauth_clients).to_string()
    })
}

fn clients_table(clients: &[OAuthClient]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "Client id",
        "Scopes",
        "Tags",
        "Description",
        "Created",
    ]);
    for c in clients {
        table.row(vec![
            c.id.to_string(),
            c.client_id.clone(),
            c.scopes.join(","),
            c.tags.join(","),
            c.description.clone(),
            output::time(&c.created_at),
        ]);
    }
    table
}

async fn delete(ctx: &Ctx, args: OauthClientSelector) -> anyhow::Result<()> {
    let done: Empty = ctx
        .client
        .delete(&format!("/api/v1/oauthclient/{}", encode(args.id.trim())))
        .await?;
    ctx.out
        .print(&done, || format!("OAuth client {} deleted", args.id.trim()))
}
