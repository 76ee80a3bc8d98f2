//! `zkdns ls [ZONE]`: the zones with their numbers of record sets, or every record of one
//! zone (registered members included), as a table or JSON.

use serde_json::{Value, json};

use crate::cli::{GlobalArgs, LsArgs};
use crate::error::{Failure, ResultExt};
use crate::names::ZoneName;
use crate::records::{RecordSetJson, ZoneSettings, valid_set};
use crate::tooling::zonefile;
use crate::zk::zone::{self, ZoneNodes};

/// Runs `zkdns ls`.
pub async fn run(global: &GlobalArgs, args: LsArgs) -> Result<(), Failure> {
    super::with_session(global, async |client, layout| {
        let Some(zone) = &args.zone else {
            let zones = zone::list_zones(client, layout).await.or_runtime()?;
            if args.json {
                let list: Vec<Value> = zones
                    .iter()
                    .map(|(z, n)| json!({ "zone": z, "sets": n }))
                    .collect();
                println!("{}", Value::Array(list));
            } else {
                let rows: Vec<Vec<String>> = zones
                    .iter()
                    .map(|(z, n)| vec![z.clone(), n.to_string()])
                    .collect();
                print!("{}", table(&["ZONE", "SETS"], &rows));
            }
            return Ok(());
        };
        let nodes = super::read_existing_zone(client, layout, zone).await?;
        let settings = super::settings_of(zone, &nodes);
        if args.json {
            let sets: Vec<Value> = nodes
                .apex_first()
                .into_iter()
                .map(|(name, node)| {
                    let members: Vec<Value> = node
                        .members
                        .iter()
                        .map(|(id, payload)| json!({ "id": id, "data": json_of(payload, zone) }))
                        .collect();
                    json!({
                        "name": name,
                        "data": json_of(&node.data, zone),
                        "members": members,
                    })
                })
                .collect();
            let zone_json: Value = if nodes.data.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&nodes.data)
                    .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&nodes.data) }))
            };
            let out = json!({ "zone": zone.as_str(), "settings": zone_json, "sets": sets });
            println!("{out}");
        } else {
            let rows: Vec<Vec<String>> = rows_of(zone, &settings, &nodes)
                .into_iter()
                .map(|r| vec![r.name, r.rtype, r.ttl, r.value, r.member])
                .collect();
            print!(
                "{}",
                table(&["NAME", "TYPE", "TTL", "VALUE", "MEMBER"], &rows)
            );
        }
        Ok(())
    })
    .await
}

/// One row of `zkdns ls ZONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    rtype: String,
    ttl: String,
    value: String,
    member: String,
}

fn rows_of(zone: &ZoneName, settings: &ZoneSettings, nodes: &ZoneNodes) -> Vec<Row> {
    let row = |name: &str, rtype: &str, ttl: String, value: String, member: &str| Row {
        name: name.to_string(),
        rtype: rtype.to_string(),
        ttl,
        value,
        member: member.to_string(),
    };
    let zone_ttl = settings.ttl.to_string();
    let soa = format!(
        "{} {} {} {} {} {} {}",
        settings.mname,
        settings.rname,
        settings
            .serial
            .map_or_else(|| "(auto)".to_string(), |s| s.to_string()),
        settings.refresh,
        settings.retry,
        settings.expire,
        settings.minimum
    );
    let mut rows = vec![row("@", "SOA", zone_ttl.clone(), soa, "")];
    for ns in &settings.ns {
        rows.push(row("@", "NS", zone_ttl.clone(), ns.to_ascii(), ""));
    }
    for (name, node) in nodes.apex_first() {
        let own = valid_set(&node.data, zone);
        let ttl = own
            .as_ref()
            .ok()
            .and_then(|s| s.ttl)
            .unwrap_or(settings.ttl)
            .to_string();
        let mut add = |payload: Result<RecordSetJson, String>, member: &str| match payload {
            Ok(set) => {
                for (rtype, value) in zonefile::rdata_lines(&set, zone) {
                    rows.push(row(name, rtype, ttl.clone(), value, member));
                }
            }
            Err(e) => rows.push(row(name, "?", "-".into(), format!("invalid: {e}"), member)),
        };
        add(own.clone(), "");
        for (member, payload) in &node.members {
            add(valid_set(payload, zone), member);
        }
    }
    rows
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn json_of(payload: &[u8], zone: &ZoneName) -> Value {
    match valid_set(payload, zone) {
        Ok(set) => serde_json::to_value(&set).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e, "raw": String::from_utf8_lossy(payload) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "BB"],
            &[vec!["xyz".into(), "1".into()], vec!["".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxyz  1\n\n");
    }
}
