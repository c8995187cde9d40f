//! Test stand-in for `flotilla shim`: `runtime-shim shim ARGS…`.

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "shim") {
        args.remove(0);
    }
    std::process::exit(runtime::shim::main(args));
}
