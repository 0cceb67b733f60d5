#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if let Err(e) = aihub::telemetry::init() {
        eprintln!("aihub: {e:#}");
        std::process::exit(1)
    }
    let code = match aihub::cli::run(std::env::args_os()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("aihub: {e:#}");
            1
        }
    };
    // Exit now: Kafka clients still closing against an unreachable broker must not hold the
    // process (the runtime would wait for them forever).
    std::process::exit(code)
}
