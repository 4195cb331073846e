//! The command line: headscale's commands, flags and aliases where they
//! exist. The doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

/// Headway: a self-hosted Tailscale control server.
///
/// `headway serve` runs the server; the other commands manage it through its
/// local socket (`unix_socket` in the config).
#[derive(Debug, Parser)]
#[command(name = "headway", version, propagate_version = true)]
pub struct Cli {
    /// Config file [default: /etc/headway/config.yaml, ~/.headway/config.yaml
    /// or ./config.yaml, the first that exists]
    #[arg(
        short,
        long,
        global = true,
        env = "HEADWAY_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Output format; human-readable when not given
    #[arg(short, long, global = true, value_enum)]
    pub output: Option<Format>,

    /// Do not ask for confirmation
    #[arg(long, global = true)]
    pub force: bool,

    /// A remote server to manage instead of the local one
    /// (https://host[:port], or host:port); needs --api-key [config: cli.address]
    #[arg(long, global = true, env = "HEADWAY_CLI_ADDRESS", value_name = "URL")]
    pub address: Option<String>,

    /// The API key for --address (see `headway apikeys create`) [config: cli.api_key]
    #[arg(
        long,
        global = true,
        env = "HEADWAY_CLI_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server
    Serve,
    /// Manage users
    #[command(
        subcommand,
        visible_alias = "user",
        alias = "namespace",
        alias = "namespaces",
        alias = "ns"
    )]
    Users(UsersCommand),
    /// Manage pre-auth keys, which register nodes without an interactive login
    #[command(visible_alias = "preauthkey", alias = "authkey", alias = "pre")]
    Preauthkeys(PreauthkeysArgs),
    /// Manage nodes
    #[command(
        subcommand,
        visible_alias = "node",
        alias = "machine",
        alias = "machines"
    )]
    Nodes(NodesCommand),
    /// Decide on machines waiting on their AuthURL (`tailscale up` without a key)
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Manage the API keys that open the admin API over the network
    #[command(subcommand, visible_alias = "apikey", alias = "api")]
    Apikeys(ApikeysCommand),
    /// Read the audit log: admin actions and node authentication events
    #[command(subcommand)]
    Audit(crate::commands::audit::AuditCommand),
    /// Manage the access policy (ACLs, grants, tags, SSH rules, autoApprovers)
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage the OAuth clients of the Tailscale-compatible v2 API
    /// (Terraform provider, Kubernetes operator, other Tailscale tools)
    #[command(
        subcommand,
        name = "oauth-clients",
        visible_alias = "oauthclients",
        alias = "oauth-client",
        alias = "oauthclient",
        alias = "oauth"
    )]
    OauthClients(OauthClientsCommand),
    /// Bring a headscale installation's database across (offline: writes
    /// this server's database directly, which must be new)
    #[command(subcommand)]
    Import(ImportCommand),
    /// Copy the SQLite database to FILE, consistently, while the server runs
    Backup(BackupArgs),
    /// Put a backup in place of the SQLite database (stop the server first;
    /// the replaced database is kept beside it)
    Restore(RestoreArgs),
    /// Encrypt the SQLite database in place with database.sqlite.key_path
    /// (SQLCipher; stop the server first; needs a build with `--features sqlcipher`)
    Encrypt,
    /// Check that the running server and its database answer
    Health,
    /// Print the version and the Tailscale clients it supports
    Version,
    /// Work with the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print shell completions, e.g. `headway completions bash > /etc/bash_completion.d/headway`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or with --dir write a page per command,
    /// e.g. `headway man --dir /usr/local/share/man/man1`
    Man {
        /// Directory for headway.1 and one page per subcommand
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check the configuration (same as `config check`)
    #[command(hide = true)]
    Configtest,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration as `headway serve` would, print its warnings,
    /// and exit non-zero if it is invalid
    Check,
}

// --- interactive registration ---------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Register the waiting machine as a node of a user
    Register(AuthRegister),
    /// Let a machine that already has a node log in again (it keeps its owner)
    Approve(AuthId),
    /// Refuse the waiting machine; its `tailscale up` fails
    Reject(AuthId),
}

#[derive(Debug, Args)]
pub struct AuthRegister {
    /// The new node's owner (name or id)
    #[arg(short, long)]
    pub user: String,
    #[command(flatten)]
    pub auth_id: AuthId,
}

#[derive(Debug, Args)]
pub struct AuthId {
    /// The id at the end of the AuthURL the client shows (…/register/<ID>)
    #[arg(long, value_name = "ID")]
    pub auth_id: String,
}

// --- API keys -------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ApikeysCommand {
    /// Create an API key; prints the key, which is shown only this once
    #[command(visible_alias = "c", alias = "new")]
    Create(CreateApiKey),
    /// List API keys (by prefix)
    #[command(visible_alias = "ls", alias = "show")]
    List,
    /// Expire an API key: it opens nothing any more
    #[command(visible_alias = "revoke", alias = "exp", alias = "e")]
    Expire(ApiKeySelector),
    /// Delete an API key
    #[command(visible_alias = "remove", alias = "del")]
    Delete(ApiKeySelector),
}

#[derive(Debug, Args)]
pub struct CreateApiKey {
    /// How long the key is valid, e.g. 30m, 24h, 90d
    #[arg(short, long, default_value = "90d")]
    pub expiration: String,
    /// What the key is for (shown by `apikeys list`)
    #[arg(short, long, default_value = "")]
    pub description: String,
}

/// Which API key: by prefix or by id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ApiKeySelector {
    /// The key's prefix, as listed
    #[arg(short, long)]
    pub prefix: Option<String>,
    /// The key's id
    #[arg(short, long)]
    pub id: Option<u64>,
}

// --- policy -----------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force (HuJSON); says so when there is none
    #[command(visible_alias = "show", alias = "view", alias = "fetch")]
    Get,
    /// Replace the policy (only with `policy.mode: database`); a policy
    /// the server refuses changes nothing
    #[command(visible_alias = "put", alias = "update")]
    Set(PolicyFile),
    /// Check a policy against the tailnet as it is (its users, nodes and the
    /// policy's own tests) without applying it
    Check(PolicyFile),
    /// Show what a policy gives every node: packet filter rules, peers (with
    /// AllowedIPs and PrimaryRoutes), SSH rules and capabilities. With
    /// --topology it runs offline, on a described tailnet; without, the
    /// server explains it for the tailnet as it is, without applying it
    Explain(ExplainPolicy),
}

#[derive(Debug, Args)]
pub struct PolicyFile {
    /// The policy file (HuJSON); `-` reads standard input
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExplainPolicy {
    /// The policy file (HuJSON); `-` reads standard input
    #[arg(short, long, alias = "file", short_alias = 'f', value_name = "FILE")]
    pub policy: PathBuf,
    /// A tailnet described in JSON (users and nodes; the format of the
    /// policy conformance corpus); explains offline, without a server
    #[arg(short, long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

// --- OAuth clients ----------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum OauthClientsCommand {
    /// Create an OAuth client; prints its secret, which is shown only this once
    #[command(visible_alias = "c", alias = "new")]
    Create(CreateOauthClient),
    /// List OAuth clients (without their secrets)
    #[command(visible_alias = "ls", alias = "show")]
    List,
    /// Delete an OAuth client; its access tokens stop working at once
    #[command(visible_alias = "remove", alias = "del")]
    Delete(OauthClientSelector),
}

#[derive(Debug, Args)]
pub struct CreateOauthClient {
    /// A scope its tokens are granted (repeat, or comma-separated): all,
    /// devices:core, devices:routes, auth_keys, policy_file, each also as
    /// `<scope>:read`
    #[arg(
        short,
        long = "scope",
        alias = "scopes",
        value_delimiter = ',',
        required = true
    )]
    pub scopes: Vec<String>,
    /// A tag its tokens may give to devices and auth keys (repeat, or
    /// comma-separated); required with write access to auth keys
    #[arg(short, long = "tag", alias = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// What the client is for
    #[arg(short, long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct OauthClientSelector {
    /// The client id, as listed
    #[arg(short, long)]
    pub id: String,
}

// --- users ------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user
    #[command(visible_alias = "c", alias = "new")]
    Create(CreateUser),
    /// List users
    #[command(visible_alias = "ls", alias = "show")]
    List(ListUsers),
    /// Rename a user
    #[command(visible_alias = "mv")]
    Rename(RenameUser),
    /// Delete a user (and its pre-auth keys); it must own no nodes
    #[command(visible_alias = "destroy")]
    Delete(UserSelector),
}

#[derive(Debug, Args)]
pub struct CreateUser {
    /// The user's name (`alice`, `alice@example.com`)
    pub name: String,
    /// Display name
    #[arg(short, long)]
    pub display_name: Option<String>,
    /// E-mail address
    #[arg(short, long)]
    pub email: Option<String>,
    /// Profile picture URL
    #[arg(short, long)]
    pub picture_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListUsers {
    /// Only the user with this id
    #[arg(short, long, value_name = "ID")]
    pub identifier: Option<u64>,
    /// Only the user with this name
    #[arg(short, long)]
    pub name: Option<String>,
    /// Only users with this e-mail address
    #[arg(short, long)]
    pub email: Option<String>,
}

/// Which user: by id or by name.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UserSelector {
    /// The user's id
    #[arg(short, long, value_name = "ID")]
    pub identifier: Option<u64>,
    /// The user's name
    #[arg(short, long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenameUser {
    #[command(flatten)]
    pub user: UserSelector,
    /// The new name
    #[arg(short = 'r', long)]
    pub new_name: String,
}

// --- pre-auth keys --------------------------------------------------------------

#[derive(Debug, Args)]
pub struct PreauthkeysArgs {
    /// The user (name or id): owner of a new key, or whose keys to list
    #[arg(short, long, global = true)]
    pub user: Option<String>,

    #[command(subcommand)]
    pub command: PreauthkeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum PreauthkeysCommand {
    /// Create a pre-auth key; prints the key, which is shown only this once
    #[command(visible_alias = "c", alias = "new")]
    Create(CreateKey),
    /// List pre-auth keys (all, or the user's with --user)
    #[command(visible_alias = "ls", alias = "show")]
    List,
    /// Expire a pre-auth key: it registers no more nodes
    #[command(visible_alias = "revoke", alias = "exp", alias = "e")]
    Expire(KeySelector),
    /// Delete a pre-auth key; nodes registered with it keep working
    #[command(visible_alias = "del", alias = "rm", alias = "d")]
    Delete(KeySelector),
}

#[derive(Debug, Args)]
pub struct CreateKey {
    /// The key registers any number of nodes (default: one)
    #[arg(long)]
    pub reusable: bool,
    /// Nodes it registers are deleted when they go offline
    #[arg(long)]
    pub ephemeral: bool,
    /// How long the key is valid, e.g. 30m, 24h, 7d
    #[arg(short, long, default_value = "1h")]
    pub expiration: String,
    /// Tags for the nodes it registers (tag:a,tag:b); with tags and no
    /// --user, the nodes are owned by their tags
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
}

/// Which key: by id, or by its text or prefix.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KeySelector {
    /// The key's id
    #[arg(short, long)]
    pub id: Option<u64>,
    /// The key's id, its full text, or its prefix as listed
    pub key: Option<String>,
}

// --- nodes ------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List nodes
    #[command(visible_alias = "ls", alias = "show")]
    List(ListNodes),
    /// Delete a node
    #[command(visible_alias = "del")]
    Delete(NodeSelector),
    /// Expire a node's key: it must log in again
    #[command(visible_alias = "logout", alias = "exp", alias = "e")]
    Expire(ExpireNode),
    /// Rename a node (its name in the tailnet, a DNS label)
    Rename(RenameNode),
    /// Give a node to another user
    #[command(visible_alias = "mv")]
    Move(MoveNode),
    /// Set a node's tags
    #[command(visible_alias = "tags", alias = "t")]
    Tag(TagNode),
    /// Register a machine waiting on its AuthURL (same as `auth register`)
    Register(RegisterNode),
    /// Set a node's approved routes (the whole list; subnet routes, and
    /// 0.0.0.0/0 or ::/0 for an exit node). A route is served once the node
    /// advertises it too
    ApproveRoutes(ApproveRoutes),
    /// List the routes of nodes that advertise or have approved routes:
    /// approved, available (advertised) and served as primary
    #[command(visible_alias = "lsr", alias = "routes")]
    ListRoutes(ListRoutes),
}

#[derive(Debug, Args)]
pub struct ApproveRoutes {
    #[command(flatten)]
    pub node: NodeSelector,
    /// The routes to approve (comma-separated, e.g. 10.0.0.0/8,192.168.0.0/24);
    /// an empty string withdraws every approval
    #[arg(short, long, value_delimiter = ',', num_args = 0.., required = true)]
    pub routes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListRoutes {
    /// Only this node
    #[arg(short, long, value_name = "ID")]
    pub identifier: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RegisterNode {
    /// The new node's owner (name or id)
    #[arg(short, long)]
    pub user: String,
    /// The id at the end of the AuthURL the client shows (…/register/<ID>)
    #[arg(short, long)]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct ListNodes {
    /// Only the nodes of this user (name or id)
    #[arg(short, long)]
    pub user: Option<String>,
    /// Accepted for headscale compatibility; tags are always shown
    #[arg(short, long, hide = true)]
    pub tags: bool,
}

#[derive(Debug, Args)]
pub struct NodeSelector {
    /// The node's id
    #[arg(short, long, value_name = "ID")]
    pub identifier: u64,
}

#[derive(Debug, Args)]
pub struct ExpireNode {
    #[command(flatten)]
    pub node: NodeSelector,
    /// When the key expires (RFC 3339, e.g. 2026-08-27T10:00:00Z); now when not given
    #[arg(short, long, conflicts_with = "disable")]
    pub expiry: Option<String>,
    /// Never expire the node's key
    #[arg(short, long)]
    pub disable: bool,
}

#[derive(Debug, Args)]
pub struct RenameNode {
    #[command(flatten)]
    pub node: NodeSelector,
    /// The new name
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct MoveNode {
    #[command(flatten)]
    pub node: NodeSelector,
    /// The new owner (name or id)
    #[arg(short, long)]
    pub user: String,
}

#[derive(Debug, Args)]
pub struct TagNode {
    #[command(flatten)]
    pub node: NodeSelector,
    /// The node's new tags (tag:a,tag:b); none removes all tags of a user-owned node
    #[arg(short, long, value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headscale_spellings_parse() {
        for args in [
            &[
                "headway",
                "users",
                "create",
                "alice",
                "--display-name",
                "Alice",
                "-e",
                "a@example.com",
            ][..],
            &["headway", "namespaces", "ls", "-o", "json"],
            &["headway", "users", "rename", "-i", "1", "--new-name", "bob"],
            &["headway", "users", "destroy", "--name", "bob", "--force"],
            &[
                "headway",
                "preauthkeys",
                "--user",
                "1",
                "create",
                "--reusable",
                "--expiration",
                "24h",
            ],
            &[
                "headway",
                "preauthkeys",
                "create",
                "-u",
                "alice",
                "--tags",
                "tag:a,tag:b",
            ],
            &[
                "headway",
                "preauthkeys",
                "list",
                "-u",
                "alice",
                "-o",
                "yaml",
            ],
            &["headway", "preauthkeys", "expire", "--id", "3"],
            &[
                "headway",
                "authkey",
                "revoke",
                "hskey-auth-0123456789ab-***",
            ],
            &["headway", "preauthkeys", "delete", "-i", "3"],
            &["headway", "nodes", "list", "-u", "alice", "-t"],
            &[
                "headway",
                "machines",
                "expire",
                "-i",
                "3",
                "--expiry",
                "2026-01-01T00:00:00Z",
            ],
            &["headway", "nodes", "rename", "-i", "3", "laptop"],
            &["headway", "nodes", "move", "-i", "3", "--user", "bob"],
            &[
                "headway", "nodes", "tag", "-i", "3", "-t", "tag:a", "-t", "tag:b",
            ],
            &["headway", "nodes", "delete", "-i", "3", "--force"],
            &[
                "headway",
                "-c",
                "/etc/headway/config.yaml",
                "config",
                "check",
            ],
            &["headway", "version", "-o", "json-line"],
            &["headway", "completions", "zsh"],
            &["headway", "man"],
            &["headway", "man", "--dir", "/tmp/man"],
            &[
                "headway",
                "auth",
                "register",
                "--user",
                "alice",
                "--auth-id",
                "abc",
            ],
            &["headway", "auth", "approve", "--auth-id", "abc"],
            &["headway", "auth", "reject", "--auth-id", "abc"],
            &["headway", "nodes", "register", "-u", "alice", "-k", "abc"],
            &["headway", "apikeys", "create", "--expiration", "30d"],
            &["headway", "apikeys", "list", "-o", "json"],
            &["headway", "apikeys", "expire", "--prefix", "0123456789ab"],
            &["headway", "apikey", "delete", "-p", "0123456789ab"],
            &["headway", "apikeys", "delete", "--id", "3"],
            &["headway", "policy", "get"],
            &["headway", "policy", "set", "--file", "policy.hujson"],
            &["headway", "policy", "check", "-f", "-"],
            &[
                "headway",
                "policy",
                "explain",
                "--policy",
                "p.hujson",
                "--topology",
                "t.json",
                "-o",
                "json",
            ],
            &["headway", "policy", "explain", "-f", "p.hujson"],
            &[
                "headway",
                "nodes",
                "approve-routes",
                "--identifier",
                "3",
                "--routes",
                "10.0.0.0/8,192.168.0.0/24",
            ],
            &["headway", "nodes", "approve-routes", "-i", "3", "-r", ""],
            &["headway", "nodes", "list-routes"],
            &["headway", "nodes", "expire", "-i", "3", "--disable"],
            &["headway", "nodes", "lsr", "-i", "3", "-o", "json"],
            &[
                "headway",
                "oauth-clients",
                "create",
                "--scope",
                "devices:core",
                "-s",
                "auth_keys",
                "--tag",
                "tag:k8s",
                "-d",
                "operator",
            ],
            &[
                "headway",
                "oauth-clients",
                "create",
                "--scopes",
                "devices:core,auth_keys",
                "--tags",
                "tag:k8s",
            ],
            &["headway", "oauthclients", "list"],
            &["headway", "oauth", "delete", "--id", "0123456789ab"],
            &[
                "headway",
                "--address",
                "https://hw.example.com",
                "--api-key",
                "hskey-api-x",
                "users",
                "list",
            ],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
    }

    #[test]
    fn a_user_is_named_once() {
        assert!(Cli::try_parse_from(["headway", "users", "delete"]).is_err());
        assert!(
            Cli::try_parse_from(["headway", "users", "delete", "-i", "1", "-n", "alice"]).is_err()
        );
        assert!(Cli::try_parse_from(["headway", "preauthkeys", "expire"]).is_err());
    }

    #[test]
    fn routes_split_on_commas_and_an_empty_list_withdraws() {
        let cli = Cli::try_parse_from([
            "headway",
            "nodes",
            "approve-routes",
            "-i",
            "1",
            "-r",
            "10.0.0.0/8,0.0.0.0/0",
        ])
        .unwrap();
        let Command::Nodes(NodesCommand::ApproveRoutes(a)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(a.routes, ["10.0.0.0/8", "0.0.0.0/0"]);
        assert!(Cli::try_parse_from(["headway", "nodes", "approve-routes", "-i", "1"]).is_err());
        assert!(Cli::try_parse_from(["headway", "oauth-clients", "create"]).is_err());
    }

    #[test]
    fn tags_split_on_commas() {
        let cli = Cli::try_parse_from(["headway", "nodes", "tag", "-i", "1", "-t", "tag:a,tag:b"])
            .unwrap();
        let Command::Nodes(NodesCommand::Tag(tag)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(tag.tags, ["tag:a", "tag:b"]);
    }
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Users, nodes (keys, addresses, names, tags, routes, expiry), pre-auth
    /// keys, API keys and the stored policy from a headscale database, ids
    /// kept. Clients keep working once Headway serves with headscale's Noise
    /// key (noise.private_key_path).
    Headscale(ImportHeadscale),
}

#[derive(Debug, Args)]
pub struct ImportHeadscale {
    /// headscale's database: the path of its db.sqlite, or a postgres:// URL
    #[arg(long, value_name = "DB")]
    pub from: Option<String>,
    /// headscale's config.yaml, to find its database (when --from is not
    /// given) and its Noise key. (Headway's own config is --config.)
    #[arg(long, value_name = "FILE")]
    pub headscale_config: Option<PathBuf>,
    /// Read and convert, report what would be written, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy (must not exist yet)
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `headway backup`
    pub file: PathBuf,
}
