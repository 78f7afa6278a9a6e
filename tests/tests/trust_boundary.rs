//! The trust boundary, checked: the gateway and the sandbox never see a card number or a
//! key, so the code that handles them (`paysys-keys`, `paysys-vault`, `paysys-policies`)
//! must not be linked into them. The card intake sees card numbers but holds no key: it
//! must link neither those crates nor the gateway's or the database's (it keeps nothing,
//! and a flaw in the gateway must not become one in the public card entry). This test reads the resolved dependency graph from
//! `cargo metadata`, follows only NORMAL dependencies (what ends up in the binary; dev
//! and build dependencies do not), and fails with the path it found when a boundary
//! crate reaches a card-data crate. The wire types the gateway and the vault share live
//! in `paysys-vault-client`, which the gateway may (and does) depend on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::OnceLock;

/// Crates outside the card-data environment.
const OUTSIDE: [&str; 2] = ["paysys-gateway", "paysys-sandbox"];
/// Crates that handle card data or keys: nothing outside may link them.
const CARD_DATA: [&str; 3] = ["paysys-keys", "paysys-vault", "paysys-policies"];
/// The shared client and wire types: allowed outside.
const SHARED: &str = "paysys-vault-client";
/// The card intake: inside the card-data environment, but keyless and stateless.
const INTAKE: &str = "paysys-intake";
/// What the intake must not link: the card-data crates, the gateway, the database layer.
const NOT_IN_INTAKE: [&str; 5] = ["paysys-keys", "paysys-vault", "paysys-policies", "paysys-db", "paysys-gateway"];

/// A resolved package graph: each package (by cargo's package id) with its name and the
/// packages it depends on normally.
#[derive(Debug, Default)]
struct Graph {
    names: HashMap<String, String>,
    normal_deps: HashMap<String, Vec<String>>,
}

impl Graph {
    /// The graph `cargo metadata --format-version 1` describes: `packages` for the names,
    /// `resolve.nodes[].deps[]` for the edges, an edge kept when one of its `dep_kinds`
    /// is normal (`kind: null`), whatever its target platform.
    fn from_metadata(metadata: &Value) -> Graph {
        let mut graph = Graph::default();
        for package in metadata["packages"].as_array().unwrap() {
            graph
                .names
                .insert(package["id"].as_str().unwrap().to_owned(), package["name"].as_str().unwrap().to_owned());
        }
        for node in metadata["resolve"]["nodes"].as_array().unwrap() {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
                .map(|dep| dep["pkg"].as_str().unwrap().to_owned())
                .collect();
            graph.normal_deps.insert(node["id"].as_str().unwrap().to_owned(), deps);
        }
        graph
    }

    /// The id of the package named `name`, if the graph has one.
    fn id_of(&self, name: &str) -> Option<&str> {
        self.names.iter().find(|(_, n)| *n == name).map(|(id, _)| id.as_str())
    }

    /// The shortest chain of normal dependencies from `from` to a package named in
    /// `targets`, as package names (`from` first), or `None` when there is none.
    fn path_to_any(&self, from: &str, targets: &[&str]) -> Option<Vec<String>> {
        let start = self.id_of(from)?;
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            if id != start && targets.contains(&self.names[id].as_str()) {
                let mut path = vec![self.names[id].clone()];
                let mut at = id;
                while let Some(previous) = came_from.get(at) {
                    path.push(self.names[*previous].clone());
                    at = previous;
                }
                path.reverse();
                return Some(path);
            }
            for dep in self.normal_deps.get(id).into_iter().flatten() {
                if dep != start && !came_from.contains_key(dep.as_str()) {
                    came_from.insert(dep, id);
                    queue.push_back(dep);
                }
            }
        }
        None
    }
}

/// `cargo metadata` for this workspace, offline, for the host platform (the packages
/// of other platforms need not be downloaded, and the boundary is the same there: no
/// PaySys crate has platform-specific dependencies). Read once for all the tests here.
fn workspace_metadata() -> &'static Value {
    static METADATA: OnceLock<Value> = OnceLock::new();
    METADATA.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml");
        let version = std::process::Command::new(&cargo).arg("-vV").output().unwrap();
        let version = String::from_utf8(version.stdout).unwrap();
        let host = version.lines().find_map(|l| l.strip_prefix("host: ")).expect("`cargo -vV` names the host");
        let output = std::process::Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", host, "--manifest-path"])
            .arg(&manifest)
            .output()
            .unwrap();
        assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    })
}

#[test]
fn the_gateway_and_the_sandbox_do_not_link_card_data_crates() {
    let graph = Graph::from_metadata(workspace_metadata());
    for name in OUTSIDE.iter().chain(&CARD_DATA).chain([&SHARED]) {
        assert!(graph.id_of(name).is_some(), "{name} is not in the workspace: update this test");
    }
    for crate_outside in OUTSIDE {
        if let Some(path) = graph.path_to_any(crate_outside, &CARD_DATA) {
            panic!("{crate_outside} reaches a card-data crate through normal dependencies: {}", path.join(" -> "));
        }
    }
    // The shared client is on the allowed side, and the walk sees real edges.
    assert_eq!(
        graph.path_to_any("paysys-gateway", &[SHARED]),
        Some(vec!["paysys-gateway".to_owned(), SHARED.to_owned()]),
        "the gateway talks to the vault through {SHARED}"
    );
    assert_eq!(graph.path_to_any(SHARED, &CARD_DATA), None, "{SHARED} must stay free of card-data crates");
    // The vault does link them (so a walk that found nothing above was not blind).
    assert!(graph.path_to_any("paysys-vault", &["paysys-keys"]).is_some());
}

/// The intake's crate graph: none of [`NOT_IN_INTAKE`], but the shared vault client
/// and the widget's grants (so the walk did see its dependencies).
#[test]
fn the_card_intake_links_no_keys_vault_gateway_or_database_crate() {
    let graph = Graph::from_metadata(workspace_metadata());
    for name in [INTAKE, SHARED, "paysys-widget"].iter().chain(&NOT_IN_INTAKE) {
        assert!(graph.id_of(name).is_some(), "{name} is not in the workspace: update this test");
    }
    for forbidden in NOT_IN_INTAKE {
        if let Some(path) = graph.path_to_any(INTAKE, &[forbidden]) {
            panic!("{INTAKE} reaches {forbidden} through normal dependencies: {}", path.join(" -> "));
        }
    }
    assert_eq!(graph.path_to_any(INTAKE, &[SHARED]), Some(vec![INTAKE.to_owned(), SHARED.to_owned()]));
    assert_eq!(
        graph.path_to_any(INTAKE, &["paysys-widget"]),
        Some(vec![INTAKE.to_owned(), "paysys-widget".to_owned()])
    );
    // Nothing outside links the intake either (it is a process of its own).
    for crate_outside in OUTSIDE {
        assert_eq!(graph.path_to_any(crate_outside, &[INTAKE]), None, "{crate_outside} links {INTAKE}");
    }
    // Every other crate named like it must be placed on a side of the boundary here.
    let unplaced: Vec<&String> =
        graph.names.values().filter(|n| n.starts_with("paysys-intake") && n.as_str() != INTAKE).collect();
    assert!(unplaced.is_empty(), "{unplaced:?}: decide its side of the trust boundary and add it to this test");
}

/// The walk itself, on a small graph made by hand, finds a forbidden edge and names
/// the path, and ignores dev and build edges.
#[test]
fn the_walk_finds_a_forbidden_path_and_ignores_dev_and_build_edges() {
    let metadata = serde_json::json!({
        "packages": [
            {"id": "gw", "name": "paysys-gateway"},
            {"id": "client", "name": "paysys-vault-client"},
            {"id": "util", "name": "some-util"},
            {"id": "keys", "name": "paysys-keys"},
            {"id": "vault", "name": "paysys-vault"},
        ],
        "resolve": {"nodes": [
            {"id": "gw", "deps": [
                {"pkg": "client", "dep_kinds": [{"kind": null, "target": null}]},
                {"pkg": "vault", "dep_kinds": [{"kind": "dev", "target": null}]},
            ]},
            {"id": "client", "deps": [
                {"pkg": "util", "dep_kinds": [{"kind": null, "target": "cfg(unix)"}]},
                {"pkg": "vault", "dep_kinds": [{"kind": "build", "target": null}]},
            ]},
            {"id": "util", "deps": [{"pkg": "keys", "dep_kinds": [{"kind": null, "target": null}]}]},
            {"id": "keys", "deps": []},
            {"id": "vault", "deps": [{"pkg": "keys", "dep_kinds": [{"kind": null, "target": null}]}]},
        ]},
    });
    let graph = Graph::from_metadata(&metadata);
    assert_eq!(
        graph.path_to_any("paysys-gateway", &CARD_DATA),
        Some(
            vec!["paysys-gateway", "paysys-vault-client", "some-util", "paysys-keys"]
                .into_iter()
                .map(String::from)
                .collect()
        ),
    );
    // Only dev and build edges lead to the vault: not a path.
    assert_eq!(graph.path_to_any("paysys-gateway", &["paysys-vault"]), None);
    assert_eq!(graph.path_to_any("paysys-sandbox", &CARD_DATA), None, "not in the graph");
}
