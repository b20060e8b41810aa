//! RADIUS `ip:inacl#N` entries are untrusted text: any list of them must give a
//! compiled per-user ACL or an error, never a panic, and a compiled one must
//! classify packets (both directions) and render in `show access-list`.
#![no_main]

use headend::policy_compile::{compile_downloadable, downloadable_name, show_one};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let aces: Vec<String> = data.split('\u{1f}').map(str::to_owned).collect();
    let cfg = headend::config::parse_str("cts role-based sgt 20 name Servers\n", "fuzz.cfg")
        .expect("fixed config");
    let name = downloadable_name("fuzz", &aces);
    if let Ok((acl, compiled)) = compile_downloadable(&cfg, &name, &aces) {
        let mut tables = headend::policy_compile::compile(&cfg).expect("fixed config");
        tables.acls.insert(name.clone(), std::sync::Arc::new(compiled));
        let mut out = String::new();
        show_one(&mut out, &tables, &cfg, &name, &acl);
        assert!(out.contains(&name));
    }
});
