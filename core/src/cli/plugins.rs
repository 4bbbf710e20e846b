//! `qvisor plugins`.

use crate::connection::plugin_set_file;
use crate::plugins::{load_specs, plugin_dir, ListPlugins, PluginStatus, Supervisor};

use super::Globals;

/// Loads the connection's plugin set and prints one row per plugin.
pub fn run(cli: &Globals) -> anyhow::Result<()> {
    let set_file = plugin_set_file(cli.connect.as_deref())?;
    let dir = plugin_dir();
    let specs = load_specs(&set_file, &dir)?;
    let statuses = actix_rt::System::new().block_on(async move {
        let sup = Supervisor::start(specs, None).await;
        sup.send(ListPlugins).await
    })?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&statuses))?);
    } else {
        print_table(&statuses);
    }
    Ok(())
}

fn to_json(statuses: &[PluginStatus]) -> serde_json::Value {
    statuses
        .iter()
        .map(|s| {
            let d = s.description.as_ref();
            serde_json::json!({
                "name": s.name(),
                "kind": s.kind().map(|k| k.as_str()),
                "version": d.map(|d| d.version.to_string()),
                "sdk": s.sdk_version,
                "file": s.file,
                "state": s.state.label(),
                "reason": s.state.reason(),
                "provides": d.map(|d| d.provides.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
                "restarts": s.restarts,
            })
        })
        .collect()
}

fn print_table(statuses: &[PluginStatus]) {
    let header = [
        "Name", "Kind", "Version", "SDK ABI", "State", "File", "Reason",
    ];
    let rows: Vec<[String; 7]> = statuses
        .iter()
        .map(|s| {
            [
                s.name(),
                s.kind().map(|k| k.as_str()).unwrap_or("-").to_string(),
                s.description
                    .as_ref()
                    .map(|d| d.version.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.sdk_version.clone().unwrap_or_else(|| "-".into()),
                s.state.label().to_string(),
                s.file.display().to_string(),
                s.state.reason().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&header.map(String::from));
    println!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 3 * (widths.len() - 1) + 2)
    );
    for row in &rows {
        line(row);
    }
}
