//! Running zkdns with ZooKeeper credentials: one run of the binary and what it printed
//! ([`run`]), passwords no log could hold by chance, auth files, and authenticated sessions.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zookeeper_client::Client;

use super::ZooKeeper;

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` with `args` and `env` (no credentials from the test's own environment; logs
/// at warn unless `RUST_LOG` is given) to its end.
pub fn run(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Run {
    cmd.args(args).env_remove("ZKDNS_ZK_AUTH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
        cmd.env("RUST_LOG", "warn");
    }
    let out = cmd.output().expect("run zkdns");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A password no log line could hold by chance.
pub fn password() -> String {
    format!("pw-{:016x}-secret", rand::random::<u64>())
}

/// Writes `user:password` to a file of `mode` in `dir`.
pub fn auth_file(dir: &Path, credentials: &str, mode: u32) -> PathBuf {
    let path = dir.join(format!("zk-auth-{mode:o}"));
    std::fs::write(&path, format!("{credentials}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A session authenticated as `credentials` (`user:password`).
pub async fn client_with_auth(zk: &ZooKeeper, credentials: &str) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_auth("digest", credentials.as_bytes())
        .connect(&zk.connect_string())
        .await
        .expect("authenticated ZooKeeper session")
}
