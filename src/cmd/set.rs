//! `zkdns set NAME TYPE VALUE…`: replaces the records of one type at a name, creating its
//! record set (and the zone, when `--zone` names a new one) if needed. The write is checked
//! against the version read, so a concurrent change is read again instead of overwritten.

use anyhow::anyhow;

use crate::cli::{GlobalArgs, RecordKind, SetArgs};
use crate::error::{Failure, ResultExt};
use crate::records::{RecordSetJson, decode_set};
use crate::tooling::edit::{self, ATTEMPTS};
use crate::zk::write;

/// Runs `zkdns set`.
pub async fn run(global: &GlobalArgs, args: SetArgs) -> Result<(), Failure> {
    let fqdn = super::name_arg(&args.name)?;
    super::with_session(global, async |client, layout| {
        let (zone, name, zone_exists) =
            super::set_of_name(client, layout, &fqdn, args.zone.as_ref()).await?;
        if !zone_exists {
            write::make_node(client, &layout.zone_of(&zone))
                .await
                .or_runtime()?;
        }
        if args.kind == RecordKind::Cname && name.is_apex() {
            return Err(Failure::input(anyhow!(
                "{fqdn}: a CNAME cannot be at the zone apex, which has SOA and NS records"
            )));
        }
        let path = layout.set_of(&zone, &name);
        for _ in 0..ATTEMPTS {
            let current = write::get(client, &path).await.or_runtime()?;
            let mut set = match &current {
                Some((data, _)) => decode_set(data).map_err(|e| edit::bad_data(&fqdn, e))?,
                None => RecordSetJson::default(),
            };
            let before = set.clone();
            edit::set_records(&mut set, args.kind, &args.values, &zone)
                .map_err(|e| Failure::input(anyhow!("{fqdn}: {e}")))?;
            if current.is_some() && set == before {
                println!("{fqdn}: {} (unchanged)", set.to_text());
                return Ok(());
            }
            let stat = current.as_ref().map(|(_, s)| s);
            if write::write_set(client, layout, &path, stat, &set.to_payload())
                .await
                .or_runtime()?
            {
                println!("{fqdn}: {}", set.to_text());
                return Ok(());
            }
        }
        Err(Failure::runtime(anyhow!("{path} kept changing; try again")))
    })
    .await
}
