//! The Kubernetes provider's options: flags beat the file's `kubernetes:` section. The keys are
//! those of `clusterctl_kubernetes::KubernetesOptions`.

use clusterctl_core::{Error, Result};

use crate::{cli::UpArgs, config::LoadedConfig};

/// The Kubernetes options; `--allow-cidr` and `--private` are shared with the clouds.
pub(super) fn kubernetes_options(
    args: &UpArgs,
    file: Option<&crate::config::KubernetesSection>,
    private: bool,
) -> Result<serde_json::Value> {
    let f = file.cloned().unwrap_or_default();
    let k = &args.kube;
    let service_type = match k.service_type.clone().or(f.service_type) {
        Some(t) => kube_service_type(&t)?,
        None => "ClusterIP",
    };
    let cidrs = super::list(&args.net.allow_cidrs, f.allow_cidrs);
    Ok(serde_json::json!({
        "context": k.scope.context.clone().or(f.context),
        "namespace": k.scope.namespace.clone().or(f.namespace),
        "create_namespace": k.create_namespace || f.create_namespace.unwrap_or(false),
        "service_type": service_type,
        "allow_cidrs": cidrs,
        "operator": k.k8s_operator || f.k8s_operator.unwrap_or(false),
        "private": private,
    }))
}

/// The Service type as `clusterctl_kubernetes::ServiceType` spells it.
fn kube_service_type(t: &str) -> Result<&'static str> {
    match t.to_ascii_lowercase().as_str() {
        "clusterip" => Ok("ClusterIP"),
        "nodeport" => Ok("NodePort"),
        "loadbalancer" => Ok("LoadBalancer"),
        _ => Err(Error::invalid(
            "--service-type",
            t,
            "not a Service type clusterctl can expose the scheduler with",
            Some("use ClusterIP (the default), NodePort or LoadBalancer".into()),
        )),
    }
}

/// The Kubernetes part of [`super::scope_options`]: the context and namespace from flags or the
/// file.
pub(super) fn scope_options(
    scope: &crate::cli::KubeScope,
    all_namespaces: bool,
    file: Option<&LoadedConfig>,
) -> serde_json::Value {
    let f = file
        .and_then(|f| f.config.kubernetes.clone())
        .unwrap_or_default();
    serde_json::json!({
        "context": scope.context.clone().or(f.context),
        "namespace": scope.namespace.clone().or(f.namespace),
        "all_namespaces": all_namespaces,
    })
}
