//! The vault for the end-to-end tests: exactly `paysys-vault`'s `main`, built as part of
//! this package so `cargo test -p paysys-tests` never runs a stale vault binary (cargo
//! builds a package's own binaries before its integration tests, but not the binaries
//! of its dependencies).

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_vault::cli::main(paysys_vault::cli::Cli::parse())
}
