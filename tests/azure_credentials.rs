//! The Azure credential chain end to end against the ARM + Entra ID simulator of `tests/azure/`:
//! a client certificate (PEM, PKCS#8 or PKCS#1 key, with or without its chain) whose RS256
//! assertion the simulator's token endpoint verifies for real, a foreign certificate refused
//! with Entra ID's AADSTS700027, files clusterctl refuses itself (PKCS#12, a key of another
//! certificate) with exit 2; a managed identity through App Service's identity endpoint
//! (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`) and through the metadata service's override
//! (`AZURE_POD_IDENTITY_AUTHORITY_HOST`); the Azure CLI through a fake `az` first on PATH that
//! answers exactly the argv clusterctl sends; and the check, before anything exists, that the
//! identity may create the role assignment of the self-deleting TTL (a Contributor may not:
//! exit 2, nothing created; `--azure-ttl-mode power-off` goes without it).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{Env, python, restsim::RestSim, sandbox::Sandbox};
use serde_json::{Value, json};

const SECRET: &str = "azsim-client-secret-0123456789";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0f3e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000c1c7";
/// The simulator's host identity (App Service style), see `tests/azure/azsim/__init__.py`.
const HOST_IDENTITY_CLIENT: &str = "7c1d0000-bbbb-4ccc-8ddd-0000000000a2";

struct Az {
    env: Env,
    sim: RestSim,
    _sandbox: Sandbox,
}

/// Write a self-signed certificate and its key into `dir/name` (`az_sim.py make-cert`).
fn make_cert(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/azure/az_sim.py"))
        .args(["make-cert", "--out", out.to_str().unwrap()])
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// The PEM blocks of `label` in `text`, each with its armour.
fn blocks(text: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    text.split(&begin)
        .skip(1)
        .filter_map(|rest| rest.split(&end).next())
        .map(|body| format!("{begin}{body}{end}\n"))
        .collect()
}

impl Az {
    /// A sandbox, an environment, and the simulator started with `sim_args` once `prepare` has
    /// made its files in the environment's directory.
    fn new(prepare: impl FnOnce(&Path) -> Vec<String>) -> Self {
        let sandbox = Sandbox::enter();
        let env = Env::new();
        let args = prepare(env.dir.path());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sim = RestSim::start("tests/azure/az_sim.py", env.dir.path(), SECRET, &args);
        Az {
            env,
            sim,
            _sandbox: sandbox,
        }
    }

    /// clusterctl pointed at the simulator (ARM, Entra ID, CA) with no credential at all.
    fn bare(&self) -> Command {
        let mut c = self.env.cmd();
        c.env("AZURE_RESOURCE_MANAGER_ENDPOINT", &self.sim.url)
            .env("AZURE_AUTHORITY_HOST", &self.sim.url)
            .env("CLUSTERCTL_EXTRA_CA_FILE", &self.sim.ca_file);
        for k in [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "AZURE_CLIENT_CERTIFICATE_PASSWORD",
            "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_SUBSCRIPTION_ID",
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
        ] {
            c.env_remove(k);
        }
        c
    }

    /// clusterctl with the service principal's certificate at `pem`.
    fn with_cert(&self, pem: &Path) -> Command {
        let mut c = self.bare();
        c.env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_CERTIFICATE_PATH", pem)
            .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION);
        c
    }

    /// clusterctl with the service principal's secret.
    fn with_secret(&self) -> Command {
        let mut c = self.bare();
        c.env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", SECRET)
            .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION);
        c
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.sim.inventory()["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }

    /// Nothing exists in the subscription, and the simulator refused no request.
    fn assert_empty(&self) {
        let inv = self.sim.inventory();
        assert_eq!(
            inv["resource_groups"],
            json!([]),
            "{}",
            inv["resource_groups"]
        );
        assert_eq!(inv["resources"], json!([]), "{}", inv["resources"]);
        assert_eq!(inv["role_assignments"], json!([]));
        let errors = self.sim.errors();
        assert!(
            errors.trim().is_empty(),
            "the simulator refused requests: {errors}"
        );
    }
}

fn up_args(name: &str) -> Vec<&str> {
    vec![
        "up",
        "--provider",
        "azure",
        "--location",
        "eastus",
        "--name",
        name,
        "--workers",
        "1",
        "--allow-cidr",
        "10.0.0.0/32",
        "--timeout",
        "240s",
    ]
}

/// (exit code, stdout + stderr).
fn run(mut cmd: Command, args: &[&str]) -> (Option<i32>, String) {
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_client_certificate_brings_a_cluster_up_and_down_and_a_foreign_one_is_refused() {
    let az = Az::new(|dir| {
        let cert = make_cert(dir, "sp.pem", &[]);
        vec!["--client-certificate".into(), cert.display().to_string()]
    });
    let dir = az.env.dir.path();
    let sp = dir.join("sp.pem");
    let sp_text = std::fs::read_to_string(&sp).unwrap();

    // up and down with the certificate: every token came from an assertion the simulator
    // verified against the registered certificate.
    let mut args = up_args("azcert");
    args.extend(["--output", "json"]);
    let (code, text) = run(az.with_cert(&sp), &args);
    assert_eq!(code, Some(0), "up: {text}\nsim errors: {}", az.sim.errors());
    let issued = az.events("token-issued");
    assert!(!issued.is_empty());
    assert!(
        issued
            .iter()
            .all(|e| e["credential"] == "client_certificate" && e["x5c"] == false),
        "{issued:?}"
    );
    let key_line = blocks(&sp_text, "PRIVATE KEY")[0]
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let inv = az.sim.inventory().to_string();
    assert!(!inv.contains(&key_line), "the private key reached ARM");
    let (code, text) = run(az.with_cert(&sp), &["status", "azcert"]);
    assert_eq!(code, Some(0), "status: {text}");
    let (code, text) = run(az.with_cert(&sp), &["down", "azcert"]);
    assert_eq!(code, Some(0), "down: {text}");
    az.sim.assert_no_vm_runs();
    az.assert_empty();

    // The same certificate with a PKCS#1 key and its chain (x5c) sent.
    let other = make_cert(dir, "other.pem", &[]);
    let other_text = std::fs::read_to_string(&other).unwrap();
    let pkcs1 = make_cert(
        dir,
        "pkcs1.pem",
        &["--pkcs1", "--from", sp.to_str().unwrap()],
    );
    let chained = dir.join("chained.pem");
    std::fs::write(
        &chained,
        format!(
            "{}{}",
            std::fs::read_to_string(&pkcs1).unwrap(),
            blocks(&other_text, "CERTIFICATE")[0]
        ),
    )
    .unwrap();
    let mut dry = up_args("azcert2");
    dry.push("--dry-run");
    let mut cmd = az.with_cert(&chained);
    cmd.env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true");
    let before = az.events("token-issued").len();
    let (code, text) = run(cmd, &dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("client certificate from AZURE_CLIENT_CERTIFICATE_PATH")
            && text.contains("certificate thumbprint")
            && text.contains(CLIENT_ID),
        "the identity in --dry-run: {text}"
    );
    let issued = az.events("token-issued");
    assert_eq!(issued[before]["x5c"], true, "{issued:?}");

    // A certificate the application does not know: Entra ID refuses it, nothing is created.
    let (code, text) = run(az.with_cert(&other), &up_args("azforeign"));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("AADSTS700027") && text.contains("client certificate"),
        "{text}"
    );
    assert!(!az.events("token-refused").is_empty());

    // Files clusterctl refuses itself, before any call: exit 2 naming the file and the fix.
    let mixed = dir.join("mixed.pem");
    std::fs::write(
        &mixed,
        format!(
            "{}{}",
            blocks(&sp_text, "CERTIFICATE")[0],
            blocks(&other_text, "PRIVATE KEY")[0]
        ),
    )
    .unwrap();
    let (code, text) = run(az.with_cert(&mixed), &up_args("azmixed"));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(mixed.to_str().unwrap()) && text.contains("belongs to none"),
        "{text}"
    );
    let pfx = dir.join("sp.pfx");
    std::fs::write(&pfx, [0x30, 0x82, 0x0a, 0x01, 0x02, 0x01, 0x03]).unwrap();
    let (code, text) = run(az.with_cert(&pfx), &up_args("azpfx"));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("openssl pkcs12 -in {}", pfx.display())) && text.contains("hint:"),
        "{text}"
    );
    az.assert_empty();
}

#[test]
fn a_managed_identity_and_the_azure_cli_are_used_and_named() {
    let az = Az::new(|_| vec!["--identity-header".into(), "hdr-0123456789".into()]);
    let dir = az.env.dir.path();

    // App Service / Container Apps: IDENTITY_ENDPOINT + IDENTITY_HEADER.
    let mi = |header: &str| {
        let mut c = az.bare();
        c.env("IDENTITY_ENDPOINT", format!("{}/msi/token", az.sim.url))
            .env("IDENTITY_HEADER", header)
            .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION);
        c
    };
    let mut dry = up_args("azmi");
    dry.push("--dry-run");
    let (code, text) = run(mi("hdr-0123456789"), &dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("system-assigned managed identity")
            && text.contains("IDENTITY_ENDPOINT")
            && text.contains(HOST_IDENTITY_CLIENT),
        "the source and identity in --dry-run: {text}"
    );
    assert!(!az.events("app-service-token").is_empty());
    let (code, text) = run(mi("wrong"), &["list", "--provider", "azure"]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("X-IDENTITY-HEADER"), "{text}");

    // The Azure CLI: a fake `az` first on PATH, logging its argv, answering exactly what
    // clusterctl sends with what the real one prints (its token from the simulator's token
    // endpoint, as the CLI refreshes its login), refusing anything else.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("az-argv.jsonl");
    let script = format!(
        r#"#!{python}
import json, ssl, sys, time, urllib.parse, urllib.request
argv = sys.argv[1:]
with open({log:?}, "a") as fh:
    fh.write(json.dumps(argv) + "\n")
if argv == ["account", "get-access-token", "--output", "json", "--resource",
            "https://management.azure.com/"]:
    form = urllib.parse.urlencode({{"client_id": {client:?}, "client_secret": {secret:?},
        "grant_type": "client_credentials",
        "scope": "https://management.azure.com/.default"}}).encode()
    ctx = ssl.create_default_context(cafile={ca:?})
    t = json.load(urllib.request.urlopen(urllib.request.Request(
        {url:?} + "/{tenant}/oauth2/v2.0/token", data=form,
        headers={{"content-type": "application/x-www-form-urlencoded"}}), context=ctx))
    exp = int(time.time()) + int(t["expires_in"])
    print(json.dumps({{"accessToken": t["access_token"],
        "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(exp)),
        "expires_on": exp, "subscription": {sub:?}, "tenant": {tenant:?},
        "tokenType": "Bearer"}}, indent=2))
elif argv == ["account", "show", "--output", "json"]:
    print(json.dumps({{"environmentName": "AzureCloud", "homeTenantId": {tenant:?},
        "id": {sub:?}, "isDefault": True, "managedByTenants": [], "name": "Simulated",
        "state": "Enabled", "tenantId": {tenant:?},
        "user": {{"name": {client:?}, "type": "servicePrincipal"}}}}, indent=2))
else:
    sys.stderr.write("ERROR: unexpected arguments: " + " ".join(argv) + "\n")
    sys.exit(2)
"#,
        python = python().display(),
        log = log.display().to_string(),
        client = CLIENT_ID,
        secret = SECRET,
        ca = az.sim.ca_file.display().to_string(),
        url = az.sim.url,
        tenant = TENANT,
        sub = SUBSCRIPTION,
    );
    let az_path = bin.join("az");
    std::fs::write(&az_path, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&az_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = || {
        let mut c = az.bare();
        c.env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        c
    };
    let mut dry = up_args("azcli");
    dry.push("--dry-run");
    let (code, text) = run(cli(), &dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Azure CLI")
            && text.contains(&format!("signed in as {CLIENT_ID} (servicePrincipal)"))
            && text.contains(SUBSCRIPTION),
        "the source, identity and the CLI's subscription in --dry-run: {text}"
    );
    let argvs: Vec<Vec<String>> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let token_argv = [
        "account",
        "get-access-token",
        "--output",
        "json",
        "--resource",
        "https://management.azure.com/",
    ];
    let show_argv = ["account", "show", "--output", "json"];
    assert!(
        argvs.contains(&token_argv.map(String::from).to_vec()),
        "{argvs:?}"
    );
    assert!(
        argvs.contains(&show_argv.map(String::from).to_vec()),
        "{argvs:?}"
    );
    assert!(
        argvs
            .iter()
            .all(|a| *a == token_argv.map(String::from).to_vec()
                || *a == show_argv.map(String::from).to_vec()),
        "only the argv the fake answers: {argvs:?}"
    );
    let (code, text) = run(cli(), &["list", "--provider", "azure"]);
    assert_eq!(code, Some(0), "{text}");
    az.assert_empty();
}

/// The instance metadata service at `AZURE_POD_IDENTITY_AUTHORITY_HOST` (MSAL's and
/// azure-identity's override): used without a probe, named in `--dry-run`.
#[test]
fn the_metadata_service_override_gives_the_hosts_managed_identity() {
    let az = Az::new(|_| vec!["--imds-host-identity".into()]);
    let imds = az.sim.ready["imds"].as_str().unwrap().to_string();
    let mut c = az.bare();
    c.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", &imds)
        .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION);
    let mut dry = up_args("azimds");
    dry.push("--dry-run");
    let (code, text) = run(c, &dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("AZURE_POD_IDENTITY_AUTHORITY_HOST")
            && text.contains(&imds)
            && text.contains(HOST_IDENTITY_CLIENT),
        "the source and identity in --dry-run: {text}"
    );
    assert!(!az.events("imds-host-token").is_empty());
    az.assert_empty();
}

#[test]
fn a_contributor_is_refused_before_anything_exists_unless_the_ttl_only_powers_off() {
    let az = Az::new(|_| vec!["--sp-roles".into(), "Contributor".into()]);
    let (code, text) = run(az.with_secret(), &up_args("azrole"));
    assert_eq!(code, Some(2), "{text}");
    for needle in [
        "Microsoft.Authorization/roleAssignments/write",
        "--azure-ttl-mode power-off",
        "Owner",
        "hint:",
        CLIENT_ID,
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!az.events("permissions-read").is_empty());
    az.assert_empty();

    // The opt-out: --dry-run says plainly that stopped VMs keep billing; `up` makes no identity
    // and no role assignment; `down` leaves nothing.
    let mut args = up_args("azoff");
    args.extend(["--azure-ttl-mode", "power-off"]);
    let mut dry = args.clone();
    dry.push("--dry-run");
    let (code, text) = run(az.with_secret(), &dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("KEEPS BILLING"), "{text}");
    let (code, text) = run(az.with_secret(), &args);
    assert_eq!(code, Some(0), "up: {text}\nsim errors: {}", az.sim.errors());
    let inv = az.sim.inventory();
    let vms: Vec<&Value> = inv["vms"].as_array().unwrap().iter().collect();
    assert_eq!(vms.len(), 2, "{vms:?}");
    assert!(
        vms.iter().all(|v| v["identity_principal"].is_null()),
        "{vms:?}"
    );
    assert_eq!(inv["role_assignments"], json!([]));
    let (code, text) = run(az.with_secret(), &["down", "azoff"]);
    assert_eq!(code, Some(0), "down: {text}");
    az.sim.assert_no_vm_runs();
    az.assert_empty();
}

#[test]
fn contributor_with_user_access_administrator_may_create_the_assignment() {
    let az = Az::new(|_| {
        vec![
            "--sp-roles".into(),
            "Contributor,User Access Administrator".into(),
        ]
    });
    let mut dry = up_args("azuaa");
    dry.push("--dry-run");
    let (code, text) = run(az.with_secret(), &dry);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("deletes the resource group clusterctl-azuaa"),
        "{text}"
    );
    assert!(!az.events("permissions-read").is_empty());
    az.assert_empty();
}
