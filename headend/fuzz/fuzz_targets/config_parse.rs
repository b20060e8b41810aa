//! Any UTF-8 text must give a Config or a ConfigError, never a panic; a config
//! that loads must also survive the policy lookups, the summary, and compiling
//! its access-lists (object-group expansion included) with `show access-list`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(cfg) = headend::config::parse_str(text, "fuzz.cfg") {
        let _ = cfg.summary();
        if let Ok(tables) = headend::policy_compile::compile(&cfg) {
            let _ = headend::policy_compile::show_access_list(&tables, &cfg);
        }
        for name in cfg.group_policies.keys() {
            let p = cfg.effective_policy(name);
            let _ = cfg.split_include_routes(&p);
            let _ = cfg.split_exclude_routes(&p);
        }
        for (alias, _) in cfg.group_list() {
            let _ = cfg.tunnel_group_for_alias(&alias);
            let _ = cfg.tunnel_group_for_url(&alias);
        }
    }
});
