//! The inventory (PCI DSS 6.4.3) is complete and its documentation current: every file in
//! `widget/assets/` is in it, what is served is what is on disk, and
//! `docs/widget-scripts.md` is generated from it.

use paysys_widget::pages::{asset, integrity_of, inventory, inventory_markdown};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn widget_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_file_in_the_assets_directory_is_in_the_inventory_and_the_reverse() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(widget_dir().join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let listed: BTreeSet<String> = inventory().iter().map(|a| a.name.to_owned()).collect();
    assert_eq!(on_disk, listed, "widget/assets/ and the inventory (widget/src/pages/assets.rs) differ");
    let expected: BTreeSet<String> =
        ["checkout.js", "checkout.css", "paysys.js", "frame.js", "frame.css"].map(String::from).into();
    assert_eq!(listed, expected, "the names the gateway and intake serve");
}

#[test]
fn what_is_served_is_what_is_on_disk_and_its_integrity_is_its_hash() {
    for a in inventory() {
        let on_disk = std::fs::read_to_string(widget_dir().join("assets").join(a.name)).unwrap();
        assert_eq!(a.body, on_disk, "{}", a.name);
        assert_eq!(a.integrity, integrity_of(&on_disk));
        assert!(a.integrity.starts_with("sha384-") && a.integrity.len() == "sha384-".len() + 64, "{}", a.integrity);
        assert!(!a.purpose.trim().is_empty() && !a.served_at.is_empty() && !a.loaded_by.is_empty(), "{}", a.name);
        let kind = if a.name.ends_with(".js") { "text/javascript; charset=utf-8" } else { "text/css; charset=utf-8" };
        assert_eq!(a.content_type, kind);
        assert!(std::ptr::eq(asset(a.name).unwrap(), a));
    }
    assert!(asset("../Cargo.toml").is_none());
    assert!(asset("evil.js").is_none());
    // A changed byte is a changed hash.
    assert_ne!(integrity_of("a"), integrity_of("b"));
}

#[test]
fn the_inventory_document_is_current() {
    let path = widget_dir().join("../docs/widget-scripts.md");
    let generated = inventory_markdown();
    if std::env::var_os("PAYSYS_WRITE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/widget-scripts.md is stale: run `PAYSYS_WRITE_DOCS=1 cargo test -p paysys-widget --test inventory`"
    );
    for a in inventory() {
        assert!(written.contains(&a.integrity), "{}", a.name);
        assert!(written.contains(&format!("`{}`", a.name)));
    }
}

/// What the scripts must never do, checked in their source: write HTML from strings
/// (the pages require Trusted Types for those sinks anyway), evaluate strings, log (a
/// log line could hold card data), or post a message to any origin (`"*"`).
#[test]
fn the_scripts_use_no_html_sinks_no_eval_no_console_and_no_wildcard_messages() {
    for a in inventory().iter().filter(|a| a.name.ends_with(".js")) {
        let code = a.body;
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "console.",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "setAttribute('style'",
            "setTimeout('",
        ] {
            assert!(!code.contains(banned), "{} uses {banned}", a.name);
        }
        for (n, line) in code.lines().enumerate() {
            if line.contains("postMessage(") && !line.trim_start().starts_with('*') {
                assert!(
                    !line.contains("'*'") && !line.contains("\"*\""),
                    "{}:{}: postMessage to any origin",
                    a.name,
                    n + 1
                );
                assert!(
                    line.contains("parentOrigin") || line.contains("intakeOrigin"),
                    "{}:{}: postMessage without an exact target origin: {line}",
                    a.name,
                    n + 1
                );
            }
            if let Some((_, rest)) = line.split_once("addEventListener('message', ") {
                // The handler's first lines: inline, or the named function's.
                let start = match rest.strip_suffix(");").filter(|name| !name.starts_with("function")) {
                    Some(name) => {
                        let definition = format!("function {name}(event) {{");
                        code.lines().position(|l| l.contains(&definition)).unwrap_or_else(|| panic!("{definition}"))
                    }
                    None => n,
                };
                let handler: String = code.lines().skip(start).take(3).collect();
                assert!(
                    handler.contains("event.origin !=="),
                    "{}:{}: a message handler without an origin check",
                    a.name,
                    n + 1
                );
            }
        }
    }
    // The card frame drops the grant from the address, and posts the card only to its own origin.
    let frame = asset("frame.js").unwrap().body;
    assert!(frame.contains("history.replaceState"));
    assert!(frame.contains("var CARDS_PATH = '/v1/cards';"));
    assert_eq!(frame.matches("fetch(").count(), 1, "frame.js talks to the intake only");
}
