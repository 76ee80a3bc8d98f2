//! `zkdns rm NAME [TYPE]`: deletes a name's record set (refusing one with live members unless
//! `--force`), or only one type of its records. Checked against the version read, as `set`.

use anyhow::anyhow;

use crate::cli::{GlobalArgs, RmArgs};
use crate::error::{Failure, ResultExt};
use crate::records::decode_set;
use crate::tooling::edit::{self, ATTEMPTS};
use crate::zk::{ZkError, marks, write};

/// Runs `zkdns rm`.
pub async fn run(global: &GlobalArgs, args: RmArgs) -> Result<(), Failure> {
    let fqdn = super::name_arg(&args.name)?;
    super::with_session(global, async |client, layout| {
        let (zone, name, zone_exists) =
            super::set_of_name(client, layout, &fqdn, args.zone.as_ref()).await?;
        let missing =
            || Failure::input(anyhow!("there is no record set {fqdn} in the zone {zone}"));
        if !zone_exists {
            return Err(missing());
        }
        let path = layout.set_of(&zone, &name);
        for _ in 0..ATTEMPTS {
            let Some((data, stat)) = write::get(client, &path).await.or_runtime()? else {
                return Err(missing());
            };
            if let Some(kind) = args.kind {
                let mut set = decode_set(&data).map_err(|e| edit::bad_data(&fqdn, e))?;
                if !edit::remove_records(&mut set, kind) {
                    return Err(Failure::input(anyhow!("{fqdn} has no {kind} to remove")));
                }
                if write::write_set(client, layout, &path, Some(&stat), &set.to_payload())
                    .await
                    .or_runtime()?
                {
                    let empty = if set.is_empty() {
                        " (no records left: the name answers NODATA; `zkdns rm NAME` deletes it)"
                    } else {
                        ""
                    };
                    println!("{fqdn}: {}{empty}", set.to_text());
                    return Ok(());
                }
                continue;
            }
            let members = match client.list_children(&path).await {
                Ok(m) => m,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(Failure::runtime(ZkError::request(&path)(e))),
            };
            if !members.is_empty() && !args.force {
                return Err(Failure::input(anyhow!(
                    "{fqdn} has {} live member(s) registered ({}); --force deletes them too",
                    members.len(),
                    members.join(", ")
                )));
            }
            let mut ops: Vec<write::Op> = members
                .iter()
                .map(|member| write::Op::Delete {
                    path: format!("{path}/{member}"),
                    version: -1,
                })
                .collect();
            ops.push(write::Op::Delete {
                path: path.clone(),
                version: stat.version,
            });
            match write::commit(client, layout, &ops).await {
                Ok(()) => {
                    // no longer a name with members (best effort: a stale listing only costs
                    // a reconnecting stub one more check)
                    let _ = marks::set_listed(client, layout, &path, false).await;
                    let also = if members.is_empty() {
                        String::new()
                    } else {
                        format!(" with {} member(s)", members.len())
                    };
                    println!("{fqdn}: deleted{also}");
                    return Ok(());
                }
                Err(write::CommitError::Conflict { .. }) => continue,
                Err(write::CommitError::Other(e)) => return Err(Failure::runtime(e)),
            }
        }
        Err(Failure::runtime(anyhow!("{path} kept changing; try again")))
    })
    .await
}
