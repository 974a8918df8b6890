//! The reference process of the startup benchmark: opens every plugin library in the
//! directories given as arguments (file-name order, `RTLD_NOW | RTLD_LOCAL` as calc does), looks
//! up `plugin_entry` and calls it, then unloads them and exits. No validation, no `init`, no
//! argument parsing, no settings: what starting calc with those plugins cannot do less than.

use std::path::PathBuf;

fn main() {
    let mut libraries = Vec::new();
    for dir in std::env::args_os().skip(1) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("a readable directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
            })
            .collect();
        files.sort();
        for file in files {
            use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
            // SAFETY: the benchmark's plugins; loading runs their initialisers.
            let library: libloading::Library =
                unsafe { Library::open(Some(&file), RTLD_NOW | RTLD_LOCAL) }
                    .expect("dlopen")
                    .into();
            // SAFETY: `plugin_entry` has this type by the ABI.
            let entry =
                unsafe { library.get::<calc_sdk::abi::calc_plugin_entry_fn>(b"plugin_entry\0") }
                    .expect("dlsym");
            let entry = (*entry).expect("plugin_entry is not NULL");
            // SAFETY: calling a valid plugin's entry point.
            std::hint::black_box(unsafe { entry() });
            libraries.push(library);
        }
    }
    println!("{}", libraries.len());
}
