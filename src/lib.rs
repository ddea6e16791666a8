//! ovirt-node-reg: turns a freshly booted oVirt Node into a host the oVirt Engine manages.
//!
//! One module per concern; see `docs/ARCHITECTURE.md` in the repository.

pub mod bootstrap;
pub mod calendar;
pub mod clock;
pub mod cmdline;
pub mod conffile;
pub mod config;
pub mod console;
pub mod crypt;
pub mod engine;
pub mod entropy;
pub mod escape;
pub mod explain;
pub mod fault;
pub mod flow;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod init;
pub mod install;
pub mod legacy;
pub mod logging;
pub mod login;
pub mod net;
pub mod os_release;
pub mod paths;
pub mod pki;
pub mod protocol;
pub mod retry;
pub mod sandbox;
pub mod secret;
pub mod setup;
pub mod slots;
pub mod sources;
pub mod status;
pub mod store;
pub mod trust;
pub mod values;
pub mod worker;
