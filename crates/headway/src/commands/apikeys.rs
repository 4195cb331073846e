//! `headway apikeys create|list|expire|delete`.
//!
//! The key text is printed once, by `create`, and nowhere else.

use anyhow::Context;
use chrono::{DateTime, Utc};
use headway_api::wire::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, Empty, ExpireApiKeyRequest, Id,
    ListApiKeysResponse,
};
use headway_state::clock::{Clock, SystemClock};

use super::Ctx;
use crate::cli::{ApiKeySelector, ApikeysCommand, CreateApiKey};
use crate::client::encode;
use crate::duration::parse_duration;
use crate::output::{self, Table};

pub async fn run(ctx: &Ctx, command: ApikeysCommand) -> anyhow::Result<()> {
    match command {
        ApikeysCommand::Create(args) => create(ctx, args, SystemClock.now()).await,
        ApikeysCommand::List => list(ctx).await,
        ApikeysCommand::Expire(key) => expire(ctx, key).await,
        ApikeysCommand::Delete(key) => delete(ctx, key).await,
    }
}

async fn create(ctx: &Ctx, args: CreateApiKey, now: DateTime<Utc>) -> anyhow::Result<()> {
    let valid_for = parse_duration(&args.expiration).context("--expiration")?;
    let expiration = chrono::Duration::from_std(valid_for)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .with_context(|| format!("--expiration {} is too far in the future", args.expiration))?;
    let request = CreateApiKeyRequest {
        expiration: Some(expiration),
        description: args.description,
    };
    let created: CreateApiKeyResponse = ctx.client.post("/api/v1/apikey", &request).await?;
    // The key alone, so that `KEY=$(headway apikeys create)` works.
    ctx.out.print(&created, || created.api_key.clone())
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let listed: ListApiKeysResponse = ctx.client.get("/api/v1/apikey").await?;
    ctx.out.print(&listed.api_keys, || {
        keys_table(&listed.api_keys).to_string()
    })
}

fn keys_table(keys: &[ApiKey]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "Prefix",
        "Expiration",
        "Created",
        "Last used",
        "Description",
    ]);
    for k in keys {
        table.row(vec![
            k.id.to_string(),
            k.prefix.clone(),
            output::optional_time(&k.expiration, "never"),
            output::time(&k.created_at),
            output::optional_time(&k.last_seen, "never"),
            k.description.clone(),
        ]);
    }
    table
}

fn id_of(id: u64) -> anyhow::Result<Id> {
    id.to_string()
        .parse::<Id>()
        .with_context(|| format!("--id {id}"))
}

async fn expire(ctx: &Ctx, key: ApiKeySelector) -> anyhow::Result<()> {
    let request = ExpireApiKeyRequest {
        prefix: key.prefix.unwrap_or_default(),
        id: key.id.map(id_of).transpose()?.unwrap_or_default(),
    };
    let done: Empty = ctx.client.post("/api/v1/apikey/expire", &request).await?;
    ctx.out.print(&done, || "Key expired".into())
}

async fn delete(ctx: &Ctx, key: ApiKeySelector) -> anyhow::Result<()> {
    let path = match (key.prefix, key.id) {
        (_, Some(id)) => format!("/api/v1/apikey/-?id={}", id_of(id)?),
        (Some(prefix), None) => format!("/api/v1/apikey/{}", encode(&prefix)),
        (None, None) => anyhow::bail!(
            "name the key with --prefix PREFIX or --id ID (see `headway apikeys list`)"
        ),
    };
    let done: Empty = ctx.client.delete(&path).await?;
    ctx.out.print(&done, || "Key deleted".into())
}
