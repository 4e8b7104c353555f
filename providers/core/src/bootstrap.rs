//! Boot intent: what a node must run (command line, environment, files), derived from the spec
//! once for every provider, and its rendering for VMs as cloud-init.
//!
//! A provider supplies a [`BootLayout`] (where files go, which host to bind, how to invoke
//! `dask`) and gets a [`BootIntent`]. The local provider runs the intent as processes; VM
//! providers render it with [`render_cloud_init`]; container providers put `argv` and `env` in
//! their task or pod specs. Test agents parse the rendered form back and run exactly that, so
//! the intent is the single description of a node.

use std::collections::BTreeMap;

use base64::Engine as _;
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::{ClusterSpec, Role},
    tls::TlsBundle,
};

/// Port the scheduler listens on, unless the provider chooses another.
pub const SCHEDULER_PORT: u16 = 8786;
/// Port of the scheduler's dashboard, unless the provider chooses another.
pub const DASHBOARD_PORT: u16 = 8787;

const SCHEDULER_TTL_PY: &str = include_str!("../../../templates/scheduler_ttl.py");
const NODE_RUN_SH: &str = include_str!("../../../templates/node-run.sh.j2");
const CLOUD_INIT: &str = include_str!("../../../templates/cloud-init.yaml.j2");
const FETCH_SECRETS_PY: &str = include_str!("../../../templates/fetch_secrets.py");

/// File name of the key fetcher inside a VM's files root ([`KeyDelivery::SecretStore`]).
pub const FETCH_SECRETS_FILE: &str = "fetch_secrets.py";
/// File name of the fetcher's configuration (store, names, no secret) beside it.
pub const SECRETS_CONFIG_FILE: &str = "secrets.json";

/// File name of the TTL preload inside the node's files root.
pub const TTL_PRELOAD_FILE: &str = "clusterctl_ttl.py";

/// Provider facts the intent depends on.
#[derive(Debug, Clone)]
pub struct BootLayout {
    /// How to invoke the `dask` command: `["dask"]` in images, `[python, "-m", "dask"]` locally.
    pub dask: Vec<String>,
    /// Directory on the node that holds the intent's files (TLS material, preload).
    pub files_root: String,
    /// Host the node binds to: `0.0.0.0` on a VM or pod, `127.0.0.1` locally.
    pub bind_host: String,
    /// Scheduler port.
    pub scheduler_port: u16,
    /// Run each worker under a Dask nanny process (restarts a crashed worker, enforces the
    /// memory limit by terminating). Where the platform itself supervises the process, or
    /// where boot is CPU-bound on a small machine (local), one process per worker is leaner.
    pub nanny: bool,
    /// Dashboard port.
    pub dashboard_port: u16,
}

/// Where VM nodes keep the intent's files.
pub const VM_FILES_ROOT: &str = "/etc/clusterctl";

impl BootLayout {
    /// The layout of a VM node (EC2, DigitalOcean, Azure, GCE): Dask from the image under Docker
    /// with host networking, bound to every interface, under a nanny, files in
    /// [`VM_FILES_ROOT`].
    pub fn vm() -> Self {
        BootLayout {
            dask: vec!["dask".into()],
            files_root: VM_FILES_ROOT.into(),
            bind_host: "0.0.0.0".into(),
            scheduler_port: SCHEDULER_PORT,
            dashboard_port: DASHBOARD_PORT,
            nanny: true,
        }
    }
}

/// One file the node needs before it starts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFile {
    /// Absolute path on the node.
    pub path: String,
    /// Contents.
    pub contents: String,
    /// Unix mode, as an octal string like `0600`.
    pub mode: String,
}

impl BootFile {
    /// Whether the file holds a private key: such files never go where a read-only caller of
    /// the platform's API could read them (see [`KeyDelivery`]).
    pub fn is_secret(&self) -> bool {
        self.contents.contains("PRIVATE KEY")
    }

    /// The file's name without its directory (`/etc/clusterctl/worker-key.pem` → `worker-key.pem`).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

impl std::fmt::Debug for BootFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File contents include private keys: never print them.
        write!(
            f,
            "BootFile {{ path: {:?}, mode: {:?}, .. }}",
            self.path, self.mode
        )
    }
}

/// Everything a node runs: the rendered bootstrap intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootIntent {
    /// Scheduler or worker.
    pub role: Role,
    /// The node's Dask name, when it is fixed at render time (VM batches leave it to Dask).
    pub name: Option<String>,
    /// The command line.
    pub argv: Vec<String>,
    /// The environment on top of the image's.
    pub env: BTreeMap<String, String>,
    /// Files to write first.
    pub files: Vec<BootFile>,
    /// How long after the TTL a VM running this intent powers itself off: zero, unless an
    /// end-of-life step must finish first ([`crate::expiry::with_hook`]).
    #[serde(default, skip_serializing_if = "std::time::Duration::is_zero")]
    pub poweroff_delay: std::time::Duration,
}

impl BootIntent {
    /// The files as they appear when shown to a user (`--dry-run`): private keys elided.
    pub fn redacted_files(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|f| {
                let shown = if f.contents.contains("PRIVATE KEY") {
                    "<private key, generated per cluster, not shown>".to_string()
                } else if f.path.ends_with(".pem") {
                    "<certificate>".to_string()
                } else {
                    format!("<{} bytes>", f.contents.len())
                };
                (f.path.clone(), shown)
            })
            .collect()
    }
}

/// The address scheme the cluster speaks.
pub fn scheme(spec: &ClusterSpec) -> &'static str {
    if spec.tls { "tls" } else { "tcp" }
}

/// The address of a scheduler listening on the default port of `host`: `tls://10.0.1.5:8786`.
pub fn scheduler_address(scheme: &str, host: &str) -> String {
    format!("{scheme}://{host}:{SCHEDULER_PORT}")
}

fn tls_files(role: Role, layout: &BootLayout, tls: &TlsBundle) -> (Vec<BootFile>, Vec<String>) {
    let root = &layout.files_root;
    let pair = tls.for_role(role);
    let r = role.as_str();
    let files = vec![
        BootFile {
            path: format!("{root}/ca.pem"),
            contents: tls.ca_pem.clone(),
            mode: "0644".into(),
        },
        BootFile {
            path: format!("{root}/{r}.pem"),
            contents: pair.cert_pem.clone(),
            mode: "0644".into(),
        },
        BootFile {
            path: format!("{root}/{r}-key.pem"),
            contents: pair.key_pem.clone(),
            mode: "0600".into(),
        },
    ];
    let args = vec![
        "--tls-ca-file".into(),
        format!("{root}/ca.pem"),
        "--tls-cert".into(),
        format!("{root}/{r}.pem"),
        "--tls-key".into(),
        format!("{root}/{r}-key.pem"),
    ];
    (files, args)
}

/// The variable the Dask images' entrypoint reads for packages to `pip install` at start.
pub const PIP_ENV: &str = "EXTRA_PIP_PACKAGES";

fn common_env(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    env.insert("CLUSTERCTL_CLUSTER".into(), spec.name.to_string());
    env.insert("CLUSTERCTL_EXPIRES".into(), spec.expires_at().to_string());
    if !spec.pip.is_empty() {
        // The Dask image's entrypoint (`prepare.sh`) installs these before it runs the command;
        // every provider keeps that entrypoint. Requirements given with `--env` come first.
        let mut pip: Vec<String> = env
            .get(PIP_ENV)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        pip.extend(spec.pip.iter().cloned());
        env.insert(PIP_ENV.into(), pip.join(" "));
    }
    if spec.tls {
        env.insert(
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION".into(),
            "True".into(),
        );
    }
    env
}

/// Scheduler HTTP routes: Dask's defaults plus the API clusterctl uses to retire workers on
/// `scale`.
const SCHEDULER_ROUTES: &str = "['distributed.http.scheduler.prometheus', \
'distributed.http.scheduler.info', 'distributed.http.scheduler.json', \
'distributed.http.health', 'distributed.http.proxy', 'distributed.http.statics', \
'distributed.http.scheduler.api']";

/// The scheduler's intent.
pub fn scheduler_intent(
    spec: &ClusterSpec,
    layout: &BootLayout,
    tls: Option<&TlsBundle>,
) -> BootIntent {
    let root = &layout.files_root;
    let mut argv = layout.dask.clone();
    argv.extend([
        "scheduler".to_string(),
        "--host".into(),
        layout.bind_host.clone(),
        "--port".into(),
        layout.scheduler_port.to_string(),
        "--dashboard-address".into(),
        format!("{}:{}", layout.bind_host, layout.dashboard_port),
        "--preload".into(),
        format!("{root}/{TTL_PRELOAD_FILE}"),
    ]);
    if !spec.idle_timeout.is_zero() {
        argv.extend([
            "--idle-timeout".into(),
            format!("{}s", spec.idle_timeout.as_secs()),
        ]);
    }
    let mut files = vec![BootFile {
        path: format!("{root}/{TTL_PRELOAD_FILE}"),
        contents: SCHEDULER_TTL_PY.to_string(),
        mode: "0644".into(),
    }];
    if let Some(tls) = tls.filter(|_| spec.tls) {
        let (f, args) = tls_files(Role::Scheduler, layout, tls);
        files.extend(f);
        argv.extend(["--protocol".into(), "tls".into()]);
        argv.extend(args);
    }
    let mut env = common_env(spec);
    env.insert(
        "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES".into(),
        SCHEDULER_ROUTES.into(),
    );
    BootIntent {
        role: Role::Scheduler,
        name: Some("scheduler".into()),
        argv,
        env,
        files,
        poweroff_delay: std::time::Duration::ZERO,
    }
}

/// A worker's intent. `name` is the Dask worker name, or `None` to let Dask name the worker by
/// its address (batched VM launches share one intent).
pub fn worker_intent(
    spec: &ClusterSpec,
    layout: &BootLayout,
    tls: Option<&TlsBundle>,
    scheduler_address: &str,
    name: Option<&str>,
) -> BootIntent {
    let mut argv = layout.dask.clone();
    argv.extend([
        "worker".to_string(),
        scheduler_address.to_string(),
        "--host".into(),
        layout.bind_host.clone(),
        // No per-worker dashboard: it costs every worker a Bokeh import at boot (about a second
        // of CPU), and the scheduler's dashboard shows the workers. The worker's HTTP server
        // (health, metrics) still starts, so bind it like the rest, not on every interface.
        "--no-dashboard".into(),
        "--dashboard-address".into(),
        format!("{}:0", layout.bind_host),
        "--death-timeout".into(),
        format!("{}s", spec.death_timeout.as_secs()),
    ]);
    if !layout.nanny {
        argv.push("--no-nanny".into());
    }
    if let Some(n) = name {
        argv.extend(["--name".into(), n.to_string()]);
    }
    if let Some(cpus) = spec.worker_size.cpus {
        argv.extend(["--nthreads".into(), cpus.to_string()]);
    }
    if let Some(mib) = spec.worker_size.memory_mib {
        argv.extend(["--memory-limit".into(), format!("{mib}MiB")]);
    }
    let mut files = Vec::new();
    if let Some(tls) = tls.filter(|_| spec.tls) {
        let (f, args) = tls_files(Role::Worker, layout, tls);
        files.extend(f);
        argv.extend(args);
    }
    BootIntent {
        role: Role::Worker,
        name: name.map(str::to_string),
        argv,
        env: common_env(spec),
        files,
        poweroff_delay: std::time::Duration::ZERO,
    }
}

/// How a VM runs the intent.
#[derive(Debug, Clone, Serialize)]
pub struct VmOptions {
    /// The container image.
    pub image: String,
    /// Install Docker at boot when the image lacks it.
    pub install_docker: bool,
    /// Pass the GPUs into the container (needs the NVIDIA container runtime on the image).
    pub gpu: bool,
    /// How the node's private keys reach it.
    pub keys: KeyDelivery,
}

/// How a VM's private keys (its TLS key) reach it.
///
/// The rule: no private key in anything the platform's API returns to a read-only caller. EC2
/// returns user-data to anyone allowed `ec2:DescribeInstanceAttribute` (AWS's `ReadOnlyAccess`)
/// and GCE returns metadata to Compute Viewers, so there the keys go to the platform's secret
/// store and the node fetches them at boot with its own identity. DigitalOcean never returns
/// `user_data` and Azure never returns `customData`, so there they may travel inside it.
#[derive(Debug, Clone, Default, Serialize)]
pub enum KeyDelivery {
    /// Inside the user-data, for platforms whose API never returns it.
    #[default]
    InUserData,
    /// Left out of the user-data; the node fetches them from a secret store at boot.
    SecretStore(SecretStore),
}

/// Where a node fetches its private keys from ([`KeyDelivery::SecretStore`]). The node runs
/// `templates/fetch_secrets.py` (in the Dask image, before Dask starts) with this as its
/// configuration; it holds names, never a secret.
#[derive(Debug, Clone, Serialize)]
pub struct SecretStore {
    /// The store: `aws-ssm` (SSM Parameter Store SecureStrings, read with the instance role
    /// through IMDSv2).
    pub kind: String,
    /// The store's region.
    pub region: String,
    /// The store's API endpoint (e.g. `https://ssm.us-east-1.amazonaws.com`).
    pub endpoint: String,
    /// Each secret's name in the store is this prefix followed by the file's name.
    pub prefix: String,
    /// How long the node keeps trying (its identity may take a while to be usable) before it
    /// gives up, and Dask, without its key, fails and powers the node off.
    pub deadline_secs: u64,
}

/// The files of `intent` that hold a private key, with their file names, for a provider that
/// stores them ([`KeyDelivery::SecretStore`], container secrets).
pub fn secret_files(intent: &BootIntent) -> Vec<&BootFile> {
    intent.files.iter().filter(|f| f.is_secret()).collect()
}

fn shell_quote(value: String) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return value;
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("shell_quote", shell_quote);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env
}

fn render_err(e: minijinja::Error) -> Error {
    Error::Runtime {
        message: format!("rendering the bootstrap template failed: {e:#}"),
        hint: None,
    }
}

/// The `docker --env-file` form of the environment. Values are validated upstream to hold no
/// newline; this refuses them again rather than produce a file that means something else.
fn env_file(env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    for (k, v) in env {
        if v.contains(['\n', '\r']) || k.contains(['\n', '\r', '=']) {
            return Err(Error::invalid(
                "environment variable",
                k.clone(),
                "contains a newline or '='",
                None,
            ));
        }
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

/// Minutes from `now` until the cluster's expiry, rounded up and at least 1: the VM's OS-level
/// TTL (`shutdown -P +<minutes>`), so that a node booted late (a worker added by `scale`) powers
/// off with the cluster, not a full TTL after its own boot.
pub fn minutes_left(spec: &ClusterSpec, now: u64) -> u64 {
    spec.expires_at().saturating_sub(now).div_ceil(60).max(1)
}

/// Render a VM's cloud-init user-data: write the intent's files, an env file and a run script,
/// then start the run script, which arms the TTL power-off and runs Dask in the image with host
/// networking.
pub fn render_cloud_init(
    spec: &ClusterSpec,
    intent: &BootIntent,
    layout: &BootLayout,
    vm: &VmOptions,
) -> Result<String> {
    let env = template_env();
    let root = &layout.files_root;
    let ttl_minutes = minutes_left(spec, crate::model::now_epoch())
        + intent.poweroff_delay.as_secs().div_ceil(60);
    let mut files: Vec<BootFile> = Vec::new();
    let store = match &vm.keys {
        KeyDelivery::InUserData => {
            files.extend(intent.files.iter().cloned());
            None
        }
        KeyDelivery::SecretStore(store) => {
            let mut names = BTreeMap::new();
            for f in &intent.files {
                if !f.is_secret() {
                    files.push(f.clone());
                    continue;
                }
                let relative = f
                    .path
                    .strip_prefix(root.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .filter(|r| !r.is_empty() && !r.split('/').any(|p| p == ".." || p.is_empty()))
                    .ok_or_else(|| Error::Runtime {
                        message: format!("secret file `{}` is not under `{root}`", f.path),
                        hint: None,
                    })?;
                names.insert(
                    relative.to_string(),
                    serde_json::json!({
                        "name": format!("{}{}", store.prefix, f.file_name()),
                        "mode": f.mode,
                    }),
                );
            }
            if names.is_empty() {
                None
            } else {
                let config = serde_json::json!({
                    "store": store.kind,
                    "region": store.region,
                    "endpoint": store.endpoint,
                    "deadline_seconds": store.deadline_secs,
                    "files": names,
                });
                files.push(BootFile {
                    path: format!("{root}/{FETCH_SECRETS_FILE}"),
                    contents: FETCH_SECRETS_PY.to_string(),
                    mode: "0644".into(),
                });
                files.push(BootFile {
                    path: format!("{root}/{SECRETS_CONFIG_FILE}"),
                    contents: serde_json::to_string_pretty(&config).map_err(|e| {
                        Error::Runtime {
                            message: format!("rendering the secrets configuration failed: {e}"),
                            hint: None,
                        }
                    })? + "\n",
                    mode: "0644".into(),
                });
                Some(store)
            }
        }
    };
    let script = env
        .render_str(
            NODE_RUN_SH,
            minijinja::context! {
                role => intent.role.as_str(),
                cluster => spec.name.as_str(),
                ttl_minutes => ttl_minutes,
                install_docker => vm.install_docker,
                gpu => vm.gpu,
                fetch => store.is_some(),
                fetch_script => format!("{root}/{FETCH_SECRETS_FILE}"),
                fetch_config => format!("{root}/{SECRETS_CONFIG_FILE}"),
                root => root,
                image => vm.image.as_str(),
                argv => minijinja::value::Serde(&intent.argv),
            },
        )
        .map_err(render_err)?;
    files.push(BootFile {
        path: format!("{root}/dask.env"),
        contents: env_file(&intent.env)?,
        mode: "0600".into(),
    });
    files.push(BootFile {
        path: format!("{root}/run.sh"),
        contents: script,
        mode: "0700".into(),
    });
    #[derive(Serialize)]
    struct F {
        path: String,
        mode: String,
        b64: String,
    }
    let files: Vec<F> = files
        .into_iter()
        .map(|f| F {
            b64: base64::engine::general_purpose::STANDARD.encode(f.contents.as_bytes()),
            path: f.path,
            mode: f.mode,
        })
        .collect();
    env.render_str(
        CLOUD_INIT,
        minijinja::context! {
            role => intent.role.as_str(),
            cluster => spec.name.as_str(),
            files => minijinja::value::Serde(&files),
            root => root,
        },
    )
    .map_err(render_err)
}

/// Replace the content of private key files in rendered user-data, for `--dry-run`.
pub fn redact_keys(user_data: &str) -> String {
    let mut out = String::with_capacity(user_data.len());
    let mut hide = false;
    for line in user_data.lines() {
        let t = line.trim_start();
        if t.starts_with("- path:") {
            hide = t.contains("-key.pem");
        }
        if hide && t.starts_with("content:") {
            let indent = &line[..line.len() - t.len()];
            out.push_str(indent);
            out.push_str("content: \"<private key, generated per cluster, not shown>\"\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The rendered run script and runcmd under a real POSIX shell (dash), with stub commands.
#[cfg(test)]
#[path = "bootstrap_sh_tests.rs"]
mod sh_tests;

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
pub(crate) mod tests;
