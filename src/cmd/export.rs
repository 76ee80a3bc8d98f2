//! `zkdns export ZONE`: prints a zone as an RFC 1035 zone file that `import` reads back;
//! registered members are listed in comments, not exported.

use crate::cli::{ExportArgs, GlobalArgs};
use crate::error::Failure;
use crate::names::RelName;
use crate::records::valid_set;
use crate::tooling::zonefile::{self, ExportSet};

/// Runs `zkdns export`.
pub async fn run(global: &GlobalArgs, args: ExportArgs) -> Result<(), Failure> {
    super::with_session(global, async |client, layout| {
        let zone = args.zone();
        let nodes = super::read_existing_zone(client, layout, zone).await?;
        let settings = super::settings_of(zone, &nodes);
        let mut header = vec![format!(
            "zone {zone} exported by zkdns from {}",
            layout.zone_of(zone)
        )];
        let mut sets = Vec::new();
        for (raw, node) in nodes.apex_first() {
            let checked = RelName::from_znode(raw, zone)
                .map_err(|e| e.to_string())
                .and_then(|name| Ok((name, valid_set(&node.data, zone)?)));
            let (name, mut data) = match checked {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("zkdns: warning: skipping {raw}: {e}");
                    header.push(format!("skipped {raw}: {e}"));
                    continue;
                }
            };
            data.normalise();
            let comments = node
                .members
                .iter()
                .map(|(member, payload)| {
                    let records = match valid_set(payload, zone) {
                        Ok(m) => zonefile::rdata_lines(&m, zone)
                            .into_iter()
                            .map(|(t, v)| format!("{t} {v}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        Err(e) => format!("invalid data: {e}"),
                    };
                    format!("live member {member} of {name} (not exported): {records}")
                })
                .collect();
            sets.push(ExportSet {
                name,
                data,
                comments,
            });
        }
        print!("{}", zonefile::render(zone, &settings, &sets, &header));
        Ok(())
    })
    .await
}
