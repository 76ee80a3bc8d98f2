//! `zkdns hosts` mode: the map as a block of a hosts file. [`render`] (pure) rewrites only that
//! block; [`file`] puts the new text in place (renamed, or in place on a bind mount);
//! [`follow`] keeps the file current from the same [`crate::store::Store`] that the sync task
//! fills for `serve`.

pub mod file;
pub mod follow;
pub mod render;

pub use file::{WriteMode, replace_file};
pub use follow::{HostsFile, UpdateError, first_sync, follow};
pub use render::{BEGIN, END, MarkerError, Rendered, is_host_name, render};
