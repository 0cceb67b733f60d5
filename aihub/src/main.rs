use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    aihub::telemetry::init();
    match aihub::cli::run(std::env::args_os()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aihub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
