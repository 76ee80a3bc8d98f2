//! Who zkdns is to ZooKeeper and what the nodes it creates let others do: digest credentials
//! (from `--zk-auth-file` or `ZKDNS_ZK_AUTH`, never from the command line, never printed), TLS
//! to the servers (`--zk-tls-ca`, `--zk-tls-cert`, `--zk-tls-key`), and the ACL of every node
//! that `import`, `set`, `grant` and `register` create: with credentials, readable by anyone
//! and writable only by that identity; without, open to all as before. What the ACLs of
//! existing nodes say (grants, locking) is [`crate::zk::acl`]'s.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use thiserror::Error;
use zookeeper_client::{Acl, Acls, AuthId, CreateMode, CreateOptions, Permission, TlsOptions};

/// The environment variable that may hold the credentials instead of a file.
pub const AUTH_ENV: &str = "ZKDNS_ZK_AUTH";

/// Longest credentials file read; anything longer is not one `user:password` line.
const MAX_SECRET_FILE: u64 = 64 * 1024;

#[derive(Debug, Error)]
pub enum AuthError {
    // the cause follows from `source` (printed once, with the chain)
    #[error("{flag} {path}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{flag} {path} can be read or written by group or others (mode {mode:04o}); \
         make it its owner's alone: chmod 600 {path}"
    )]
    Exposed {
        flag: &'static str,
        path: PathBuf,
        mode: u32,
    },
    // never the content: it is, or is close to, the secret
    #[error("--zk-auth-file {path}: {reason}")]
    BadFile { path: PathBuf, reason: &'static str },
    #[error("{AUTH_ENV}: {reason}")]
    BadEnv { reason: &'static str },
    #[error("--zk-auth-file and {AUTH_ENV} exclude each other: give one")]
    Both,
    #[error("{flag} {path}: {reason}")]
    Tls {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Digest credentials (`user:password`, ZooKeeper's `digest` scheme). Debug shows the user
/// only; nothing prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkAuth {
    user: String,
    password: String,
}

impl fmt::Debug for ZkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ZkAuth {
    /// `user:password` on one line (one trailing newline allowed). The reason for a refusal
    /// never quotes the text.
    pub fn parse(text: &str) -> Result<ZkAuth, &'static str> {
        let line = text
            .strip_suffix('\n')
            .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
        if line.is_empty() {
            return Err("is empty; it must hold USER:PASSWORD");
        }
        if line.contains(['\n', '\r']) {
            return Err("must hold one line, USER:PASSWORD");
        }
        let Some((user, password)) = line.split_once(':') else {
            return Err("is not USER:PASSWORD (it has no ':')");
        };
        if user.is_empty() {
            return Err("has an empty USER before the ':'");
        }
        if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("has a USER with spaces or control characters");
        }
        if password.is_empty() {
            return Err("has an empty PASSWORD after the ':'");
        }
        if password.chars().any(char::is_control) {
            return Err("has a PASSWORD with control characters");
        }
        Ok(ZkAuth {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// The credentials from `--zk-auth-file` or from `ZKDNS_ZK_AUTH` (`env`), if either is
    /// given; both is an error. The file must be its owner's alone (no group or other bits).
    pub fn load(
        file: Option<&Path>,
        env: Option<std::ffi::OsString>,
    ) -> Result<Option<ZkAuth>, AuthError> {
        match (file, env) {
            (Some(_), Some(_)) => Err(AuthError::Both),
            (Some(path), None) => {
                let text = read_private("--zk-auth-file", path)?;
                let text = String::from_utf8(text).map_err(|_| AuthError::BadFile {
                    path: path.to_path_buf(),
                    reason: "is not UTF-8 text",
                })?;
                ZkAuth::parse(&text)
                    .map(Some)
                    .map_err(|reason| AuthError::BadFile {
                        path: path.to_path_buf(),
                        reason,
                    })
            }
            (None, Some(value)) => {
                let text = value.into_string().map_err(|_| AuthError::BadEnv {
                    reason: "is not UTF-8 text",
                })?;
                ZkAuth::parse(&text)
                    .map(Some)
                    .map_err(|reason| AuthError::BadEnv { reason })
            }
            (None, None) => Ok(None),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// What the `digest` scheme sends: `user:password`.
    pub(crate) fn credentials(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password).into_bytes()
    }

    /// The id that a `digest` ACL names for these credentials, as ZooKeeper computes it:
    /// `user:base64(sha1(user:password))`.
    pub fn digest_id(&self) -> String {
        let hash = sha1_smol::Sha1::from(self.credentials()).digest().bytes();
        format!("{}:{}", self.user, data_encoding::BASE64.encode(&hash))
    }
}

/// Reads a file that holds a secret, refusing one that group or others may read or write
/// (the mode of the file a symlink points to, as Kubernetes mounts secrets).
fn read_private(flag: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    let read_error = |source| AuthError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AuthError::Exposed {
            flag,
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Vec::new();
    file.take(MAX_SECRET_FILE)
        .read_to_end(&mut text)
        .map_err(read_error)?;
    Ok(text)
}

/// TLS to ZooKeeper: the CA that signs the servers' certificates and, if the servers ask for
/// one (ZooKeeper's `ssl.clientAuth`, `need` by default), a client certificate and key.
#[derive(Clone)]
pub struct ZkTls {
    options: TlsOptions,
    ca: PathBuf,
    cert: Option<PathBuf>,
}

impl fmt::Debug for ZkTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkTls")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ZkTls {
    /// Reads and checks the PEM files (the key must be its owner's alone).
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ZkTls, AuthError> {
        let pem = |flag: &'static str, path: &Path, private: bool| {
            let bytes = if private {
                read_private(flag, path)?
            } else {
                std::fs::read(path).map_err(|source| AuthError::Read {
                    flag,
                    path: path.to_path_buf(),
                    source,
                })?
            };
            String::from_utf8(bytes).map_err(|_| AuthError::Tls {
                flag,
                path: path.to_path_buf(),
                reason: "is not PEM text".to_string(),
            })
        };
        let tls_error = |flag: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |e: zookeeper_client::Error| AuthError::Tls {
                flag,
                path,
                reason: e.to_string(),
            }
        };
        let mut options = TlsOptions::new()
            .with_pem_ca(&pem("--zk-tls-ca", ca, false)?)
            .map_err(tls_error("--zk-tls-ca", ca))?;
        if let Some((cert, key)) = identity {
            let cert_pem = pem("--zk-tls-cert", cert, false)?;
            let key_pem = pem("--zk-tls-key", key, true)?;
            options = options
                .with_pem_identity(&cert_pem, &key_pem)
                .map_err(tls_error("--zk-tls-cert", cert))?;
        }
        Ok(ZkTls {
            options,
            ca: ca.to_path_buf(),
            cert: identity.map(|(cert, _)| cert.to_path_buf()),
        })
    }

    pub(crate) fn options(&self) -> TlsOptions {
        self.options.clone()
    }
}

/// The ACLs of the nodes this process creates, fixed once by [`protect_created_nodes`].
/// Every command runs with one identity, so this is process-wide rather than threaded
/// through every function that creates a node.
static NODE_ACL: OnceLock<CreatedAcls> = OnceLock::new();

struct CreatedAcls {
    /// Zones, names and the nodes above them.
    owned: Vec<Acl>,
    /// `register`'s ephemeral members.
    member: Vec<Acl>,
}

/// The ACL for nodes created with `auth`: all rights to that digest identity, read to anyone.
pub fn owner_acl(auth: &ZkAuth) -> Vec<Acl> {
    vec![
        Acl::new(Permission::ALL, AuthId::new("digest", &auth.digest_id())),
        Acl::new(Permission::READ, AuthId::anyone()),
    ]
}

/// The ACL of a member registered with `auth`: its registrar may change it (a leaf has no
/// use for more: deleting it takes `delete` on its name), anyone reads. Not `admin`: a
/// registrar must not be able to open its member to others.
pub fn member_acl(auth: &ZkAuth) -> Vec<Acl> {
    vec![
        Acl::new(
            Permission::READ | Permission::WRITE,
            AuthId::new("digest", &auth.digest_id()),
        ),
        Acl::new(Permission::READ, AuthId::anyone()),
    ]
}

/// From now on, the nodes this process creates are writable only with `auth`. Called once,
/// when the configuration is read; a second call changes nothing.
pub fn protect_created_nodes(auth: &ZkAuth) {
    let _ = NODE_ACL.set(CreatedAcls {
        owned: owner_acl(auth),
        member: member_acl(auth),
    });
}

/// Create options for a new node: the owner's ACL after [`protect_created_nodes`], else
/// open to anyone (ZooKeeper's `world:anyone` with all rights).
pub fn create_options(mode: CreateMode) -> CreateOptions<'static> {
    match NODE_ACL.get() {
        Some(acls) => mode.with_acls(Acls::new(&acls.owned)),
        None => mode.with_acls(Acls::anyone_all()),
    }
}

/// Create options for an ephemeral member: [`member_acl`] after [`protect_created_nodes`],
/// else open to anyone.
pub fn member_options() -> CreateOptions<'static> {
    match NODE_ACL.get() {
        Some(acls) => CreateMode::Ephemeral.with_acls(Acls::new(&acls.member)),
        None => CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
    }
}

/// [`create_options`] for a persistent node.
pub fn persistent() -> CreateOptions<'static> {
    create_options(CreateMode::Persistent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse() {
        let a = ZkAuth::parse("zkdns:s3cret:with:colons\n").unwrap();
        assert_eq!(a.user(), "zkdns");
        assert_eq!(a.credentials(), b"zkdns:s3cret:with:colons");
        assert!(ZkAuth::parse("u:p\r\n").is_ok());
        for bad in [
            "", "\n", "nocolon", ":pw", "user:", "us er:pw", "u:p\nx:y", "u:p\n\n",
        ] {
            assert!(ZkAuth::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let a = ZkAuth::parse("zkdns:hunter2-zz").unwrap();
        let shown = format!("{a:?} {:?}", Some(&a));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("zkdns"), "{shown}");
    }

    #[test]
    fn digest_id_is_zookeepers() {
        // base64(sha1("super:secret")), as DigestAuthenticationProvider.generateDigest makes
        // it (the integration tests check it against a real server, too)
        let a = ZkAuth::parse("super:secret").unwrap();
        assert_eq!(a.digest_id(), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let e = ZkAuth::load(None, Some("hunter2-no-colon".into())).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().starts_with(AUTH_ENV), "{e}");
    }

    #[test]
    fn auth_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, "zkdns:hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ZkAuth::load(Some(&path), None).unwrap_err();
        assert!(matches!(e, AuthError::Exposed { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let a = ZkAuth::load(Some(&path), None).unwrap().unwrap();
        assert_eq!(a.user(), "zkdns");
        assert!(matches!(
            ZkAuth::load(Some(&path), Some("a:b".into())),
            Err(AuthError::Both)
        ));
        assert_eq!(ZkAuth::load(None, None).unwrap(), None);
    }
}
