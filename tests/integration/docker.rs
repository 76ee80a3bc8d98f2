//! zkdns in Docker, for real (docker/): the base image of docker/build-base.sh (debootstrap,
//! made once per machine), the ZooKeeper image and the zkdns image with this build's binary
//! (cached layers), then the compose project of docker/compose.yaml under a project name of its
//! own: a three-node ensemble, the job that imports zones/, app1 and app2 with the stub as their
//! nameserver, app3 keeping its /etc/hosts. Everything is checked from inside the containers
//! with what an application uses (getent, nslookup, dig), also while the ZooKeeper leader is
//! stopped and while a ZooKeeper node is cut off its network.
//!
//! Skipped, saying why, where `docker info` fails. One run at a time per machine (a lock file),
//! and projects left by a run that died are removed first. The project is torn down when the
//! test ends, fails, or its process dies (a watchdog, as for the other fixtures).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The tag of the images this test builds (docker/build-images.sh --tag).
const IMAGE_TAG: &str = "itest";
const ZKDNS_IMAGE: &str = "zkdns:itest";
const ZOOKEEPER_IMAGE: &str = "zkdns-zookeeper:itest";
/// Projects are named `zkdns-it-<pid>-<nanos>`: the pid tells whether their test still runs.
const PROJECT_PREFIX: &str = "zkdns-it-";
const ZONE: &str = "cluster.test";
/// app1 and app2 resolve through their stubs, app3 through its /etc/hosts.
const APPS: [&str; 3] = ["app1", "app2", "app3"];
const ZOOKEEPERS: [&str; 3] = ["zk1", "zk2", "zk3"];
/// How long resolution is watched through each ZooKeeper fault.
const FAULT_WATCH: Duration = Duration::from_secs(15);

#[test]
fn containers_resolve_each_other_through_zookeeper_faults() {
    let started = Instant::now();
    if let Err(reason) = docker_available() {
        println!("SKIPPED: docker is not usable here ({reason})");
        return;
    }
    let _lock = machine_lock();
    remove_stale_projects();

    let images = Instant::now();
    build_images();
    let images = images.elapsed();
    let up = Instant::now();
    let cluster = Cluster::up();
    cluster.wait_until_apps_resolve_each_other();
    let up = up.elapsed();
    println!("images {images:.1?}, compose up and ready {up:.1?}");

    step("names resolve with getent, nslookup and dig", || {
        names_resolve_with_getent_nslookup_and_dig(&cluster)
    });
    step("resolv.conf rewritten in place", || {
        resolv_conf_points_at_the_stub(&cluster)
    });
    step("hosts mode writes Docker's /etc/hosts in place", || {
        hosts_mode_writes_the_bind_mounted_hosts_file(&cluster)
    });
    step(
        "per-host: app4 and app5 resolve through the host's stub",
        || containers_without_a_stub_resolve_through_the_hosts(&cluster),
    );
    step("zkdns runs as the zkdns user", || {
        zkdns_runs_unprivileged(&cluster)
    });
    step("stopping the ZooKeeper leader", || {
        stopping_the_leader_does_not_interrupt_resolution(&cluster)
    });
    step("cutting a ZooKeeper node off the network", || {
        disconnecting_a_zookeeper_node_does_not_interrupt_resolution(&cluster)
    });
    step("stopping a container withdraws its name", || {
        a_stopped_container_disappears(&cluster)
    });
    step("compose down", || cluster.down());
    println!("docker test done in {:.1?}", started.elapsed());
}

fn step(what: &str, f: impl FnOnce()) {
    let started = Instant::now();
    f();
    println!("ok: {what} ({:.1?})", started.elapsed());
}

// --- the checks ---------------------------------------------------------------------------

fn names_resolve_with_getent_nslookup_and_dig(cluster: &Cluster) {
    let ips: Vec<(&str, String)> = APPS.iter().map(|a| (*a, cluster.ip(a))).collect();
    for from in ["app1", "app2"] {
        for (to, ip) in ips.iter().filter(|(to, _)| *to != from) {
            let name = format!("{to}.{ZONE}");
            assert_eq!(
                cluster.getent(from, &name),
                Some(ip.clone()),
                "getent in {from}"
            );
            assert_eq!(
                cluster.nslookup(from, &name),
                vec![ip.clone()],
                "nslookup in {from}"
            );
            assert_eq!(cluster.dig(from, &name), vec![ip.clone()], "dig in {from}");
        }
        // imported by the job
        let web: BTreeSet<String> = cluster
            .dig(from, &format!("web.{ZONE}"))
            .into_iter()
            .collect();
        assert_eq!(web, BTreeSet::from(["10.0.0.5".into(), "10.0.0.6".into()]));
        // not in the zone: forwarded to Docker's DNS, the nameserver the container had
        assert_eq!(
            cluster.getent(from, "zk1"),
            Some(cluster.ip("zk1")),
            "{from} reaches Docker's DNS through the stub"
        );
    }
    for (to, ip) in ips.iter().filter(|(to, _)| *to != "app3") {
        let name = format!("{to}.{ZONE}");
        assert_eq!(
            cluster.getent("app3", &name),
            Some(ip.clone()),
            "getent in app3"
        );
    }
}

fn resolv_conf_points_at_the_stub(cluster: &Cluster) {
    let rewritten = cluster.exec_ok("app1", "cat /etc/resolv.conf");
    let untouched = cluster.exec_ok("app3", "cat /etc/resolv.conf"); // hosts mode
    let nameservers = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("nameserver "))
            .map(|s| s.trim().to_string())
            .collect()
    };
    assert_eq!(nameservers(&rewritten), ["127.0.0.53"], "{rewritten}");
    let docker_dns = nameservers(&untouched);
    assert!(!docker_dns.is_empty(), "{untouched}");
    for ns in &docker_dns {
        assert!(
            rewritten.contains(&format!("# zkdns-upstream {ns}")),
            "{ns} kept as upstream in\n{rewritten}"
        );
    }
    // search, options … kept as they were
    for line in untouched.lines() {
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') && !line.starts_with("nameserver") {
            assert!(
                rewritten.lines().any(|l| l.trim() == line),
                "{line:?} lost in\n{rewritten}"
            );
        }
    }
    // the container's file is Docker's bind mount: the host side changed, so it was written
    // in place
    let host_side = cluster.inspect("app1", "{{.ResolvConfPath}}");
    match std::fs::read_to_string(&host_side) {
        Ok(text) => assert_eq!(text.trim(), rewritten.trim(), "{host_side}"),
        Err(e) => println!("note: cannot read {host_side} ({e}); host side not compared"),
    }
}

/// The stub of docker/compose.per-host.yaml.
const HOST_STUB: &str = "172.29.153.53";

fn containers_without_a_stub_resolve_through_the_hosts(cluster: &Cluster) {
    for (from, to) in [("app4", "app5"), ("app5", "app4")] {
        // no stub of its own: Docker's resolver, which forwards to the host's stub
        let procs = cluster.exec_ok(
            from,
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <\"$f\"; echo; done",
        );
        assert!(
            procs.contains("zkdns register") && !procs.contains("zkdns serve"),
            "{from} runs:\n{procs}"
        );
        let resolv = cluster.exec_ok(from, "cat /etc/resolv.conf");
        assert!(resolv.contains("nameserver 127.0.0.11"), "{from}: {resolv}");
        // each other's registrations, an imported name, a name of the other containers
        let name = format!("{to}.{ZONE}");
        let ip = cluster.ip(to);
        eventually_value(
            &format!("{name} resolving in {from}"),
            Duration::from_secs(60),
            || (cluster.getent(from, &name) == Some(ip.clone())).then_some(()),
        );
        assert!(
            cluster.getent(from, &format!("web.{ZONE}")).is_some(),
            "web in {from}"
        );
        assert_eq!(
            cluster.getent(from, &format!("app1.{ZONE}")),
            Some(cluster.ip("app1"))
        );
        // asked directly, the host's stub answers the containers' subnet
        let direct = cluster.exec_ok(
            from,
            &format!("dig +short +time=2 +tries=1 @{HOST_STUB} {name} A"),
        );
        assert_eq!(direct.trim(), ip, "{from} asking {HOST_STUB}");
    }
    // the stub's own container answers names of the zones the same way
    let out = cluster.exec_ok(
        "hoststub",
        &format!("dig +short +time=2 +tries=1 @{HOST_STUB} app4.{ZONE} A"),
    );
    assert_eq!(out.trim(), cluster.ip("app4"));
}

fn hosts_mode_writes_the_bind_mounted_hosts_file(cluster: &Cluster) {
    let hosts = cluster.exec_ok("app3", "cat /etc/hosts");
    let block = managed_block(&hosts).unwrap_or_else(|| panic!("no zkdns block in\n{hosts}"));
    for app in APPS {
        let line = format!("{}\t{app}.{ZONE}", cluster.ip(app));
        assert!(block.contains(&line), "{line:?} not in\n{hosts}");
    }
    assert!(block.contains(&format!("10.0.0.5\tweb.{ZONE}")), "{hosts}");
    // what Docker wrote is still there
    assert!(hosts.contains("localhost"), "{hosts}");
    let host_side = cluster.inspect("app3", "{{.HostsPath}}");
    match std::fs::read_to_string(&host_side) {
        Ok(text) => assert_eq!(text, hosts, "{host_side}"),
        Err(e) => println!("note: cannot read {host_side} ({e}); host side not compared"),
    }
}

fn zkdns_runs_unprivileged(cluster: &Cluster) {
    for app in APPS {
        let ps = cluster.exec_ok(
            app,
            r#"for p in /proc/[0-9]*; do
                 c=$(tr '\0' ' ' < $p/cmdline 2>/dev/null) || continue
                 case "$c" in zkdns*) echo "$(stat -c %U $p) $c";; esac
               done"#,
        );
        let lines: Vec<&str> = ps.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "serve or hosts, and register, in {app}:\n{ps}"
        );
        assert!(
            lines.iter().all(|l| l.starts_with("zkdns ")),
            "{app}:\n{ps}"
        );
    }
}

fn stopping_the_leader_does_not_interrupt_resolution(cluster: &Cluster) {
    let leader = cluster.leader().expect("the ensemble has a leader");
    let watch = cluster.watch_resolution(FAULT_WATCH);
    std::thread::sleep(Duration::from_secs(1));
    let stopped = Instant::now();
    docker(
        &["stop", "-t", "10", &cluster.container(leader)],
        Duration::from_secs(30),
    );
    let new_leader = eventually_value("a new leader", Duration::from_secs(60), || {
        cluster.leader().filter(|l| *l != leader)
    });
    println!(
        "{leader} stopped; {new_leader} leads after {:.1?}",
        stopped.elapsed()
    );
    watch.assert_no_failures();

    docker(
        &["start", &cluster.container(leader)],
        Duration::from_secs(30),
    );
    cluster.wait_serving(leader);
}

fn disconnecting_a_zookeeper_node_does_not_interrupt_resolution(cluster: &Cluster) {
    // the node with the most client sessions: the stubs and registrations must move
    let node = *ZOOKEEPERS
        .iter()
        .max_by_key(|zk| cluster.client_connections(zk))
        .expect("three nodes");
    let was_leader = cluster.leader() == Some(node);
    let network = cluster.network();
    let watch = cluster.watch_resolution(FAULT_WATCH);
    std::thread::sleep(Duration::from_secs(1));
    let cut = Instant::now();
    let container = cluster.container(node);
    docker(
        &["network", "disconnect", &network, &container],
        Duration::from_secs(30),
    );
    let leader = eventually_value("a leader among the others", Duration::from_secs(60), || {
        cluster.leader().filter(|l| *l != node)
    });
    println!(
        "{node} (leader: {was_leader}) cut off; {leader} leads after {:.1?}",
        cut.elapsed()
    );
    watch.assert_no_failures();

    docker(
        &["network", "connect", "--alias", node, &network, &container],
        Duration::from_secs(30),
    );
    cluster.wait_serving(node);
}

fn a_stopped_container_disappears(cluster: &Cluster) {
    let name = format!("app2.{ZONE}");
    assert!(cluster.getent("app1", &name).is_some());
    let started = Instant::now();
    docker(
        &["stop", "-t", "10", &cluster.container("app2")],
        Duration::from_secs(30),
    );
    let stop_took = started.elapsed();
    // the entrypoint stopped in order rather than being killed after the grace period, and
    // passed the application's status on (sleep ended by SIGTERM)
    assert!(
        stop_took < Duration::from_secs(8),
        "docker stop took {stop_took:?}"
    );
    assert_eq!(cluster.inspect("app2", "{{.State.ExitCode}}"), "143");

    eventually_value("app2 gone from app1's stub", Duration::from_secs(3), || {
        (cluster.getent("app1", &name).is_none() && cluster.dig("app1", &name).is_empty())
            .then_some(())
    });
    let gone = started.elapsed();
    eventually_value(
        "app2 gone from app3's /etc/hosts",
        Duration::from_secs(3),
        || (!cluster.exec_ok("app3", "cat /etc/hosts").contains(&name)).then_some(()),
    );
    println!("docker stop app2 took {stop_took:.1?}; its name was gone after {gone:.1?}");
    // the others are still there
    assert!(cluster.getent("app1", &format!("app3.{ZONE}")).is_some());
}

fn managed_block(hosts: &str) -> Option<&str> {
    let start = hosts.find("# BEGIN zkdns\n")?;
    let end = start + hosts[start..].find("# END zkdns")?;
    Some(&hosts[start..end])
}

fn eventually_value<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// --- the compose project ------------------------------------------------------------------

struct Cluster {
    project: String,
    compose: Vec<String>,
    /// compose.yaml and the per-host services on top of it.
    files: Vec<PathBuf>,
    /// Runs `docker compose down` (and removes by label what that leaves) when dropped, or
    /// when the test process dies first.
    _teardown: Cleanup,
}

impl Cluster {
    fn up() -> Cluster {
        let project = format!(
            "{PROJECT_PREFIX}{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let compose = compose_command();
        let files = ["docker/compose.yaml", "docker/compose.per-host.yaml"].map(|f| repo().join(f));
        let teardown = Cleanup::new(&teardown_script(&project, &compose, &files));
        let cluster = Cluster {
            project,
            compose,
            files: files.to_vec(),
            _teardown: teardown,
        };
        let out = run(
            cluster.compose_cmd(&["up", "-d", "--no-build"]),
            Duration::from_secs(300),
        );
        if !out.ok {
            cluster.dump_logs();
            panic!("compose up failed:\n{}", out.stderr);
        }
        cluster
    }

    fn compose_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..]).args(["-p", &self.project]);
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        cmd.args(args)
            .env("ZKDNS_IMAGE", ZKDNS_IMAGE)
            .env("ZKDNS_ZOOKEEPER_IMAGE", ZOOKEEPER_IMAGE);
        cmd
    }

    fn wait_until_apps_resolve_each_other(&self) {
        for from in APPS {
            for to in APPS.iter().filter(|to| **to != from) {
                let name = format!("{to}.{ZONE}");
                eventually_value(
                    &format!("{name} resolving in {from}"),
                    Duration::from_secs(90),
                    || self.getent(from, &name),
                );
            }
        }
    }

    /// The container of a service, by the labels that every compose version sets.
    fn container(&self, service: &str) -> String {
        let out = docker(
            &[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ],
            Duration::from_secs(30),
        );
        let id = out.stdout.trim();
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "container of {service}: {id:?}"
        );
        id.to_string()
    }

    fn network(&self) -> String {
        let out = docker(
            &[
                "network",
                "ls",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--format",
                "{{.Name}}",
            ],
            Duration::from_secs(30),
        );
        out.stdout.trim().to_string()
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let out = docker(
            &["inspect", "-f", format, &self.container(service)],
            Duration::from_secs(30),
        );
        out.stdout.trim().to_string()
    }

    fn ip(&self, service: &str) -> String {
        self.inspect(
            service,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    }

    fn exec(&self, service: &str, script: &str) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", &self.container(service), "bash", "-c", script]);
        run(cmd, Duration::from_secs(60))
    }

    fn exec_ok(&self, service: &str, script: &str) -> String {
        let out = self.exec(service, script);
        assert!(
            out.ok,
            "in {service}: {script}\n{}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// The IPv4 address glibc gives for `name`, through resolv.conf or /etc/hosts.
    fn getent(&self, service: &str, name: &str) -> Option<String> {
        let out = self.exec(service, &format!("getent ahostsv4 {name}"));
        out.ok
            .then(|| out.stdout.split_whitespace().next().map(str::to_string))
            .flatten()
    }

    fn dig(&self, service: &str, name: &str) -> Vec<String> {
        let out = self.exec_ok(service, &format!("dig +short +time=2 +tries=1 {name} A"));
        out.lines().map(|l| l.trim().to_string()).collect()
    }

    fn nslookup(&self, service: &str, name: &str) -> Vec<String> {
        let out = self.exec_ok(service, &format!("nslookup {name}"));
        // the addresses after "Name:", not the server's
        out.split_once("Name:")
            .map(|(_, answer)| {
                answer
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("Address:"))
                    .map(|a| a.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn four_letter_word(&self, zk: &str, word: &str) -> String {
        let out = self.exec(zk, &format!("zk4lw {word}"));
        if out.ok { out.stdout } else { String::new() }
    }

    fn mode(&self, zk: &str) -> Option<String> {
        self.four_letter_word(zk, "srvr")
            .lines()
            .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
    }

    fn leader(&self) -> Option<&'static str> {
        ZOOKEEPERS
            .into_iter()
            .find(|zk| self.mode(zk).as_deref() == Some("leader"))
    }

    fn wait_serving(&self, zk: &str) {
        eventually_value(
            &format!("{zk} serving again"),
            Duration::from_secs(90),
            || self.mode(zk),
        );
    }

    fn client_connections(&self, zk: &str) -> u32 {
        self.four_letter_word(zk, "mntr")
            .lines()
            .find_map(|l| l.strip_prefix("zk_num_alive_connections"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Resolves names in a loop inside app1 (stub: a registered name with getent, an imported
    /// one with dig) and app3 (/etc/hosts: registered names with getent) for `period`.
    fn watch_resolution(&self, period: Duration) -> ResolutionWatch {
        let secs = period.as_secs();
        let probes = [
            ("app1", format!("getent ahostsv4 app2.{ZONE}")),
            (
                "app1",
                format!("dig +short +time=2 +tries=1 web.{ZONE} A | grep -q ."),
            ),
            ("app3", format!("getent ahostsv4 app1.{ZONE}")),
            ("app3", format!("getent ahostsv4 app2.{ZONE}")),
        ];
        let mut loops = Vec::new();
        for app in ["app1", "app3"] {
            let checks: String = probes
                .iter()
                .filter(|(a, _)| *a == app)
                .map(|(_, check)| {
                    format!(
                        "{check} >/dev/null || {{ fails=$((fails+1)); echo \"failed at ${{SECONDS}}s: {}\"; }}\n",
                        check.replace('"', "\\\"")
                    )
                })
                .collect();
            let script = format!(
                "fails=0; rounds=0; end=$((SECONDS+{secs}))\n\
                 while [ $SECONDS -lt $end ]; do\n\
                   rounds=$((rounds+1))\n{checks}  sleep 0.05\n\
                 done\n\
                 echo \"rounds=$rounds fails=$fails\""
            );
            let child = Command::new("docker")
                .args(["exec", &self.container(app), "bash", "-c", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("docker exec");
            loops.push((app, child));
        }
        ResolutionWatch {
            loops,
            deadline: Instant::now() + period + Duration::from_secs(60),
        }
    }

    fn dump_logs(&self) {
        let ps = run(self.compose_cmd(&["ps"]), Duration::from_secs(30));
        let logs = run(
            self.compose_cmd(&["logs", "--no-color", "--tail", "60"]),
            Duration::from_secs(60),
        );
        eprintln!(
            "--- compose ps ---\n{}\n--- compose logs ---\n{}{}",
            ps.stdout, logs.stdout, logs.stderr
        );
    }

    fn down(&self) {
        let out = run(
            self.compose_cmd(&["down", "-v", "--remove-orphans", "-t", "5"]),
            Duration::from_secs(120),
        );
        assert!(out.ok, "compose down: {}", out.stderr);
        let left = docker(
            &[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
            ],
            Duration::from_secs(30),
        );
        assert_eq!(left.stdout.trim(), "", "containers left after compose down");
        assert_eq!(self.network(), "", "network left after compose down");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// Resolution loops running inside containers; see [`Cluster::watch_resolution`].
struct ResolutionWatch {
    loops: Vec<(&'static str, Child)>,
    deadline: Instant,
}

impl ResolutionWatch {
    fn assert_no_failures(mut self) {
        for (app, mut child) in std::mem::take(&mut self.loops) {
            let status = loop {
                if let Some(status) = child.try_wait().expect("poll docker exec") {
                    break status;
                }
                if Instant::now() > self.deadline {
                    let _ = child.kill();
                    panic!("the resolution loop in {app} did not end");
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            let summary = out.lines().last().unwrap_or_default();
            println!("  {app}: {summary}");
            assert!(status.success(), "loop in {app}: {status}\n{out}");
            assert!(
                summary.ends_with(" fails=0"),
                "resolution failed in {app}:\n{out}"
            );
            assert!(
                !summary.starts_with("rounds=0 "),
                "no rounds in {app}:\n{out}"
            );
        }
    }
}

impl Drop for ResolutionWatch {
    fn drop(&mut self) {
        for (_, child) in &mut self.loops {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn teardown_script(project: &str, compose: &[String], files: &[PathBuf]) -> String {
    let label = format!("label=com.docker.compose.project={project}");
    let files: Vec<String> = files
        .iter()
        .map(|f| format!("-f '{}'", f.display()))
        .collect();
    format!(
        "{compose} -p {project} {files} down -v --remove-orphans -t 1 >/dev/null 2>&1\n{sweep}",
        compose = compose.join(" "),
        files = files.join(" "),
        sweep = sweep_script(&label),
    )
}

/// Removes what carries `label` and compose left (or a compose that never ran could not).
fn sweep_script(label: &str) -> String {
    format!(
        "docker ps -aq --filter {label} | xargs -r docker rm -f -v >/dev/null 2>&1\n\
         docker network ls -q --filter {label} | xargs -r docker network rm >/dev/null 2>&1\n\
         docker volume ls -q --filter {label} | xargs -r docker volume rm >/dev/null 2>&1\n\
         true"
    )
}

/// Projects of test runs that died without their watchdog (SIGKILL of the whole group).
fn remove_stale_projects() {
    let mut projects = BTreeSet::new();
    for list in [
        &["ps", "-a"][..],
        &["network", "ls"][..],
        &["volume", "ls"][..],
    ] {
        let mut args = list.to_vec();
        args.extend([
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            "{{.Label \"com.docker.compose.project\"}}",
        ]);
        projects.extend(
            docker(&args, Duration::from_secs(30))
                .stdout
                .lines()
                .filter(|p| p.starts_with(PROJECT_PREFIX))
                .map(str::to_string),
        );
    }
    for project in projects {
        let pid = project[PROJECT_PREFIX.len()..]
            .split('-')
            .next()
            .unwrap_or("");
        if pid.is_empty() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        println!("removing {project}, left by a test run that died");
        let label = format!("label=com.docker.compose.project={project}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &sweep_script(&label)]);
        run(cmd, Duration::from_secs(120));
    }
}

// --- images -------------------------------------------------------------------------------

/// docker/build-images.sh with this build's binary: the base (debootstrap, minutes, once per
/// machine), then both images from cached layers.
fn build_images() {
    let mut cmd = Command::new(repo().join("docker/build-images.sh"));
    cmd.args(["--binary", env!("CARGO_BIN_EXE_zkdns"), "--tag", IMAGE_TAG]);
    let out = run(cmd, Duration::from_secs(30 * 60));
    assert!(
        out.ok,
        "docker/build-images.sh failed:\n{}{}",
        out.stdout, out.stderr
    );
    for line in out.stderr.lines() {
        if line.starts_with("build-base:") || line.starts_with("build-images:") {
            println!("{line}");
        }
    }
}

// --- the docker client --------------------------------------------------------------------

fn docker_available() -> Result<(), String> {
    let mut cmd = Command::new("docker");
    cmd.args(["info", "--format", "{{.ServerVersion}}"]);
    match try_run(cmd, Duration::from_secs(30)) {
        Ok(out) if out.ok => Ok(()),
        Ok(out) => Err(format!("`docker info` failed: {}", out.stderr.trim())),
        Err(e) => Err(format!("cannot run `docker info`: {e}")),
    }
}

/// `docker compose` where the plugin is there, else `docker-compose` (Compose v1, Debian's).
fn compose_command() -> Vec<String> {
    let mut plugin = Command::new("docker");
    plugin.args(["compose", "version"]);
    if try_run(plugin, Duration::from_secs(30)).is_ok_and(|o| o.ok) {
        return vec!["docker".into(), "compose".into()];
    }
    let mut v1 = Command::new("docker-compose");
    v1.arg("version");
    match try_run(v1, Duration::from_secs(30)) {
        Ok(o) if o.ok => vec!["docker-compose".into()],
        _ => panic!("docker works but neither `docker compose` nor `docker-compose` does"),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One docker test at a time on a machine: they share the daemon, the image tags and the
/// two cores.
fn machine_lock() -> File {
    let path = std::env::temp_dir().join("zkdns-docker-test.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    // SAFETY: flock(2) on a descriptor that `file` owns; released when it is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        println!("waiting for another docker test run ({})", path.display());
        // SAFETY: as above.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
    }
    file
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn docker(args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let out = run(cmd, timeout);
    assert!(out.ok, "docker {}: {}", args.join(" "), out.stderr.trim());
    out
}

fn run(cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    try_run(cmd, timeout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs `cmd` to its end, killing it (its whole process group) after `timeout`.
fn try_run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > timeout {
            // SAFETY: kill(2) of the process group that process_group(0) made for the child
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.wait();
            return Err(format!("still running after {timeout:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        ok: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
