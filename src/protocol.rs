//! The engine's URL paths, each written once (docs/ovirt-protocol.md §3, §6.5; docs/protocol-v2.md).
//! `engine` sends the host-register requests, `trust` fetches the CA and the SSH key, `clock`
//! reads the engine's `Date`: all from here.

/// The servlet path, spelled once: `host_register!()` is the path, `host_register!("q")` the
/// path with the query `q`, both string literals so the tables below stay constants.
macro_rules! host_register {
    () => {
        "/ovirt-engine/services/host-register"
    };
    ($query:literal) => {
        concat!(host_register!(), "?", $query)
    };
}

/// The host-register servlet (v1 `register`, `get-version`, the v2 enrolment commands).
pub const HOST_REGISTER: &str = host_register!();

/// `get-version`: unauthenticated, small, answered by every engine.
pub const GET_VERSION: &str = host_register!("version=1&command=get-version");

/// Where the CA can be downloaded, newest engines first (docs/ovirt-protocol.md §3.2, §6.5).
pub const CA_SOURCES: [&str; 3] = [
    host_register!("version=1&command=get-pki-trust"),
    "/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA",
    "/ca.crt",
];

/// Where the engine's SSH public key can be downloaded.
pub const SSH_KEY_SOURCES: [&str; 2] = [
    host_register!("version=1&command=get-ssh-trust"),
    "/engine.ssh.key.txt",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_the_engine_serves_them() {
        assert_eq!(HOST_REGISTER, "/ovirt-engine/services/host-register");
        assert_eq!(
            GET_VERSION,
            "/ovirt-engine/services/host-register?version=1&command=get-version"
        );
        assert_eq!(
            CA_SOURCES[0],
            "/ovirt-engine/services/host-register?version=1&command=get-pki-trust"
        );
        assert_eq!(
            SSH_KEY_SOURCES[0],
            "/ovirt-engine/services/host-register?version=1&command=get-ssh-trust"
        );
    }
}
