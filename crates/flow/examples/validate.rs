//! Validates flow files: `cargo run -p switchboard-flow --example validate -- FILE…`
fn main() {
    let mut failed = false;
    for f in std::env::args().skip(1) {
        match switchboard_flow::Flow::load(&f) {
            Ok(flow) => println!("{f}: ok ({} steps)", flow.step_names().count()),
            Err(e) => {
                failed = true;
                println!("{e}");
            }
        }
    }
    std::process::exit(i32::from(failed));
}
