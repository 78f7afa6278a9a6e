//! `paysys-vault operator …`, `paysys-vault keys …` and `paysys-vault audit checkpoint`:
//! an officer's client of the vault API over mTLS. Every command is one or a few calls to
//! the officer API, so anything here can also be scripted against the API directly.

use crate::cli::{KeysCommand, OfficerArgs, OperatorCommand};
use anyhow::Context;
use paysys_vault_client::{ClientTls, HttpVersion, VaultConnection, VaultResponse};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use zeroize::Zeroizing;

async fn connect(officer: &OfficerArgs) -> anyhow::Result<VaultConnection> {
    let tls = ClientTls::new(&officer.ca, Some((&officer.cert, &officer.key)), HttpVersion::Http1)?;
    Ok(tls.connect(&officer.vault_url).await?)
}

/// The vault's error as one line: `code: message`.
fn describe_error(response: &VaultResponse) -> String {
    let message = response.body["error"]["message"].as_str().unwrap_or_default();
    format!("{} ({}): {message}", response.error_code().unwrap_or("error"), response.status)
}

fn refused(response: &VaultResponse) -> ExitCode {
    eprintln!("paysys-vault: the vault refused: {}", describe_error(response));
    ExitCode::FAILURE
}

/// One custodian share: from the terminal without echo, else the first line of stdin.
/// Never from argv (it would be in the shell history and the process list).
fn read_share() -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        let share = rpassword::prompt_password("custodian share (input hidden): ").context("reading the share")?;
        return Ok(Zeroizing::new(share));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).context("reading the share from stdin")?;
    Ok(Zeroizing::new(line.trim().to_owned()))
}

pub(crate) async fn operator(command: OperatorCommand) -> anyhow::Result<ExitCode> {
    match command {
        OperatorCommand::Unseal(officer) => {
            let share = read_share()?;
            anyhow::ensure!(!share.is_empty(), "no share given");
            let body = Zeroizing::new(serde_json::to_vec(&json!({ "share": share.as_str() }))?);
            let response = connect(&officer).await?.call_raw("POST", "/v1/sys/unseal", Some(body.to_vec())).await?;
            if response.status != 200 {
                return Ok(refused(&response));
            }
            let b = &response.body;
            if b["sealed"].as_bool() == Some(false) {
                println!("vault unsealed ({} of {} shares)", b["progress"], b["threshold"]);
            } else {
                println!(
                    "share accepted (check value {}): {} of {} shares; the vault is still sealed",
                    b["share_check_value"].as_str().unwrap_or("?"),
                    b["progress"],
                    b["threshold"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::Seal(officer) => {
            let response = connect(&officer).await?.call("POST", "/v1/sys/seal", None).await?;
            if response.status != 200 {
                return Ok(refused(&response));
            }
            println!("vault sealed: every key was dropped from memory");
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::Status(officer) => {
            let response = connect(&officer).await?.call("GET", "/v1/sys/seal-status", None).await?;
            if response.status != 200 {
                return Ok(refused(&response));
            }
            let b = &response.body;
            let sealed = b["sealed"].as_bool().unwrap_or(true);
            println!("sealed: {sealed}");
            println!("root key KCV: {}", b["root_kcv"].as_str().unwrap_or("?"));
            if let Some(legacy) = b["root_kcv_legacy"].as_str() {
                // What pss1 shares (made before key format 2) carry after `pss1-`.
                println!("root key KCV in pss1 shares (legacy form): {legacy}");
            }
            println!("unseal mode: {}", b["unseal_mode"].as_str().unwrap_or("?"));
            if sealed {
                println!("unseal progress: {} of {} shares", b["progress"], b["threshold"]);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Status { officer, json } => {
            let mut conn = connect(&officer).await?;
            let response = conn.call("GET", "/v1/keys", None).await?;
            if response.status != 200 {
                return Ok(refused(&response));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&response.body)?);
            } else {
                print_key_status(&response.body);
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { kind, officer } => request(&officer, json!({ "action": format!("rotate_{kind}") })).await,
        KeysCommand::Retire { version, kind, officer } => {
            request(&officer, json!({ "action": "retire", "kind": kind, "version": version })).await
        }
        KeysCommand::Destroy { version, kind, force, officer } => {
            request(&officer, json!({ "action": "destroy", "kind": kind, "version": version, "force": force })).await
        }
        KeysCommand::Approve { id, officer } => {
            let response =
                connect(&officer).await?.call("POST", &format!("/v1/keys/requests/{id}/approve"), None).await?;
            if response.status != 200 {
                return Ok(refused(&response));
            }
            println!("approved and executed {id}: {}", response.body["result"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Requests(officer) => {
            let response = connect(&officer).await?.call("GET", "/v1/keys/requests", None).await?;
            if response.status != 200 {
                return Ok(refused(&response));
            }
            println!("{:<38} {:<11} {:<9} {:<10} {:<36} result", "id", "action", "target", "state", "requested by");
            for r in response.body["requests"].as_array().into_iter().flatten() {
                let target = match (r["kind"].as_str(), r["version"].as_i64()) {
                    (Some(kind), Some(v)) => format!("{kind} v{v}"),
                    _ => "-".into(),
                };
                println!(
                    "{:<38} {:<11} {:<9} {:<10} {:<36} {}",
                    r["id"].as_str().unwrap_or_default(),
                    r["action"].as_str().unwrap_or_default(),
                    target,
                    r["state"].as_str().unwrap_or_default(),
                    r["requested_by"].as_str().unwrap_or_default(),
                    r["result"].as_str().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Jobs { officer, watch } => jobs(&officer, watch).await,
    }
}

/// `POST /v1/keys/requests` and say what happened.
async fn request(officer: &OfficerArgs, body: Value) -> anyhow::Result<ExitCode> {
    let response = connect(officer).await?.call("POST", "/v1/keys/requests", Some(&body)).await?;
    let b = &response.body;
    match response.status {
        202 => {
            println!(
                "request {} is pending: another officer must approve it before {}",
                b["id"].as_str().unwrap_or("?"),
                b["expires_at"].as_str().unwrap_or("?")
            );
            println!("  paysys-vault keys approve {}", b["id"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        200 => {
            println!("executed {}: {}", b["id"].as_str().unwrap_or("?"), b["result"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(refused(&response)),
    }
}

fn print_key_status(b: &Value) {
    println!(
        "vault: {}; root key KCV {}; unseal mode {}",
        if b["sealed"].as_bool().unwrap_or(true) { "SEALED" } else { "unsealed" },
        b["root_kcv"].as_str().unwrap_or("?"),
        b["unseal_mode"].as_str().unwrap_or("?")
    );
    println!(
        "{:<4} {:>3} {:<7} {:<13} {:<21} {:>14} {:>9} {:>16}",
        "kind", "v", "kcv", "state", "created", "age/period (d)", "records", "seals (% limit)"
    );
    for k in b["keys"].as_array().into_iter().flatten() {
        let due = if k["past_due"].as_bool().unwrap_or(false) { " PAST DUE" } else { "" };
        let seals = match k["encryptions"].as_i64() {
            Some(n) => format!("{n} ({:.4}%)", k["encryption_limit_used_pct"].as_f64().unwrap_or(0.0)),
            None => "-".into(),
        };
        println!(
            "{:<4} {:>3} {:<7} {:<13} {:<21} {:>14} {:>9} {:>16}{due}",
            k["kind"].as_str().unwrap_or_default(),
            k["version"],
            k["kcv"].as_str().unwrap_or_default(),
            k["state"].as_str().unwrap_or_default(),
            k["created_at"].as_str().unwrap_or_default(),
            format!("{}/{}", k["age_days"], k["cryptoperiod_days"]),
            k["records"],
            seals
        );
    }
    for j in b["jobs"].as_array().into_iter().flatten() {
        println!(
            "re-encryption job {}: dek v{} -> v{}: {} {}/{} ({:.0} records/s){}",
            j["id"],
            j["from_version"],
            j["to_version"],
            j["state"].as_str().unwrap_or_default(),
            j["done"],
            j["total"],
            j["records_per_second"].as_f64().unwrap_or(0.0),
            j["error"].as_str().map(|e| format!(" error: {e}")).unwrap_or_default()
        );
    }
}

async fn jobs(officer: &OfficerArgs, watch: bool) -> anyhow::Result<ExitCode> {
    let mut conn = connect(officer).await?;
    let response = conn.call("GET", "/v1/keys/jobs", None).await?;
    if response.status != 200 {
        return Ok(refused(&response));
    }
    let list = response.body["jobs"].as_array().cloned().unwrap_or_default();
    if !watch {
        for j in &list {
            println!(
                "job {}: dek v{} -> v{}: {} {}/{} ({} left, {:.0} records/s){}",
                j["id"],
                j["from_version"],
                j["to_version"],
                j["state"].as_str().unwrap_or_default(),
                j["done"],
                j["total"],
                j["remaining"],
                j["records_per_second"].as_f64().unwrap_or(0.0),
                j["error"].as_str().map(|e| format!(" error: {e}")).unwrap_or_default()
            );
        }
        if list.is_empty() {
            println!("no re-encryption jobs");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(job_id) = list.first().and_then(|j| j["id"].as_i64()) else {
        println!("no re-encryption jobs");
        return Ok(ExitCode::SUCCESS);
    };
    let bar = indicatif::ProgressBar::new(list[0]["total"].as_u64().unwrap_or(0));
    let style = indicatif::ProgressStyle::with_template(
        "job {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} records, {per_sec}, ETA {eta}",
    )
    .context("progress bar template")?;
    bar.set_style(style);
    loop {
        let response = conn.call("GET", "/v1/keys/jobs", None).await?;
        if response.status != 200 {
            bar.abandon();
            return Ok(refused(&response));
        }
        let jobs = response.body["jobs"].as_array().cloned().unwrap_or_default();
        let Some(job) = jobs.iter().find(|j| j["id"].as_i64() == Some(job_id)) else {
            bar.abandon();
            anyhow::bail!("job {job_id} disappeared");
        };
        let done = job["done"].as_u64().unwrap_or(0);
        // Records written under the old DEK after the job started make the total grow.
        let total = (done + job["remaining"].as_u64().unwrap_or(0)).max(job["total"].as_u64().unwrap_or(0));
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(format!("{job_id} dek v{} -> v{}", job["from_version"], job["to_version"]));
        match job["state"].as_str() {
            Some("running") => {}
            Some("done") => {
                bar.finish();
                println!("job {job_id} done: {done} records re-encrypted");
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                bar.abandon();
                eprintln!("job {job_id} {}: {}", other.unwrap_or("?"), job["error"].as_str().unwrap_or_default());
                return Ok(ExitCode::FAILURE);
            }
        }
        std::io::stdout().flush()?;
        // Each poll is an audited request: once a second is plenty for a progress bar.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `paysys-vault audit checkpoint`: `POST /v1/audit/checkpoint`, the checkpoint printed as
/// one JSON line (append it to a file of your own if the vault has no checkpoint file).
pub(crate) async fn audit_checkpoint(officer: OfficerArgs) -> anyhow::Result<ExitCode> {
    let response = connect(&officer).await?.call("POST", "/v1/audit/checkpoint", None).await?;
    if response.status != 200 {
        return Ok(refused(&response));
    }
    println!("{}", response.body);
    eprintln!(
        "checkpoint of seq {} signed with {}",
        response.body["seq"],
        response.body["key_id"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
