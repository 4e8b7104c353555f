//! The scheduler's end-of-life step: what a provider has the scheduler do when the cluster ends
//! by itself (its TTL, or `--idle-timeout`), before the scheduler closes. Most platforms need
//! none: the VMs power off and terminate-on-shutdown (or the platform's deadline) ends billing.
//! Where a powered-off machine is still billed (Azure), the provider adds a hook: a small
//! standard-library Python script and its JSON configuration, written beside the TTL preload.
//!
//! The preload (`templates/scheduler_ttl.py`) runs `python SCRIPT CONFIG` when the TTL is reached
//! (then closes the scheduler) and when the scheduler closes after being idle past its timeout,
//! at most once, bounded by the hook's deadline; the script inherits the scheduler's output (the
//! serial console) and gets the scheduler's own address in `CLUSTERCTL_NODE_ADDRESS` (so that it
//! can talk to a metadata service that identifies the machine by the connection's source). The
//! core knows nothing of what the script does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bootstrap::{BootFile, BootIntent, BootLayout};

/// The environment variable naming the hook's script on the node.
pub const SCRIPT_ENV: &str = "CLUSTERCTL_ON_EXPIRY";
/// The environment variable naming the hook's JSON configuration on the node.
pub const CONFIG_ENV: &str = "CLUSTERCTL_ON_EXPIRY_CONFIG";
/// The environment variable holding the hook's deadline in seconds.
pub const DEADLINE_ENV: &str = "CLUSTERCTL_ON_EXPIRY_DEADLINE";
/// The script's file name in the node's files root.
pub const SCRIPT_FILE: &str = "on_expiry.py";
/// The configuration's file name in the node's files root.
pub const CONFIG_FILE: &str = "on_expiry.json";

/// A provider's end-of-life step for the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryHook {
    /// What it does, in words (`--dry-run`).
    pub describe: String,
    /// The script (Python, standard library only: it runs in the Dask image).
    pub script: String,
    /// Its configuration (no secret: the script gets credentials from the machine's identity).
    pub config: serde_json::Value,
    /// How long it may take, retries included. The scheduler machine's own power-off is armed
    /// this much (rounded up to minutes) after the TTL, so that it cannot cut the step short.
    pub deadline: Duration,
}

/// `intent` (a scheduler's) with `hook`: its script and configuration as files, and the
/// environment that tells the TTL preload to run it.
pub fn with_hook(mut intent: BootIntent, layout: &BootLayout, hook: &ExpiryHook) -> BootIntent {
    let root = &layout.files_root;
    let script = format!("{root}/{SCRIPT_FILE}");
    let config = format!("{root}/{CONFIG_FILE}");
    intent.files.push(BootFile {
        path: script.clone(),
        contents: hook.script.clone(),
        mode: "0644".into(),
    });
    intent.files.push(BootFile {
        path: config.clone(),
        contents: format!("{}\n", hook.config),
        mode: "0644".into(),
    });
    intent.env.insert(SCRIPT_ENV.into(), script);
    intent.env.insert(CONFIG_ENV.into(), config);
    intent
        .env
        .insert(DEADLINE_ENV.into(), hook.deadline.as_secs().to_string());
    intent.poweroff_delay = hook.deadline;
    intent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{KeyDelivery, VmOptions, render_cloud_init, scheduler_intent};

    #[test]
    fn the_hook_is_written_named_in_the_env_and_delays_the_power_off() {
        let mut s = crate::bootstrap::tests::spec();
        let layout = BootLayout::vm();
        s.created_at = crate::model::now_epoch();
        let hook = ExpiryHook {
            describe: "deletes things".into(),
            script: "print('bye')\n".into(),
            config: serde_json::json!({"url": "https://x/y"}),
            deadline: Duration::from_secs(600),
        };
        let plain = scheduler_intent(&s, &layout, None);
        let i = with_hook(plain.clone(), &layout, &hook);
        assert_eq!(i.env[SCRIPT_ENV], "/etc/clusterctl/on_expiry.py");
        assert_eq!(i.env[CONFIG_ENV], "/etc/clusterctl/on_expiry.json");
        assert_eq!(i.env[DEADLINE_ENV], "600");
        let config = i.files.iter().find(|f| f.path.ends_with(CONFIG_FILE));
        assert_eq!(config.unwrap().contents, "{\"url\":\"https://x/y\"}\n");
        let vm = VmOptions {
            image: s.image.clone(),
            install_docker: false,
            gpu: false,
            keys: KeyDelivery::InUserData,
        };
        let run_script = |intent: &BootIntent| {
            let text = render_cloud_init(&s, intent, &layout, &vm).unwrap();
            assert!(!text.contains("print('bye')"), "files are base64-encoded");
            let at = text.find("/etc/clusterctl/run.sh").unwrap();
            let b64 = text[at..].split("content: \"").nth(1).unwrap();
            let b64 = &b64[..b64.find('"').unwrap()];
            use base64::Engine as _;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap()
        };
        // A 1 h TTL: 60 minutes, plus the hook's 10.
        assert!(run_script(&plain).contains("shutdown -P +60 "));
        assert!(run_script(&i).contains("shutdown -P +70 "));
    }
}
