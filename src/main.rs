use std::process::ExitCode;

use clap::Parser;
use exfilmon::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    exfilmon::logging::init(cli.verbose);
    let result = match &cli.command {
        Command::Replay(args) => cli::replay::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Nft(args) => cli::nft::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::AuditRules(args) => cli::audit_rules::run(args),
        Command::Verify(args) => cli::verify::run(args),
        Command::Keygen(args) => cli::keygen::run(args),
        Command::CheckConfig(args) => cli::check_config::run(args),
        // Nagios exit statuses, not the usual ones.
        Command::Status(args) => return cli::status::run(args),
        Command::Metrics(args) => cli::metrics::run(args),
        Command::GenerateDocs(args) => cli::generate_docs::run(args),
        Command::Prune(args) => cli::prune::run(args),
        Command::Ship(args) => cli::ship::run(args),
        Command::Block(args) => cli::block::run(args),
        Command::Unblock(args) => cli::unblock::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`exfilmon report | head`) is a reader that has seen enough.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages quote file names and values the watched users may have chosen.
            eprintln!("exfilmon: {}", exfilmon::escape::message(&chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause the message so far already quotes
/// (error types that print their source in their own message, anywhere in it).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !out.contains(&cause) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&cause);
        }
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
