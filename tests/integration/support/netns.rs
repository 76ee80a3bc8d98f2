//! A network namespace joined to this one by a veth pair, so a test can send DNS queries from
//! an address that is not loopback. Host side `10.250.N.1/24`, namespace side `10.250.N.2/24`,
//! with N picked so that no interface here already uses that network. Deleted on Drop (and by
//! a watchdog if the test process dies first).

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use super::process::Cleanup;

pub struct NetNs {
    name: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    _cleanup: Cleanup,
}

fn run(args: &[&str]) -> Result<Output, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {args:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{args:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// Creates the namespace and the veth pair. `Err` says why namespaces are not available
    /// here (not root, no `ip`), so the caller can skip with that reason.
    pub fn create() -> Result<NetNs, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("zkdns-test-{pid}-{n}");
        let host_if = format!("zkh{}x{n}", pid % 100_000);
        let ns_if = format!("zkn{}x{n}", pid % 100_000);
        let used = run(&["ip", "-4", "-o", "addr", "show"])?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let net = (0..256u32)
            .map(|i| ((pid + 7 * n + i) % 256) as u8)
            .find(|x| !used.contains(&format!("10.250.{x}.")))
            .ok_or("every 10.250.N.0/24 network is in use")?;
        let host_ip = Ipv4Addr::new(10, 250, net, 1);
        let ns_ip = Ipv4Addr::new(10, 250, net, 2);
        run(&["ip", "netns", "add", &name])?;
        // from here on, whatever happens, the namespace (and the veth pair with it) goes away
        let cleanup = Cleanup::new(&format!(
            "ip netns del {name} 2>/dev/null; ip link del {host_if} 2>/dev/null"
        ));
        let ns = NetNs {
            name: name.clone(),
            host_ip,
            ns_ip,
            _cleanup: cleanup,
        };
        let host_cidr = format!("{host_ip}/24");
        let ns_cidr = format!("{ns_ip}/24");
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &name,
        ])?;
        run(&["ip", "addr", "add", &host_cidr, "dev", &host_if])?;
        run(&["ip", "link", "set", &host_if, "up"])?;
        run(&["ip", "-n", &name, "addr", "add", &ns_cidr, "dev", &ns_if])?;
        run(&["ip", "-n", &name, "link", "set", &ns_if, "up"])?;
        run(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of this side of the pair (where a server for the namespace listens).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The address of the namespace's side (where its queries come from).
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The /24 both ends are in, e.g. `10.250.7.0/24`.
    pub fn subnet(&self) -> String {
        let o = self.host_ip.octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    }

    /// Runs `f` on a thread that has joined the namespace (setns), e.g. to bind sockets
    /// there; the sockets stay in the namespace after the thread ends.
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns on a namespace fd; it changes only this thread's namespace
                    let rc = unsafe {
                        libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                    };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("thread inside the namespace")
        })
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs it:
    /// the spawned process is the program itself).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name))
    }
}
