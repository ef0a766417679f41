//! `bindu-loadtest`: see `bindu-loadtest --help` and the README's "Load testing" section.

use std::process::ExitCode;

use bindu_loadtest::Options;
use clap::Parser;

fn main() -> ExitCode {
    let opts = Options::parse();
    let json = opts.json.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bindu-loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bindu_loadtest::run(opts)) {
        Ok(report) => {
            print!("{}", report.table());
            if let Some(path) = json {
                if let Err(e) = bindu_loadtest::write_json(&report, &path) {
                    eprintln!("bindu-loadtest: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bindu-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}
