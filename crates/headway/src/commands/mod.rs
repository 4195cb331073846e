//! The client commands: each parses its flags, makes one or two REST calls
//! through [`Client`], and prints the answer. No decision about the tailnet
//! is taken here; the server refuses what is wrong and says why.

pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod nodes;
pub mod oauth_clients;
pub mod policy;
pub mod preauthkeys;
pub mod users;

use std::io::IsTerminal;

use anyhow::{Context, anyhow, bail};
use headway_api::wire::{Id, ListUsersResponse, User};

use crate::client::{Client, encode};
use crate::output::Output;

/// What every client command needs.
pub struct Ctx {
    pub client: Client,
    pub out: Output,
    /// `--force`: do not ask.
    pub force: bool,
}

impl Ctx {
    /// Asks `question` on the terminal unless `--force`. `Ok(false)` when
    /// the answer is no; an error when there is no terminal to ask on.
    pub async fn confirm(&self, question: String) -> anyhow::Result<bool> {
        if self.force {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "{question} Not confirmed: there is no terminal to ask on; pass --force to go ahead"
            );
        }
        let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            eprint!("{question} [y/N] ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            Ok(line)
        })
        .await
        .context("asking for confirmation")??;
        Ok(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        ))
    }

    /// The user named by `name_or_id`: digits are an id, anything else a name.
    pub async fn find_user(&self, name_or_id: &str) -> anyhow::Result<User> {
        match name_or_id.parse::<Id>() {
            Ok(id) => self.find_user_by(UserKey::Id(id), name_or_id).await,
            Err(_) => {
                self.find_user_by(UserKey::Name(name_or_id), name_or_id)
                    .await
            }
        }
    }

    /// The user with this id, or this name.
    pub async fn find_user_by_id_or_name(
        &self,
        id: Option<u64>,
        name: Option<&str>,
    ) -> anyhow::Result<User> {
        match (id, name) {
            (Some(id), _) => self.find_user(&id.to_string()).await,
            (None, Some(name)) => self.find_user_by(UserKey::Name(name), name).await,
            (None, None) => bail!("name the user with --identifier ID or --name NAME"),
        }
    }

    async fn find_user_by(&self, key: UserKey<'_>, shown: &str) -> anyhow::Result<User> {
        let query = match key {
            UserKey::Id(id) => format!("id={id}"),
            UserKey::Name(name) => format!("name={}", encode(name)),
        };
        let found: ListUsersResponse = self.client.get(&format!("/api/v1/user?{query}")).await?;
        // `id=0` lists everyone: only an exact match counts.
        let mut users = found.users.into_iter().filter(|u| match key {
            UserKey::Id(id) => u.id == id,
            UserKey::Name(name) => u.name == name,
        });
        match (users.next(), users.next()) {
            (Some(user), None) => Ok(user),
            (None, _) => Err(anyhow!(
                "user {shown:?} not found (see `headway users list`)"
            )),
            (Some(_), Some(_)) => Err(anyhow!("{shown:?} names more than one user; give its id")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum UserKey<'a> {
    Id(Id),
    Name(&'a str),
}
