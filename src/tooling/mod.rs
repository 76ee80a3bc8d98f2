//! The zone tooling's pure parts, which write what the stub serves: [`zonefile`] reads and
//! writes RFC 1035 zone files, [`hostmap`] reads hosts files and the old JSON map, [`import`]
//! plans what an import changes and cuts it into transactions, and [`edit`] makes the hand
//! edits of `set` and `rm`. Reading and writing ZooKeeper is `zk`'s; the commands wire both.

pub mod edit;
pub mod hostmap;
pub mod import;
pub mod zonefile;
