//! What a user can choose for Kubernetes (context, namespace, Service type, operator mode, sizes)
//! and the checks of those choices before anything is created.

use clusterctl_core::{Error, Result, model::validate_cidr};
use serde::{Deserialize, Serialize};

/// Kubernetes settings beyond the common cluster spec. Serialized into the local record so that
/// `scale`, `logs` and `down` talk to the same context and namespace as `up` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesOptions {
    /// The kubeconfig context (else the current context, else the in-cluster configuration).
    pub context: Option<String>,
    /// The namespace (else the context's, else `default`).
    pub namespace: Option<String>,
    /// Create the namespace when it does not exist (and delete it on `down`).
    pub create_namespace: bool,
    /// How the scheduler is exposed.
    pub service_type: ServiceType,
    /// Source ranges allowed through a `LoadBalancer` Service.
    pub allow_cidrs: Vec<String>,
    /// Create a `DaskCluster` of the Dask Kubernetes operator instead of plain objects.
    pub operator: bool,
    /// `list`: look in every namespace.
    pub all_namespaces: bool,
    /// The client runs inside the cluster's network (`--private`): dial the Service directly
    /// instead of through a port-forward.
    pub private: bool,
}

/// The type of the scheduler's Service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    /// Reachable inside the cluster; clusterctl reaches it through a port-forward.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// A cloud load balancer, limited to `--allow-cidr`.
    LoadBalancer,
}

impl ServiceType {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }

    /// Parse the CLI's or config file's spelling (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "clusterip" => Ok(ServiceType::ClusterIP),
            "nodeport" => Ok(ServiceType::NodePort),
            "loadbalancer" => Ok(ServiceType::LoadBalancer),
            _ => Err(Error::invalid(
                "--service-type",
                s,
                "not a Service type clusterctl can expose the scheduler with",
                Some("use ClusterIP (the default), NodePort or LoadBalancer".into()),
            )),
        }
    }
}

/// Default scheduler resources: 1 CPU, 2 GiB.
pub const DEFAULT_SCHEDULER: (u32, u64) = (1, 2048);
/// Default worker resources: 1 CPU, 4 GiB.
pub const DEFAULT_WORKER: (u32, u64) = (1, 4096);

/// Whether `s` is a DNS-1123 label (namespace names): 1–63 lowercase letters, digits or '-',
/// starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `v` is a valid label value: empty, or up to 63 alphanumerics, '-', '_' or '.',
/// starting and ending with an alphanumeric.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Whether `k` is a valid label key: an optional DNS subdomain prefix and `/`, then a name
/// like a label value (non-empty).
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

impl KubernetesOptions {
    /// Check the options on their own (before any API call).
    pub fn validate(&self, private: bool) -> Result<()> {
        if let Some(ns) = &self.namespace
            && !is_dns_label(ns)
        {
            return Err(Error::invalid(
                "--namespace",
                ns,
                "not a valid namespace name",
                Some("use 1 to 63 lowercase letters, digits or '-', e.g. `dask-ci`".into()),
            ));
        }
        for c in &self.allow_cidrs {
            validate_cidr(c)?;
        }
        match self.service_type {
            // Never a load balancer without source ranges: with `--private` the internal
            // annotations ask EKS, GKE and AKS for an internal one, but a platform that ignores
            // them (MetalLB, other clouds) would make it public.
            ServiceType::LoadBalancer if self.allow_cidrs.is_empty() => {
                return Err(Error::invalid(
                    "--allow-cidr",
                    "",
                    "a LoadBalancer Service without source ranges is open to every address that reaches it",
                    Some(if private {
                        "pass the network your clients are in, e.g. `--allow-cidr 10.0.0.0/8`; `--private` also asks EKS, GKE and AKS for an internal load balancer".into()
                    } else {
                        "pass the client's address, e.g. `--allow-cidr 203.0.113.7/32` (`0.0.0.0/0` only if you mean it)".into()
                    }),
                ));
            }
            ServiceType::ClusterIP | ServiceType::NodePort if !self.allow_cidrs.is_empty() => {
                return Err(Error::invalid(
                    "--allow-cidr",
                    self.allow_cidrs.join(","),
                    "source ranges only apply to a LoadBalancer Service",
                    Some("add `--service-type LoadBalancer`, or drop `--allow-cidr`".into()),
                ));
            }
            _ => {}
        }
        if self.operator && self.service_type != ServiceType::ClusterIP {
            return Err(Error::invalid(
                "--service-type",
                self.service_type.as_str(),
                "with `--k8s-operator` the operator makes the scheduler's Service",
                Some("drop `--service-type`, or drop `--k8s-operator`".into()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(is_dns_label("dask-ci-1"));
        assert!(!is_dns_label("Dask"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(is_label_key("team"));
        assert!(!is_label_key("a/b/c"));
        assert!(!is_label_key("/x"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3"));
        assert!(!is_label_value("a@b"));
        assert!(!is_label_value("-a"));
    }

    #[test]
    fn load_balancers_need_source_ranges() {
        let mut o = KubernetesOptions {
            service_type: ServiceType::LoadBalancer,
            ..Default::default()
        };
        let e = o.validate(false).unwrap_err().to_string();
        assert!(e.contains("--allow-cidr"), "{e}");
        // An internal load balancer is asked for, not guaranteed: ranges are required too.
        assert!(o.validate(true).is_err());
        o.allow_cidrs = vec!["203.0.113.7/32".into()];
        assert!(o.validate(false).is_ok());
        o.service_type = ServiceType::ClusterIP;
        assert!(o.validate(false).is_err());
        assert_eq!(
            ServiceType::parse("loadbalancer").unwrap(),
            ServiceType::LoadBalancer
        );
        assert!(ServiceType::parse("Ingress").is_err());
        let bad = KubernetesOptions {
            namespace: Some("Bad_NS".into()),
            ..Default::default()
        };
        assert!(
            bad.validate(false)
                .unwrap_err()
                .to_string()
                .contains("Bad_NS")
        );
    }
}
