//! Builds the bench's BPF programs in ../bpf into libbpf-rs skeletons, the same way
//! fwd/build.rs builds fwd's.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

const PROGS: &[&str] = &["pktgen", "sink"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    // clang -target bpf does not look in the multiarch include dir for <asm/types.h>.
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    for prog in PROGS {
        let src = PathBuf::from(format!("../bpf/{prog}.bpf.c"));
        SkeletonBuilder::new()
            .source(&src)
            .clang_args([multiarch.as_str(), "-Wall", "-O2"])
            .build_and_generate(out.join(format!("{prog}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        println!("cargo:rerun-if-changed={}", src.display());
    }
}
