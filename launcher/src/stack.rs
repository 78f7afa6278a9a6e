//! `stack.json`: what `paysys up` started and where — URLs, pids, the vault's files and
//! every certificate path (all absolute). Scripts, end-to-end tests and benchmarks
//! read it; it is a product interface, so fields are only ever added.
//!
//! ```no_run
//! let stack = paysys::stack::Stack::read_from_dir(std::path::Path::new(".paysys"))?;
//! println!("vault at {}, gateway key {}", stack.vault.url, stack.pki.gateway.key.display());
//! # Ok::<(), anyhow::Error>(())
//! ```

use crate::files::{self, PRIVATE};
use crate::pki::DevPki;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the file in the stack's directory.
pub const STACK_FILE: &str = "stack.json";

/// A running dev stack, as written to `DIR/stack.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// Always `true`: only the dev launcher writes this file. A reader can refuse
    /// anything else.
    pub dev: bool,
    /// The stack's directory (absolute).
    pub dir: PathBuf,
    /// The vault process.
    pub vault: VaultService,
    /// The sandbox card network (acquirer, issuer).
    pub sandbox: SandboxService,
    /// The gateway, with the dev merchant's credentials.
    pub gateway: GatewayService,
    /// The card intake (the payment widget's card frame). Empty in a `stack.json`
    /// written before the intake existed.
    #[serde(default)]
    pub intake: IntakeService,
    /// Certificates of every service and client.
    pub pki: DevPki,
}

/// The vault process of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultService {
    /// Where the vault's mTLS API listens, e.g. `https://127.0.0.1:8443`.
    pub url: String,
    /// Its database (`sqlite:/abs/vault.db` or a PostgreSQL URL, as given).
    pub database_url: String,
    /// The policy file it enforces.
    pub policy: PathBuf,
    /// DEV ONLY: the root key file it was unsealed with.
    pub dev_root_key_file: PathBuf,
    /// Where it appends signed audit checkpoints (`audit verify --checkpoint` reads it).
    /// Absent in a `stack.json` written before checkpoints existed.
    #[serde(default)]
    pub audit_checkpoint_file: PathBuf,
    /// Its process id.
    pub pid: u32,
}

/// The sandbox process of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxService {
    /// Its HTTPS API (acquirer, issuer), e.g. `https://localhost:9443`.
    pub url: String,
    /// Its database (balances and ledger of the test cards).
    pub database_url: String,
    /// Its process id.
    pub pid: u32,
}

/// The gateway process of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayService {
    /// Where it listens, e.g. `http://127.0.0.1:8080` (plain HTTP on loopback: dev only).
    pub url: String,
    /// The JSON-RPC endpoint merchants call.
    pub rpc_url: String,
    /// Its database.
    pub database_url: String,
    /// Its process id.
    pub pid: u32,
    /// DEV ONLY: the dev merchant's API credentials.
    pub merchant: DevMerchant,
}

/// The card intake process of a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeService {
    /// Where browsers reach it, e.g. `https://127.0.0.1:8444` (the dev CA's certificate).
    pub url: String,
    /// Its process id.
    pub pid: u32,
}

/// A merchant's gateway credentials as `paysys-gateway merchant create --json` prints
/// them. DEV ONLY: a real merchant's secret is shown once and never written to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevMerchant {
    /// The merchant's id at the vault (its tokens belong to it).
    pub merchant_id: String,
    /// The `service_id` of the `Auth` header.
    pub service_id: String,
    /// The HMAC secret of the `Auth` header.
    pub secret: String,
}

impl Stack {
    /// `dir/stack.json`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(STACK_FILE)
    }

    /// Read and parse a `stack.json`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Read `dir/stack.json`.
    pub fn read_from_dir(dir: &Path) -> anyhow::Result<Self> {
        Self::read(&Self::path_in(dir))
    }

    /// Write it atomically (readers never see half a file), mode 0600: a PostgreSQL
    /// URL given on the command line may carry a password.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_string_pretty(self).context("serializing the stack")?;
        json.push('\n');
        files::write_atomically(path, json.as_bytes(), PRIVATE).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClientCertFiles, MerchantCertFiles, ServerCertFiles};
    use crate::temp_dir::TempDir;
    use std::collections::BTreeMap;

    fn sample() -> Stack {
        let dir = PathBuf::from("/abs/.paysys");
        let pki = dir.join("pki");
        let client = |name: &str, principal: &str| ClientCertFiles {
            principal: principal.to_owned(),
            cert: pki.join(format!("{name}.pem")),
            key: pki.join(format!("{name}.key")),
        };
        let officers = BTreeMap::from([
            ("alice".to_owned(), client("officer-alice", "spiffe://paysys/officer/alice")),
            ("bob".to_owned(), client("officer-bob", "spiffe://paysys/officer/bob")),
        ]);
        Stack {
            dev: true,
            dir: dir.clone(),
            vault: VaultService {
                url: "https://127.0.0.1:8443".to_owned(),
                database_url: "sqlite:/abs/.paysys/vault.db".to_owned(),
                policy: dir.join("policy.toml"),
                dev_root_key_file: dir.join("vault-root.key"),
                audit_checkpoint_file: dir.join("vault-audit-checkpoints.jsonl"),
                pid: 1234,
            },
            sandbox: SandboxService {
                url: "https://localhost:9443".to_owned(),
                database_url: "sqlite:/abs/.paysys/sandbox.db".to_owned(),
                pid: 1235,
            },
            gateway: GatewayService {
                url: "http://127.0.0.1:8080".to_owned(),
                rpc_url: "http://127.0.0.1:8080/rpc".to_owned(),
                database_url: "sqlite:/abs/.paysys/gateway.db".to_owned(),
                pid: 1236,
                merchant: DevMerchant {
                    merchant_id: "m_dev".to_owned(),
                    service_id: "svc_x".to_owned(),
                    secret: "s".to_owned(),
                },
            },
            intake: IntakeService { url: "https://127.0.0.1:8444".to_owned(), pid: 1237 },
            pki: DevPki {
                ca_cert: pki.join("ca.pem"),
                vault_server: ServerCertFiles { cert: pki.join("vault.pem"), key: pki.join("vault.key") },
                gateway: client("gateway", "spiffe://paysys/gateway"),
                officers,
                merchant: MerchantCertFiles {
                    id: "m_dev".to_owned(),
                    principal: "spiffe://paysys/merchant/m_dev".to_owned(),
                    cert: pki.join("merchant-m_dev.pem"),
                    key: pki.join("merchant-m_dev.key"),
                },
                sandbox_server: ServerCertFiles { cert: pki.join("sandbox.pem"), key: pki.join("sandbox.key") },
                intake: client("intake", "spiffe://paysys/intake"),
                intake_server: ServerCertFiles {
                    cert: pki.join("intake-server.pem"),
                    key: pki.join("intake-server.key"),
                },
                crl: pki.join("crl.pem"),
            },
        }
    }

    #[test]
    fn stack_json_round_trips_through_a_file() {
        let tmp = TempDir::new("stack");
        let stack = sample();
        let path = Stack::path_in(&tmp.0);
        stack.write(&path).unwrap();
        assert_eq!(Stack::read_from_dir(&tmp.0).unwrap(), stack);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn stack_json_has_the_documented_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["dev"], true);
        assert_eq!(json["dir"], "/abs/.paysys");
        assert_eq!(json["vault"]["url"], "https://127.0.0.1:8443");
        assert_eq!(json["vault"]["database_url"], "sqlite:/abs/.paysys/vault.db");
        assert_eq!(json["vault"]["policy"], "/abs/.paysys/policy.toml");
        assert_eq!(json["vault"]["dev_root_key_file"], "/abs/.paysys/vault-root.key");
        assert_eq!(json["vault"]["pid"], 1234);
        let pki = &json["pki"];
        assert_eq!(pki["ca_cert"], "/abs/.paysys/pki/ca.pem");
        assert_eq!(pki["vault_server"]["cert"], "/abs/.paysys/pki/vault.pem");
        assert_eq!(pki["vault_server"]["key"], "/abs/.paysys/pki/vault.key");
        assert_eq!(pki["gateway"]["principal"], "spiffe://paysys/gateway");
        assert_eq!(pki["officers"]["alice"]["principal"], "spiffe://paysys/officer/alice");
        assert_eq!(pki["officers"]["bob"]["key"], "/abs/.paysys/pki/officer-bob.key");
        assert_eq!(pki["merchant"]["id"], "m_dev");
        assert_eq!(pki["merchant"]["principal"], "spiffe://paysys/merchant/m_dev");
        assert_eq!(pki["sandbox_server"]["cert"], "/abs/.paysys/pki/sandbox.pem");
        assert_eq!(pki["crl"], "/abs/.paysys/pki/crl.pem");
        assert_eq!(json["intake"], serde_json::json!({"url": "https://127.0.0.1:8444", "pid": 1237}));
        assert_eq!(pki["intake"]["principal"], "spiffe://paysys/intake");
        assert_eq!(pki["intake"]["cert"], "/abs/.paysys/pki/intake.pem");
        assert_eq!(pki["intake_server"]["cert"], "/abs/.paysys/pki/intake-server.pem");
        assert!(pki.get("ca_key").is_none(), "the CA key path stays out of stack.json");
    }

    #[test]
    fn readers_tolerate_fields_added_later() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["gateway"]["tls"] = serde_json::json!({ "cert": "/abs/gateway-server.pem" });
        json["webhooks"] = serde_json::json!({ "url": "https://127.0.0.1:8081", "pid": 99 });
        let stack: Stack = serde_json::from_value(json).unwrap();
        assert_eq!(stack, sample());
    }

    #[test]
    fn a_stack_json_from_before_the_intake_still_reads() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json.as_object_mut().unwrap().remove("intake");
        json["pki"].as_object_mut().unwrap().remove("intake");
        json["pki"].as_object_mut().unwrap().remove("intake_server");
        let stack: Stack = serde_json::from_value(json).unwrap();
        assert_eq!(stack.intake, IntakeService::default());
        assert_eq!(stack.pki.intake.cert, PathBuf::new());
    }
}
