//! `jit-local`: runs the whole system on 127.0.0.1 until Ctrl-C.
//!
//! `cargo run -p local -- [--port 8080] [--emulator-port 8081] [--organization FILE] [--state DIR]`
//! (or `LOCAL_PORT`, `EMULATOR_PORT`, `LOCAL_ORGANIZATION`, `LOCAL_STATE`).

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::runner::init_logging();
    let number = |name: &str, default: u16| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut options = local::Options {
        port: number("LOCAL_PORT", 8080),
        emulator_port: number("EMULATOR_PORT", 8081),
        organization: std::env::var("LOCAL_ORGANIZATION").ok(),
        echo_mail: true,
        state: std::env::var_os("LOCAL_STATE").map(Into::into),
        settings: Vec::new(),
        // Every minute, as Cloud Scheduler runs the job in production.
        sweep_every: Some(std::time::Duration::from_secs(60)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => options.port = args.next().and_then(|p| p.parse().ok()).context("--port takes a number")?,
            "--emulator-port" => {
                options.emulator_port =
                    args.next().and_then(|p| p.parse().ok()).context("--emulator-port takes a number")?
            }
            "--organization" => options.organization = Some(args.next().context("--organization takes a file")?),
            "--state" => options.state = Some(args.next().context("--state takes a directory")?.into()),
            "--help" | "-h" => {
                println!(
                    "usage: jit-local [--port 8080] [--emulator-port 8081] [--organization organization.yaml] [--state DIR]"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument '{other}' (try --help)"),
        }
    }
    let state = options.state.clone();
    let running = local::start(options).await?;
    println!("\nJIT access is running locally.\n");
    println!("  Open {}/ and sign in as one of:", running.url);
    for user in &running.users {
        println!("    {user}");
    }
    println!("\n  Scripts: curl -H 'X-Local-User: alice@example.com' -H 'X-JITACCESS: 1' {}/api/projects", running.url);
    println!("  Emulator: {} (captured mail: {}/_emulator/mail)", running.emulator.url(), running.emulator.url());
    println!("  Google Chat: {}/_emulator/chat/page (approve from the cards there)", running.emulator.url());
    println!("  The sweeper runs every minute, as Cloud Scheduler runs it in production.");
    println!("  Mail sent by the mailer is printed below. Ctrl-C stops everything.\n");
    tokio::signal::ctrl_c().await?;
    if let Some(dir) = state {
        running.save(&dir)?;
        println!("IAM policies saved to {}", dir.display());
    }
    println!("stopped");
    Ok(())
}
