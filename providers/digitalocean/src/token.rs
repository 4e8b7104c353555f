//! Where the API token comes from: `DIGITALOCEAN_TOKEN`, else `DIGITALOCEAN_ACCESS_TOKEN` (the
//! names doctl and Terraform read), else doctl's config file (`$XDG_CONFIG_HOME/doctl/config.yaml`
//! or `~/.config/doctl/config.yaml`: the current `context`'s entry of `auth-contexts`, or the
//! top-level `access-token` for the default context). Never a flag, never written anywhere, never
//! in Debug output: it lives in a [`Secret`] only.

use std::{collections::BTreeMap, path::PathBuf};

use clusterctl_core::{Error, Result, rest::Secret};
use serde::Deserialize;

use crate::errors::TOKEN_HINT;

/// The environment variables read, in order.
pub const TOKEN_ENV: [&str; 2] = ["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN"];

/// The parts of doctl's config file that hold tokens.
#[derive(Deserialize, Default)]
struct DoctlConfig {
    #[serde(rename = "access-token", default)]
    access_token: Option<String>,
    #[serde(default)]
    context: Option<String>,
    #[serde(rename = "auth-contexts", default)]
    auth_contexts: BTreeMap<String, Option<String>>,
}

/// doctl's config file.
pub fn doctl_config_path(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match xdg_config_home.filter(|x| !x.is_empty()) {
        Some(x) => Some(PathBuf::from(x).join("doctl/config.yaml")),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".config/doctl/config.yaml")),
    }
}

/// The token of doctl's current context in the text of its config file (`None`: none there).
/// Errors name the file, never its contents.
pub fn from_doctl_config(text: &str, path: &str) -> Result<Option<Secret>> {
    let config: DoctlConfig = serde_saphyr::from_str(text).map_err(|e| {
        // serde-saphyr's message may quote the document: say only where it failed.
        let place = e
            .to_string()
            .lines()
            .find(|l| l.contains("line"))
            .map(|l| l.chars().take(80).collect::<String>())
            .unwrap_or_default();
        Error::invalid(
            "doctl config file",
            path.to_string(),
            format!("it is not valid YAML {place}"),
            Some(TOKEN_HINT.into()),
        )
    })?;
    let context = config
        .context
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "default".into());
    let token = if context == "default" {
        config
            .access_token
            .filter(|t| !t.trim().is_empty())
            .or_else(|| config.auth_contexts.get("default").cloned().flatten())
    } else {
        config.auth_contexts.get(&context).cloned().flatten()
    };
    Ok(token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(Secret::new))
}

/// Find the token in `env` (a variable reader) or doctl's config file.
pub fn find(env: impl Fn(&str) -> Option<String>) -> Result<Secret> {
    for name in TOKEN_ENV {
        if let Some(t) = env(name)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            return Ok(Secret::new(t));
        }
    }
    let path = doctl_config_path(env("XDG_CONFIG_HOME").as_deref(), env("HOME").as_deref());
    if let Some(path) = &path
        && let Ok(text) = std::fs::read_to_string(path)
        && let Some(token) = from_doctl_config(&text, &path.display().to_string())?
    {
        return Ok(token);
    }
    Err(Error::invalid(
        "DigitalOcean API token",
        "",
        format!(
            "none found in {}, {} or doctl's config file{}",
            TOKEN_ENV[0],
            TOKEN_ENV[1],
            path.map(|p| format!(" ({})", p.display()))
                .unwrap_or_default()
        ),
        Some(TOKEN_HINT.into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_first_in_order() {
        let t = find(env(&[
            ("DIGITALOCEAN_ACCESS_TOKEN", "second"),
            ("DIGITALOCEAN_TOKEN", "first"),
        ]))
        .unwrap();
        assert_eq!(t.expose(), "first");
        let t = find(env(&[("DIGITALOCEAN_ACCESS_TOKEN", "second")])).unwrap();
        assert_eq!(t.expose(), "second");
    }

    #[test]
    fn doctl_contexts() {
        let text = "access-token: dop_v1_default\ncontext: work\nauth-contexts:\n  work: dop_v1_work\n  other: dop_v1_other\noutput: text\n";
        let t = from_doctl_config(text, "c").unwrap().unwrap();
        assert_eq!(t.expose(), "dop_v1_work");
        let text = "access-token: dop_v1_default\nauth-contexts:\n  work: dop_v1_work\n";
        let t = from_doctl_config(text, "c").unwrap().unwrap();
        assert_eq!(t.expose(), "dop_v1_default");
        let text = "context: default\nauth-contexts:\n  default: dop_v1_d\n";
        assert_eq!(
            from_doctl_config(text, "c").unwrap().unwrap().expose(),
            "dop_v1_d"
        );
        let text = "context: missing\naccess-token: x\n";
        assert!(from_doctl_config(text, "c").unwrap().is_none());
        assert!(from_doctl_config("{}", "c").unwrap().is_none());
        let err = match from_doctl_config("access-token: [unclosed, dop_v1_secret", "c") {
            Err(e) => e,
            Ok(_) => panic!("accepted broken YAML"),
        };
        assert!(!err.to_string().contains("dop_v1_secret"), "{err}");
    }

    #[test]
    fn doctl_file_is_found_under_xdg_or_home() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("doctl");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("config.yaml"), "access-token: dop_v1_file\n").unwrap();
        let xdg = dir.path().to_str().unwrap();
        let t = find(env(&[("XDG_CONFIG_HOME", xdg)])).unwrap();
        assert_eq!(t.expose(), "dop_v1_file");
        assert_eq!(
            doctl_config_path(None, Some("/home/u")).unwrap(),
            PathBuf::from("/home/u/.config/doctl/config.yaml")
        );
    }

    #[test]
    fn missing_token_is_a_usage_error_saying_how_to_set_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = find(env(&[("HOME", dir.path().to_str().unwrap())])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.hints()[0].contains("export DIGITALOCEAN_TOKEN"),
            "{:?}",
            err.hints()
        );
    }
}
