//! A private network namespace for the calling test thread, for tests whose machines have
//! addresses outside loopback (moto gives Fargate tasks random `10.x` addresses).
//!
//! The namespace holds one interface, `lo`, with `127.0.0.0/8` and all of `10.0.0.0/8`: every
//! task address is local to it and nothing else is reachable ("Network unreachable"), so no
//! packet of the test can leave it. Namespaces belong to threads: after [`Sandbox::enter`], the
//! sockets of this test thread and every process it spawns (moto, the boot agent, clusterctl,
//! the Dask client) live in the namespace; other tests' threads are unaffected. The namespace
//! ends with its last process.

use std::process::Command;

/// The calling thread's private network namespace.
pub struct Sandbox;

impl Sandbox {
    /// Move this thread into a new network namespace with `lo` up and holding `10.0.0.0/8`.
    /// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), as on the CI machines.
    pub fn enter() -> Sandbox {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect(
            "a new network namespace for the test (the Fargate tests run as root, like CI)",
        );
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.0.0.0/8", "dev", "lo"][..],
        ] {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2) runs");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Nothing but lo: the test cannot reach any other host.
        let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        assert_eq!(links.lines().count(), 1, "only lo in the sandbox: {links}");
        assert!(
            std::net::TcpStream::connect_timeout(
                &"192.0.2.1:80".parse().unwrap(),
                std::time::Duration::from_millis(200)
            )
            .is_err()
        );
        Sandbox
    }
}
