//! The resolver stacks that containers run, as real programs: the small client programs in
//! `tests/clients/` built once per test run ([`client_programs`]: a static musl 1.2.3 binary,
//! a Go binary with Go's own resolver, the JVM's single-file program, the Python script), and
//! [`in_resolv_ns`], which runs any client in a private mount namespace whose resolv.conf is
//! the test's and whose nsswitch.conf resolves hosts by DNS alone.
//!
//! The toolchains come from Debian packages (`scripts/deps.sh`); a missing one fails the
//! test that needs it, with the package to install, rather than skipping it. The JVM alone
//! may be missing: a machine without a JDK has no JVM applications to resolve for.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the client programs' sources are.
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
/// How long one client may take before `timeout` kills it: far beyond what a lookup through
/// the stub on loopback needs, so only a hang reaches it.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// The built client programs.
#[derive(Debug)]
pub struct ClientPrograms {
    /// `resolve NAME`: getaddrinfo in a static musl 1.2.3 binary.
    pub musl: PathBuf,
    /// `lookup host|srv NAME`: Go's own resolver (CGO_ENABLED=0).
    pub go: PathBuf,
    /// `resolve.py NAME`: Python's socket.getaddrinfo (glibc).
    pub python: PathBuf,
    /// `Lookup.java host|srv NAME`, run as `java Lookup.java`; `Err` says why there is no
    /// JVM to run it (no JDK on the machine).
    pub java: Result<PathBuf, String>,
}

/// The client programs, built on first use into the target dir (`target/tmp/clients`), where
/// Go's build cache also lives, so later runs rebuild in a fraction of a second. Panics with
/// the reason (and the Debian package) when a toolchain is missing or a build fails.
pub fn client_programs() -> &'static ClientPrograms {
    static BUILT: OnceLock<Result<ClientPrograms, String>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build() -> Result<ClientPrograms, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clients");
    std::fs::create_dir_all(&out).map_err(|e| format!("mkdir {}: {e}", out.display()))?;
    let src = Path::new(SOURCES);
    need("musl-gcc", "musl-tools")?;
    need("go", "golang-go")?;
    need("python3", "python3")?;

    let musl = out.join("resolve-musl");
    run_build(
        Command::new("musl-gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&musl)
            .arg(src.join("resolve.c")),
    )?;

    // Offline and self-contained: standard library only (no module to download), caches in
    // the target dir, nothing in $HOME.
    let go = out.join("lookup-go");
    run_build(
        Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&go)
            .arg(src.join("lookup.go"))
            .current_dir(&out)
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", out.join("go-cache"))
            .env("GOPATH", out.join("go-path"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "")
            .env("GOENV", "off"),
    )?;

    // `java File.java` compiles in memory, which needs the JDK's compiler: a JRE alone
    // (ZooKeeper's dependency) has java without it
    let java = if which("javac").is_some() && which("java").is_some() {
        Ok(src.join("Lookup.java"))
    } else {
        Err("no JDK (javac) on this machine: apt-get install default-jdk-headless".to_string())
    };
    Ok(ClientPrograms {
        musl,
        go,
        python: src.join("resolve.py"),
        java,
    })
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn need(tool: &str, package: &str) -> Result<(), String> {
    which(tool).map(|_| ()).ok_or_else(|| {
        format!("{tool} is missing: apt-get install {package} (scripts/deps.sh installs it)")
    })
}

fn run_build(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// What one client run did.
#[derive(Debug, Clone)]
pub struct ClientRun {
    /// The exit code; -1 when killed by a signal. `timeout` exits 124 at the deadline.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ClientRun {
    /// stdout and stderr, for assertion messages.
    pub fn output(&self) -> String {
        format!(
            "exit {} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A resolv.conf written into `dir` as `NAME.conf`: `nameserver`, then `extra` lines
/// (`search …`, `options …`).
pub fn write_resolv_conf(dir: &Path, name: &str, nameserver: Ipv4Addr, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, format!("nameserver {nameserver}\n{extra}"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Runs `argv` (with `env` added) in a private mount namespace where /etc/resolv.conf is
/// `resolv_conf` and /etc/nsswitch.conf says `hosts: dns` (so /etc/hosts, mDNS or
/// systemd-resolved modules never answer for the stub), killed after [`CLIENT_DEADLINE`].
/// Needs root. Nothing outside the namespace sees the mounts.
pub fn in_resolv_ns(resolv_conf: &Path, argv: &[&str], env: &[(&str, &str)]) -> ClientRun {
    static NSSWITCH: OnceLock<PathBuf> = OnceLock::new();
    let nsswitch = NSSWITCH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nsswitch-dns-only.conf");
        std::fs::write(&path, "hosts: dns\n").expect("write nsswitch.conf");
        path
    });
    // the files and the command are passed as arguments, never pasted into the script
    let script = "mount --bind \"$2\" /etc/resolv.conf && mount --bind \"$3\" /etc/nsswitch.conf \
                  && deadline=$1 && shift 3 && exec timeout \"$deadline\" \"$@\"";
    let started = Instant::now();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(CLIENT_DEADLINE.as_secs().to_string())
        .arg(resolv_conf)
        .arg(nsswitch)
        .args(argv)
        .envs(env.iter().copied())
        .output()
        .expect("run unshare (util-linux)");
    ClientRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}
