//! Tests of bootstrap.rs: boot intents per role and their cloud-init rendering; `spec()` and
//! the layouts are shared with the other modules' tests.

use super::*;
use crate::model::{ClusterName, NodeSize};
use std::time::Duration;

#[test]
fn key_contents_are_elided() {
    let text = "#cloud-config\nwrite_files:\n  - path: \"/etc/clusterctl/ca.pem\"\n    content: \"Q0E=\"\n  - path: \"/etc/clusterctl/worker-key.pem\"\n    encoding: b64\n    content: \"S0VZ\"\n  - path: \"/etc/clusterctl/run.sh\"\n    content: \"UlVO\"\n";
    let shown = redact_keys(text);
    assert!(shown.contains("content: \"Q0E=\""));
    assert!(shown.contains("content: \"UlVO\""));
    assert!(!shown.contains("S0VZ"));
    assert!(shown.contains("    content: \"<private key, generated per cluster, not shown>\""));
}

pub(crate) fn spec() -> ClusterSpec {
    ClusterSpec {
        name: ClusterName::new("t").unwrap(),
        workers: 2,
        dask_version: crate::DASK_VERSION.into(),
        image: crate::default_image(crate::DASK_VERSION),
        scheduler_size: NodeSize::default(),
        worker_size: NodeSize {
            cpus: Some(2),
            memory_mib: Some(4096),
        },
        env: BTreeMap::from([(
            "QUOTE".to_string(),
            "it's \"x\" $HOME `id`; # : - [a]".to_string(),
        )]),
        tags: BTreeMap::new(),
        owner: "me".into(),
        created_at: 1_000,
        ttl: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(600),
        death_timeout: Duration::from_secs(120),
        tls: true,
        private: false,
        launch: "1000-0000abcd".into(),
        pip: Vec::new(),
    }
}

fn layout() -> BootLayout {
    BootLayout {
        dask: vec!["dask".into()],
        files_root: "/etc/clusterctl".into(),
        bind_host: "0.0.0.0".into(),
        scheduler_port: SCHEDULER_PORT,
        dashboard_port: DASHBOARD_PORT,
        nanny: true,
    }
}

#[test]
fn scheduler_intent_has_tls_ttl_and_idle() {
    let s = spec();
    let tls = TlsBundle::generate("t").unwrap();
    let i = scheduler_intent(&s, &layout(), Some(&tls));
    let argv = i.argv.join(" ");
    assert!(
        argv.starts_with(
            "dask scheduler --host 0.0.0.0 --port 8786 --dashboard-address 0.0.0.0:8787"
        ),
        "{argv}"
    );
    assert!(argv.contains("--idle-timeout 600s"), "{argv}");
    assert!(argv.contains("--protocol tls --tls-ca-file /etc/clusterctl/ca.pem --tls-cert /etc/clusterctl/scheduler.pem --tls-key /etc/clusterctl/scheduler-key.pem"), "{argv}");
    assert_eq!(i.env["CLUSTERCTL_EXPIRES"], "4600");
    assert!(i.env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"].contains("scheduler.api"));
    let key = i
        .files
        .iter()
        .find(|f| f.path.ends_with("scheduler-key.pem"))
        .unwrap();
    assert_eq!(key.mode, "0600");
    assert!(!format!("{i:?}").contains("PRIVATE KEY"));
}

#[test]
fn worker_intent_points_at_scheduler() {
    let s = spec();
    let i = worker_intent(&s, &layout(), None, "tcp://10.0.0.5:8786", Some("w-1"));
    let argv = i.argv.join(" ");
    assert!(
        argv.starts_with("dask worker tcp://10.0.0.5:8786 --host 0.0.0.0"),
        "{argv}"
    );
    assert!(
        argv.contains("--death-timeout 120s --name w-1 --nthreads 2 --memory-limit 4096MiB"),
        "{argv}"
    );
    assert!(
        !argv.contains("--tls"),
        "TLS files without a bundle: {argv}"
    );
}

#[derive(Deserialize)]
struct CloudConfig {
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<String>>,
}
#[derive(Deserialize)]
struct WriteFile {
    path: String,
    permissions: String,
    owner: String,
    encoding: String,
    content: String,
}

#[test]
fn pip_requirements_reach_every_node_through_the_image_entrypoint() {
    let mut s = spec();
    s.pip = vec!["xarray>=2024.1".into(), "zarr".into()];
    s.env.insert(PIP_ENV.into(), "pooch".into());
    let sched = scheduler_intent(&s, &layout(), None);
    let worker = worker_intent(&s, &layout(), None, "tcp://10.0.0.1:8786", None);
    for i in [&sched, &worker] {
        assert_eq!(i.env[PIP_ENV], "pooch xarray>=2024.1 zarr");
    }
    // VMs: the variable is in docker's env file, and the image's entrypoint (which
    // installs them) is kept: no --entrypoint on the Dask container.
    let vm = VmOptions {
        image: s.image.clone(),
        install_docker: true,
        gpu: false,
        keys: KeyDelivery::InUserData,
    };
    let text = render_cloud_init(&s, &worker, &layout(), &vm).unwrap();
    let cc: CloudConfig = serde_saphyr::from_str(&text).unwrap();
    let file = |p: &str| {
        let f = cc.write_files.iter().find(|f| f.path == p).unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&f.content)
                .unwrap(),
        )
        .unwrap()
    };
    assert!(
        file("/etc/clusterctl/dask.env").contains("EXTRA_PIP_PACKAGES=pooch xarray>=2024.1 zarr\n")
    );
    assert!(!file("/etc/clusterctl/run.sh").contains("--entrypoint"));
    // Containers: the same variable in the plain environment, the command as arguments.
    let c = crate::container::render_container(&sched, "/etc/clusterctl").unwrap();
    assert_eq!(c.env[PIP_ENV], "pooch xarray>=2024.1 zarr");
    // No requirement, no variable: nothing is installed at boot.
    let plain = scheduler_intent(&spec(), &layout(), None);
    assert!(!plain.env.contains_key(PIP_ENV));
}

#[test]
fn cloud_init_is_valid_yaml_with_escaped_values() {
    let s = spec();
    let tls = TlsBundle::generate("t").unwrap();
    let i = scheduler_intent(&s, &layout(), Some(&tls));
    let vm = VmOptions {
        image: s.image.clone(),
        install_docker: true,
        gpu: false,
        keys: KeyDelivery::InUserData,
    };
    let text = render_cloud_init(&s, &i, &layout(), &vm).unwrap();
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    let cc: CloudConfig = serde_saphyr::from_str(&text).unwrap();
    let decode = |p: &str| {
        let f = cc
            .write_files
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(f.encoding, "b64");
        assert_eq!(f.owner, "root:root");
        (
            f.permissions.clone(),
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(&f.content)
                    .unwrap(),
            )
            .unwrap(),
        )
    };
    let (mode, env) = decode("/etc/clusterctl/dask.env");
    assert_eq!(mode, "0600");
    assert!(
        env.contains("QUOTE=it's \"x\" $HOME `id`; # : - [a]\n"),
        "{env}"
    );
    let (mode, key) = decode("/etc/clusterctl/scheduler-key.pem");
    assert_eq!(
        (mode.as_str(), key.as_str()),
        ("0600", tls.scheduler.key_pem.as_str())
    );
    let (mode, script) = decode("/etc/clusterctl/run.sh");
    assert_eq!(mode, "0700");
    // The test spec expired long ago (created at 1000): the shortest TTL.
    assert!(script.contains("shutdown -P +1 "), "{script}");
    assert!(script.contains("apt-get install -yq docker.io"), "{script}");
    assert!(
        script.contains("'ghcr.io/dask/dask:2026.8.0-py3.12'")
            || script.contains(" ghcr.io/dask/dask:2026.8.0-py3.12 "),
        "{script}"
    );
    assert!(
        script.contains(" dask scheduler --host 0.0.0.0 --port 8786 "),
        "{script}"
    );
    let (_, preload) = decode("/etc/clusterctl/clusterctl_ttl.py");
    assert!(preload.contains("def dask_setup(scheduler)"));
    assert_eq!(
        cc.runcmd,
        vec![vec![
            "sh".to_string(),
            "-c".into(),
            "nohup /etc/clusterctl/run.sh 2>&1 | tee -a /var/log/clusterctl-dask.log \
             >/dev/console 2>&1 &"
                .into()
        ]]
    );
    assert!(
        !text.contains("PRIVATE KEY"),
        "keys are base64 in user-data, never plain"
    );
}

fn store() -> SecretStore {
    SecretStore {
        kind: "aws-ssm".into(),
        region: "eu-west-1".into(),
        endpoint: "https://ssm.eu-west-1.amazonaws.com".into(),
        prefix: "/clusterctl-ec2/t/".into(),
        deadline_secs: 600,
    }
}

#[test]
fn secret_store_keeps_every_private_key_out_of_the_user_data() {
    let s = spec();
    let tls = TlsBundle::generate("t").unwrap();
    let vm = VmOptions {
        image: s.image.clone(),
        install_docker: false,
        gpu: false,
        keys: KeyDelivery::SecretStore(store()),
    };
    for (intent, key_file) in [
        (
            scheduler_intent(&s, &layout(), Some(&tls)),
            "scheduler-key.pem",
        ),
        (
            worker_intent(&s, &layout(), Some(&tls), "tls://10.0.0.4:8786", None),
            "worker-key.pem",
        ),
    ] {
        let text = render_cloud_init(&s, &intent, &layout(), &vm).unwrap();
        let cc: CloudConfig = serde_saphyr::from_str(&text).unwrap();
        let mut seen = Vec::new();
        for f in &cc.write_files {
            let body = base64::engine::general_purpose::STANDARD
                .decode(&f.content)
                .unwrap();
            let body = String::from_utf8(body).unwrap();
            // Neither the PEM nor its base64 (a key would be found by decoding it).
            assert!(!body.contains("PRIVATE KEY"), "{} holds a key", f.path);
            for key in [
                &tls.scheduler.key_pem,
                &tls.worker.key_pem,
                &tls.client.key_pem,
            ] {
                assert!(!body.contains(key.lines().nth(1).unwrap()), "{}", f.path);
            }
            seen.push((f.path.clone(), body));
        }
        let get = |p: &str| {
            seen.iter()
                .find(|(path, _)| path == p)
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| panic!("{p} missing"))
        };
        assert!(!seen.iter().any(|(p, _)| p.ends_with(key_file)));
        let config: serde_json::Value =
            serde_json::from_str(&get("/etc/clusterctl/secrets.json")).unwrap();
        assert_eq!(config["store"], "aws-ssm");
        assert_eq!(config["region"], "eu-west-1");
        assert_eq!(
            config["files"][key_file],
            serde_json::json!({"name": format!("/clusterctl-ec2/t/{key_file}"), "mode": "0600"})
        );
        assert_eq!(config["files"].as_object().unwrap().len(), 1);
        assert!(get("/etc/clusterctl/fetch_secrets.py").contains("def aws_ssm_fetch"));
        // The fetch runs after the TTL is armed and before Dask, with host networking and
        // the files root writable; Dask's mount stays read-only.
        let script = get("/etc/clusterctl/run.sh");
        let ttl = script.find("shutdown -P +").unwrap();
        let fetch = script
            .find("docker run --rm --network host --volume /etc/clusterctl:/etc/clusterctl \\\n")
            .unwrap_or_else(|| panic!("{script}"));
        let dask = script
            .find("--volume /etc/clusterctl:/etc/clusterctl:ro")
            .unwrap();
        assert!(ttl < fetch && fetch < dask, "{script}");
        assert!(
            script.contains(
                " python /etc/clusterctl/fetch_secrets.py /etc/clusterctl/secrets.json\n"
            ),
            "{script}"
        );
    }
}

/// Writes sample user-data for test agents to develop against (`CLUSTERCTL_WRITE_SAMPLES=dir`).
#[test]
fn write_samples() {
    let Some(dir) = std::env::var_os("CLUSTERCTL_WRITE_SAMPLES") else {
        return;
    };
    let s = spec();
    let tls = TlsBundle::generate("t").unwrap();
    let vm = VmOptions {
        image: s.image.clone(),
        install_docker: false,
        gpu: false,
        keys: KeyDelivery::InUserData,
    };
    let sched = scheduler_intent(&s, &layout(), Some(&tls));
    let worker = worker_intent(&s, &layout(), Some(&tls), "tls://127.0.1.4:8786", None);
    let dir = std::path::PathBuf::from(dir);
    std::fs::write(
        dir.join("scheduler.user-data"),
        render_cloud_init(&s, &sched, &layout(), &vm).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("worker.user-data"),
        render_cloud_init(&s, &worker, &layout(), &vm).unwrap(),
    )
    .unwrap();
    let fetched = VmOptions {
        keys: KeyDelivery::SecretStore(store()),
        ..vm
    };
    std::fs::write(
        dir.join("scheduler-fetched.user-data"),
        render_cloud_init(&s, &sched, &layout(), &fetched).unwrap(),
    )
    .unwrap();
}

#[test]
fn shell_quote_escapes() {
    assert_eq!(shell_quote("plain-arg_1.2:3".into()), "plain-arg_1.2:3");
    assert_eq!(shell_quote("it's".into()), r"'it'\''s'");
    assert_eq!(shell_quote("".into()), "''");
    assert_eq!(shell_quote("$(rm -rf /)".into()), "'$(rm -rf /)'");
}

#[test]
fn env_file_refuses_newlines() {
    let env = BTreeMap::from([("A".to_string(), "x\ny".to_string())]);
    assert!(env_file(&env).is_err());
}

#[test]
fn vm_ttl_counts_down_to_the_clusters_expiry() {
    let mut s = spec();
    s.created_at = 1_000_000;
    s.ttl = Duration::from_secs(3600);
    // At `up`: the full TTL.
    assert_eq!(minutes_left(&s, 1_000_000), 60);
    // A worker added by `scale` 50 minutes later gets the 10 minutes that are left.
    assert_eq!(minutes_left(&s, 1_000_000 + 50 * 60), 10);
    // Rounded up: 10 minutes and 1 second left is 11.
    assert_eq!(minutes_left(&s, 1_000_000 + 50 * 60 - 1), 11);
    // At or past the expiry: at least a minute, never zero (which would mean now).
    assert_eq!(minutes_left(&s, 1_000_000 + 3600), 1);
    assert_eq!(minutes_left(&s, 9_000_000), 1);
}
