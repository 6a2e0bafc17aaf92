//! `kache config`: where the cache is and the effective settings, each with where it came
//! from (the environment, the config file, or the default), like `ccache -p`.
//!
//! Reads the settings through the one loader ([`crate::config::Sources`]); must not create
//! the cache dir or open the store.

use std::process::ExitCode;

use super::exit::Exit;

use serde::Serialize;

use super::format;
use crate::config::{Config, Origin, Sources};

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Print the settings as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    name: &'static str,
    value: String,
    /// `default`, `environment (KACHE_DIR)` or `<file> (key)`.
    from: String,
}

pub(crate) fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let (sources, config) = match Sources::load(&env).and_then(|s| {
        let c = Config::from_sources(&s)?;
        Ok((s, c))
    }) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("kache: error: {e}");
            return Ok(Exit::Usage.into());
        }
    };
    let from = |vars: &[&str], key: &str| -> String {
        match sources.get(vars, key) {
            Ok(Some(s)) => s.origin.to_string(),
            _ => Origin::Default.to_string(),
        }
    };
    let file = match sources.file_path() {
        Some(p) => p.display().to_string(),
        None => "none".to_owned(),
    };
    let key_vars_from = if std::env::var_os("KACHE_KEY_ENV_VARS").is_some() {
        Origin::Env("KACHE_KEY_ENV_VARS".into()).to_string()
    } else if config.key_env_vars.is_empty() {
        Origin::Default.to_string()
    } else {
        format!("{file} (key_env_vars)")
    };
    let remote = match &config.remote {
        Ok(Some(r)) => format!(
            "s3://{}/{}{}",
            r.bucket,
            r.prefix,
            if r.read_only { " (read-only)" } else { "" }
        ),
        Ok(None) => "none".to_owned(),
        Err(e) => format!("invalid: {e}"),
    };
    let rows = vec![
        Row {
            name: "dir",
            value: config.dir.display().to_string(),
            from: from(&["KACHE_DIR"], "dir"),
        },
        Row {
            name: "max_size",
            value: format::bytes(config.max_size),
            from: from(&["KACHE_MAX_SIZE"], "max_size"),
        },
        Row {
            name: "incremental",
            value: format!("{:?}", config.incremental).to_lowercase(),
            from: from(&["KACHE_INCREMENTAL"], "incremental"),
        },
        Row {
            name: "key_env_vars",
            value: config.key_env_vars.join(","),
            from: key_vars_from,
        },
        Row {
            name: "disable",
            value: config.disabled.to_string(),
            from: from(&["KACHE_DISABLE"], "disable"),
        },
        Row {
            name: "log",
            value: config.log_filter.clone().unwrap_or_else(|| "off".into()),
            from: from(&["KACHE_LOG"], "log"),
        },
        Row {
            name: "remote",
            value: remote,
            from: from(&["KACHE_REMOTE"], "remote.url"),
        },
    ];
    if args.json {
        let value = serde_json::json!({ "config_file": sources.file_path(), "settings": rows });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("config file   {file}");
        for r in &rows {
            println!("{:<14}{}", r.name, format::truncate(&r.value, 64));
            println!("{:<14}  from {}", "", format::truncate(&r.from, 58));
        }
    }
    Ok(ExitCode::SUCCESS)
}
