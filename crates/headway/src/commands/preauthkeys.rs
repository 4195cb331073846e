//! `headway preauthkeys create|list|expire|delete`.
//!
//! The key text is printed once, by `create`, and nowhere else.

use anyhow::Context;
use chrono::{DateTime, Utc};
use headway_api::wire::{
    CreatePreAuthKeyRequest, Empty, ExpirePreAuthKeyRequest, Id, ListPreAuthKeysResponse,
    PreAuthKey, PreAuthKeyResponse,
};
use headway_state::clock::{Clock, SystemClock};

use super::Ctx;
use crate::cli::{CreateKey, KeySelector, PreauthkeysArgs, PreauthkeysCommand};
use crate::client::encode;
use crate::duration::parse_duration;
use crate::output::{self, Table};

pub async fn run(ctx: &Ctx, args: PreauthkeysArgs) -> anyhow::Result<()> {
    let user = args.user.as_deref();
    match args.command {
        PreauthkeysCommand::Create(create_args) => {
            create(ctx, user, create_args, SystemClock.now()).await
        }
        PreauthkeysCommand::List => list(ctx, user).await,
        PreauthkeysCommand::Expire(key) => expire(ctx, user, key).await,
        PreauthkeysCommand::Delete(key) => delete(ctx, key).await,
    }
}

async fn create(
    ctx: &Ctx,
    user: Option<&str>,
    args: CreateKey,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let valid_for = parse_duration(&args.expiration).context("--expiration")?;
    let expiration = chrono::Duration::from_std(valid_for)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .with_context(|| format!("--expiration {} is too far in the future", args.expiration))?;
    let user = match user {
        Some(user) => ctx.find_user(user).await?.id,
        None => Id::default(),
    };
    let request = CreatePreAuthKeyRequest {
        user,
        reusable: args.reusable,
        ephemeral: args.ephemeral,
        expiration: Some(expiration),
        acl_tags: args.tags.into_iter().filter(|t| !t.is_empty()).collect(),
    };
    let created: PreAuthKeyResponse = ctx.client.post("/api/v1/preauthkey", &request).await?;
    // People get the key alone, so that `KEY=$(headway preauthkeys create …)` works.
    ctx.out
        .print(&created.pre_auth_key, || created.pre_auth_key.key.clone())
}

async fn list(ctx: &Ctx, user: Option<&str>) -> anyhow::Result<()> {
    let query = user
        .map(|u| format!("?user={}", encode(u)))
        .unwrap_or_default();
    let listed: ListPreAuthKeysResponse = ctx
        .client
        .get(&format!("/api/v1/preauthkey{query}"))
        .await?;
    ctx.out.print(&listed.pre_auth_keys, || {
        keys_table(&listed.pre_auth_keys).to_string()
    })
}

pub fn keys_table(keys: &[PreAuthKey]) -> Table {
    let mut table = Table::new(&[
        "ID",
        "Key/Prefix",
        "Reusable",
        "Ephemeral",
        "Used",
        "Expiration",
        "Created",
        "Owner",
    ]);
    for k in keys {
        let owner = if !k.acl_tags.is_empty() {
            k.acl_tags.join(", ")
        } else {
            k.user
                .as_ref()
                .map(|u| u.name.clone())
                .unwrap_or_else(|| "-".into())
        };
        table.row(vec![
            k.id.to_string(),
            k.key.clone(),
            k.reusable.to_string(),
            k.ephemeral.to_string(),
            k.used.to_string(),
            output::optional_time(&k.expiration, "-"),
            output::time(&k.created_at),
            owner,
        ]);
    }
    table
}

/// The request naming the key: by id, or by the text given (its id, its
/// full text or its prefix), with the owner when `--user` is given.
async fn key_request(
    ctx: &Ctx,
    user: Option<&str>,
    key: KeySelector,
) -> anyhow::Result<ExpirePreAuthKeyRequest> {
    let user = match user {
        Some(user) => ctx.find_user(user).await?.id,
        None => Id::default(),
    };
    Ok(match (key.id, key.key) {
        (Some(id), _) => ExpirePreAuthKeyRequest {
            id: id_of(id)?,
            user,
            key: String::new(),
        },
        (None, Some(text)) => match text.parse::<Id>() {
            Ok(id) => ExpirePreAuthKeyRequest {
                id,
                user,
                key: String::new(),
            },
            Err(_) => ExpirePreAuthKeyRequest {
                id: Id::default(),
                user,
                key: text,
            },
        },
        (None, None) => anyhow::bail!("name the key with --id ID (see `headway preauthkeys list`)"),
    })
}

fn id_of(id: u64) -> anyhow::Result<Id> {
    id.to_string()
        .parse::<Id>()
        .with_context(|| format!("--id {id}"))
}

async fn expire(ctx: &Ctx, user: Option<&str>, key: KeySelector) -> anyhow::Result<()> {
    let request = key_request(ctx, user, key).await?;
    let done: Empty = ctx
        .client
        .post("/api/v1/preauthkey/expire", &request)
        .await?;
    ctx.out.print(&done, || "Key expired".into())
}

async fn delete(ctx: &Ctx, key: KeySelector) -> anyhow::Result<()> {
    let id = match (key.id, key.key) {
        (Some(id), _) => id_of(id)?,
        (None, Some(text)) => text.parse::<Id>().with_context(|| {
            format!("{text:?}: delete names the key by its id (see `headway preauthkeys list`)")
        })?,
        (None, None) => anyhow::bail!("name the key with --id ID (see `headway preauthkeys list`)"),
    };
    let done: Empty = ctx
        .client
        .delete(&format!("/api/v1/preauthkey?id={id}"))
        .await?;
    ctx.out.print(&done, || "Key deleted".into())
}
