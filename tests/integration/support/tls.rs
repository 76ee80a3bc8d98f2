//! ZooKeeper with TLS: a throw-away CA, server and client certificates made with `openssl`,
//! the Java keystore and truststore made from them (`openssl pkcs12`, `keytool`), and a
//! server with a `secureClientPort` beside its plain one (so fixtures can still write znodes
//! and ask `ruok` in plain text).
//!
//! Debian's ZooKeeper 3.8.0 needs one repair for TLS: the Class-Path of its zookeeper.jar
//! leaves out netty-codec.jar, so every TLS connection fails as the server sets it up
//! (`NoClassDefFoundError: io/netty/handler/codec/ByteToMessageDecoder`; the client sees the
//! connection closed during the handshake). A `-cp` in JVMFLAGS comes after zkServer.sh's own
//! on the java command line, and the last one wins.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::zookeeper::ZooKeeper;

const STORE_PASSWORD: &str = "zkdns-test";
const CLASSPATH_FIX: &str =
    "-cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/netty-codec.jar";

/// PEM files for the client side, and the Java stores for the server.
pub struct TlsFiles {
    dir: TempDir,
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsFiles {
    /// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and the
    /// server's PKCS#12 keystore and truststore. Private keys are mode 600.
    pub fn generate() -> TlsFiles {
        let dir = tempfile::Builder::new()
            .prefix("zkdns-test-tls-")
            .tempdir()
            .expect("temp dir for certificates");
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        std::fs::write(
            d.join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        #[rustfmt::skip]
        let steps: &[(&str, &[&str])] = &[
            ("openssl", &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=zkdns test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
            ("openssl", &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                "-out", "server.csr", "-subj", "/CN=localhost"]),
            ("openssl", &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
                "ca.key", "-CAcreateserial", "-days", "2", "-out", "server.pem",
                "-extfile", "server.ext"]),
            ("openssl", &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
                "-out", "client.csr", "-subj", "/CN=zkdns client"]),
            ("openssl", &["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey",
                "ca.key", "-CAcreateserial", "-days", "2", "-out", "client.pem",
                "-extfile", "client.ext"]),
            ("openssl", &["pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key",
                "-name", "server", "-out", "keystore.p12", "-passout",
                &format!("pass:{STORE_PASSWORD}")]),
            ("keytool", &["-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem",
                "-keystore", "truststore.p12", "-storetype", "PKCS12", "-storepass",
                STORE_PASSWORD]),
        ];
        for (program, args) in steps {
            run(d, program, args);
        }
        // a second CA that signed nothing here, for the wrong-CA case
        run(
            d,
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "other-ca.key",
                "-out",
                "other-ca.pem",
                "-subj",
                "/CN=some other CA",
            ],
        );
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "server.key", "client.key", "other-ca.key"] {
            std::fs::set_permissions(d.join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        TlsFiles { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The zoo.cfg lines of a TLS port (`{secure_port}`) that asks clients for a certificate.
    pub fn server_config(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "secureClientPort={{secure_port}}\n\
             secureClientPortAddress=127.0.0.1\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={d}/keystore.p12\n\
             ssl.keyStore.password={STORE_PASSWORD}\n\
             ssl.keyStore.type=PKCS12\n\
             ssl.trustStore.location={d}/truststore.p12\n\
             ssl.trustStore.password={STORE_PASSWORD}\n\
             ssl.trustStore.type=PKCS12\n\
             ssl.clientAuth=need\n"
        )
    }
}

/// A ZooKeeper with a TLS port ([`ZooKeeper::secure_port`]) as well as its plain one.
pub fn start_tls_zookeeper() -> (ZooKeeper, TlsFiles) {
    let files = TlsFiles::generate();
    let zk = ZooKeeper::start_with(CLASSPATH_FIX, &files.server_config());
    (zk, files)
}
