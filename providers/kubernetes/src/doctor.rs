//! `clusterctl doctor` on Kubernetes: the plan's checks, then server-side dry runs
//! (`dryRun=All`) of the objects `up` creates — the root ConfigMap, the scheduler's Service and
//! Pod — which go through authentication, RBAC and admission exactly as the real creates would,
//! and persist nothing.

use clusterctl_core::{
    doctor::{Check, plan_check},
    model::Role,
    provider::LaunchContext,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::PostParams;

use crate::{
    KubernetesProvider, errors,
    objects::{self, names},
};

impl KubernetesProvider {
    /// The checks of `doctor` (see the module's documentation).
    pub(crate) async fn doctor_checks(&self, ctx: &LaunchContext<'_>) -> Vec<Check> {
        let (plan, planned) = plan_check(self, ctx).await;
        let mut checks = vec![plan];
        if planned.is_none() {
            return checks;
        }
        let spec = ctx.spec;
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let ns = &self.namespace;
        let verdict = |what: &str, r: Result<(), kube::Error>| match r {
            Ok(()) => Check::pass(
                format!("permission to create {what}"),
                format!("a server-side dry run in namespace {ns} was accepted"),
            ),
            Err(e) => Check::from_error(
                format!("permission to create {what}"),
                &errors::map(&format!("create {what} (dry run)"), e),
            ),
        };
        let root = objects::root(ns, spec, &self.options);
        let r = self.api::<ConfigMap>().create(&dry, &root).await.map(drop);
        checks.push(verdict("configmaps", r));
        // Owned by a root that does not exist: a dry run never reaches the garbage collector.
        let owner = objects::owner_ref(
            &names::root(&spec.name),
            "00000000-0000-0000-0000-000000000000",
        );
        let svc = objects::scheduler_service(ns, spec, &owner, &self.options);
        let r = self.api::<Service>().create(&dry, &svc).await.map(drop);
        checks.push(verdict("services", r));
        let address = format!(
            "{}://{}:{}",
            clusterctl_core::bootstrap::scheme(spec),
            names::scheduler(&spec.name),
            clusterctl_core::bootstrap::SCHEDULER_PORT
        );
        match self.render_pod(ctx, Role::Scheduler, "scheduler", &address, &owner) {
            Ok(pod) => {
                let r = self.api::<Pod>().create(&dry, &pod).await.map(drop);
                checks.push(verdict("pods", r));
            }
            Err(e) => checks.push(Check::from_error("permission to create pods", &e)),
        }
        checks
    }
}
