//! The gateway for the end-to-end tests: exactly `paysys-gateway`'s `main`, built as part
//! of this package so `cargo test -p paysys-tests` never runs a stale gateway binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_gateway::cli::main(paysys_gateway::cli::Cli::parse())
}
