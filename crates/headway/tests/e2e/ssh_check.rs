//! Tailscale SSH with the policy's `check` action, end to end: OpenSSH on
//! the test host connects through the source node (`tailscale nc` as the
//! ProxyCommand) to the Tailscale SSH server of a destination node
//! (`tailscale up --ssh`), which holds the connection and asks Headway over
//! Noise until the check is decided.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::kit::*;

/// `rule` is one SSH rule (or nothing) from alice's devices to `tag:server`.
pub(crate) fn policy(rule: &str) -> String {
    format!(
        r#"{{
  "tagOwners": {{"tag:server": ["alice@"]}},
  "acls": [{{"action": "accept", "src": ["*"], "dst": ["*:*"]}}],
  "ssh": [{rule}]
}}"#
    )
}

pub(crate) fn rule(action: &str, extra: &str) -> String {
    format!(
        r#"{{"action": "{action}", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"]{extra}}}"#
    )
}

/// `ssh root@<ip> echo ok` from `from`, running in the background.
pub(crate) struct Ssh {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Ssh {
    pub(crate) fn start(from: &Node, ip: std::net::Ipv4Addr) -> Ssh {
        let proxy = format!(
            "ProxyCommand={} --socket={} nc %h %p",
            tailscale_dir(&from.version).join("tailscale").display(),
            from.sock().display()
        );
        let mut child = Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=30",
                "-o",
                &proxy,
                &format!("root@{ip}"),
                "echo",
                "ok",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("running ssh (OpenSSH client)");
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Ssh { child, output }
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The auth id of the check link in the banner.
    pub(crate) async fn check_id(&self, server: &Headway) -> String {
        let prefix = format!("{}/register/", server.url());
        eventually(
            Duration::from_secs(40),
            "ssh to print the check link",
            async || {
                self.output()
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(&prefix))
                    .map(str::to_string)
            },
        )
        .await
    }

    pub(crate) async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("ssh did not finish within 60 s: {}", self.output()))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.success(), self.output())
    }

    pub(crate) fn still_waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

pub(crate) async fn set_policy(server: &Headway, text: &str) {
    let path = server.dir.join("policy.hujson");
    std::fs::write(&path, text).unwrap();
    let (ok, out, err) = server
        .cli(&["policy", "set", "--file", path.to_str().unwrap()])
        .await;
    assert!(ok, "headway policy set: {err}{out}");
}

/// Waits until `node`'s SSH policy carries a check rule (`true`) or not.
pub(crate) async fn wait_ssh_policy(node: &Node, check: bool, rules: usize) {
    eventually(
        Duration::from_secs(20),
        &format!("{}'s SSH policy to change", node.name),
        async || {
            let nm = node.netmap().await;
            let policy = &nm["SSHPolicy"];
            let n = policy["rules"].as_array().map_or(0, Vec::len);
            let has_check = policy.to_string().contains("holdAndDelegate");
            (n == rules && has_check == check).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_check_holds_the_connection_until_approved_and_counts_for_the_check_period() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: "policy:\n  mode: database\n".into(),
        },
    )
    .await;
    set_policy(&server, &policy(&rule("check", r#", "checkPeriod": "1h""#))).await;
    let alice_key = server.user_with_key("alice", &[]).await;
    let server_key = server
        .user_with_key("alice", &["--tags", "tag:server"])
        .await;
    let laptop = Node::start(dir.path(), "laptop", MODERN, &[]).await;
    let db = Node::start(dir.path(), "db", MODERN, &[]).await;
    laptop.up_ok(&server, &alice_key).await;
    let (ok, out) = db.up(&server, &server_key, &["--ssh"]).await;
    assert!(ok, "tailscale up --ssh: {out}");
    let db_ip = db.ipv4().await;
    laptop.wait_sees_online(&["db"]).await;
    wait_ssh_policy(&db, true, 1).await;

    // 1. Held: the banner shows the link; nothing runs until approval.
    let mut ssh = Ssh::start(&laptop, db_ip);
    let id = ssh.check_id(&server).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ssh.still_waiting(),
        "ssh went on before approval: {}",
        ssh.output()
    );
    assert!(!ssh.output().lines().any(|l| l == "ok"));
    // The link's page says what to do.
    let page = reqwest::get(format!("{}/register/{id}", server.url()))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(
        body.contains(&format!("headway auth approve --auth-id {id}")) && body.contains("laptop"),
        "{body}"
    );
    // A wrong id is an error naming it; the right one lets ssh through.
    let (ok, _, err) = server
        .cli(&["auth", "approve", "--auth-id", "no-such-id"])
        .await;
    assert!(!ok && err.contains("no-such-id"), "{err}");
    let (ok, out, err) = server.cli(&["auth", "approve", "--auth-id", &id]).await;
    assert!(ok, "headway auth approve: {err}{out}");
    let (ok, out) = ssh.finish().await;
    assert!(ok && out.lines().any(|l| l == "ok"), "{out}");

    // 2. Within the check period: straight through, no link.
    let (ok, out) = Ssh::start(&laptop, db_ip).finish().await;
    assert!(ok && out.lines().any(|l| l == "ok"), "{out}");
    assert!(!out.contains("/register/"), "{out}");

    // 3. checkPeriod "always": held again whatever passed before; a
    //    rejection ends the connection with a message.
    set_policy(
        &server,
        &policy(&rule("check", r#", "checkPeriod": "always""#)),
    )
    .await;
    let ssh = Ssh::start(&laptop, db_ip);
    let id = ssh.check_id(&server).await;
    let (ok, out, err) = server.cli(&["auth", "reject", "--auth-id", &id]).await;
    assert!(ok, "headway auth reject: {err}{out}");
    let (ok, out) = ssh.finish().await;
    assert!(!ok && !out.lines().any(|l| l == "ok"), "{out}");
    assert!(out.contains("refused this SSH connection"), "{out}");

    // 4. An accept rule: straight through, the server is not asked.
    set_policy(&server, &policy(&rule("accept", ""))).await;
    wait_ssh_policy(&db, false, 1).await;
    let (ok, out) = Ssh::start(&laptop, db_ip).finish().await;
    assert!(ok && out.lines().any(|l| l == "ok"), "{out}");
    assert!(!out.contains("/register/"), "{out}");

    // 5. No rule: refused.
    set_policy(&server, &policy("")).await;
    wait_ssh_policy(&db, false, 0).await;
    let (ok, out) = Ssh::start(&laptop, db_ip).finish().await;
    assert!(!ok && !out.lines().any(|l| l == "ok"), "{out}");
    assert!(out.contains("policy does not permit"), "{out}");
}
