//! `headway users create|list|rename|delete`.

use headway_api::wire::{CreateUserRequest, Empty, ListUsersResponse, User, UserResponse};

use super::Ctx;
use crate::cli::{CreateUser, ListUsers, RenameUser, UserSelector, UsersCommand};
use crate::client::encode;
use crate::output::{self, Table};

pub async fn run(ctx: &Ctx, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create(args) => create(ctx, args).await,
        UsersCommand::List(args) => list(ctx, args).await,
        UsersCommand::Rename(args) => rename(ctx, args).await,
        UsersCommand::Delete(args) => delete(ctx, args).await,
    }
}

async fn create(ctx: &Ctx, args: CreateUser) -> anyhow::Result<()> {
    let request = CreateUserRequest {
        name: args.name,
        display_name: args.display_name.unwrap_or_default(),
        email: args.email.unwrap_or_default(),
        picture_url: args.picture_url.unwrap_or_default(),
    };
    let created: UserResponse = ctx.client.post("/api/v1/user", &request).await?;
    ctx.out.print(&created.user, || "User created".into())
}

async fn list(ctx: &Ctx, args: ListUsers) -> anyhow::Result<()> {
    // One filter at most, in headscale's order.
    let query = match (args.identifier, args.name, args.email) {
        (Some(id), _, _) if id > 0 => format!("?id={id}"),
        (_, Some(name), _) => format!("?name={}", encode(&name)),
        (_, _, Some(email)) => format!("?email={}", encode(&email)),
        _ => String::new(),
    };
    let listed: ListUsersResponse = ctx.client.get(&format!("/api/v1/user{query}")).await?;
    ctx.out
        .print(&listed.users, || users_table(&listed.users).to_string())
}

pub fn users_table(users: &[User]) -> Table {
    let mut table = Table::new(&["ID", "Name", "Username", "Email", "Created"]);
    for u in users {
        table.row(vec![
            u.id.to_string(),
            u.display_name.clone(),
            u.name.clone(),
            u.email.clone(),
            output::time(&u.created_at),
        ]);
    }
    table
}

async fn rename(ctx: &Ctx, args: RenameUser) -> anyhow::Result<()> {
    let user = ctx
        .find_user_by_id_or_name(args.user.identifier, args.user.name.as_deref())
        .await?;
    let path = format!("/api/v1/user/{}/rename/{}", user.id, encode(&args.new_name));
    let renamed: UserResponse = ctx.client.post(&path, &Empty {}).await?;
    ctx.out.print(&renamed.user, || "User renamed".into())
}

async fn delete(ctx: &Ctx, args: UserSelector) -> anyhow::Result<()> {
    let user = ctx
        .find_user_by_id_or_name(args.identifier, args.name.as_deref())
        .await?;
    let question = format!(
        "Do you want to remove the user {:?} ({}) and any associated preauthkeys?",
        user.name, user.id
    );
    if !ctx.confirm(question).await? {
        return ctx
            .out
            .print(&serde_json::json!({"result": "User not destroyed"}), || {
                "User not destroyed".into()
            });
    }
    let done: Empty = ctx
        .client
        .delete(&format!("/api/v1/user/{}", user.id))
        .await?;
    ctx.out.print(&done, || "User destroyed".into())
}
