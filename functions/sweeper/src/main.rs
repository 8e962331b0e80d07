//! Runs the sweep once (a Cloud Run job, triggered by Cloud Scheduler) and exits non-zero if
//! any project failed. `--dry-run` prints what it would remove.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    if common::timestamp::travel::ENABLED && std::env::var_os("CLOUD_RUN_JOB").is_some() {
        eprintln!("sweeper: built with the tests' movable clock (feature clock-travel); refusing to run on Cloud Run");
        return ExitCode::from(2);
    }
    common::runner::init_logging();
    let mut config = match common::config::from_process_env(sweeper::Config::read) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sweeper: {error}");
            return ExitCode::from(2);
        }
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--dry-run" => config.dry_run = true,
            other => {
                eprintln!("sweeper: unknown argument '{other}' (only --dry-run)");
                return ExitCode::from(2);
            }
        }
    }
    match sweeper::run(&config, common::timestamp::Timestamp::now()).await {
        Ok(summary) => {
            println!("{summary}");
            tracing::info!(
                projects_seen = summary.projects_seen,
                bindings_removed = summary.bindings_removed,
                conflicts_retried = summary.conflicts_retried,
                errors = summary.errors,
                requests_seen = summary.requests_seen,
                requests_completed = summary.requests_completed,
                requests_flagged = summary.requests_flagged,
                unowned_removed = summary.unowned_removed,
                dry_run = config.dry_run,
                "sweep finished"
            );
            if summary.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("sweeper: {error}");
            ExitCode::FAILURE
        }
    }
}
