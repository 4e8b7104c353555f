//! One VM's creation with its fallbacks: each (size, Spot) attempt in order until one gets
//! capacity. A synchronous `SkuNotAvailable` created nothing; an allocation failure reported by
//! the operation (`AllocationFailed`, `ZonalAllocationFailed`,
//! `OverconstrainedAllocationRequest`) leaves a `Failed` VM that is deleted before the next
//! attempt; quota and other errors end it. Owned, so that the scheduler's creation runs in the
//! background while the workers are created.

use clusterctl_core::{Error, Result, model::ProviderKind};
use serde_json::{Value, json};

use crate::{
    api::{Arm, COMPUTE_API},
    errors::{self, ArmError},
};

/// One VM's creation with its fallbacks, owned so that the scheduler's can run in the
/// background while the workers are created.
pub(crate) struct VmJob {
    pub arm: Arm,
    pub path: String,
    pub body: Value,
    /// (size, Spot) in order.
    pub attempts: Vec<(String, bool)>,
    pub location: String,
    pub identity: Option<String>,
}

impl VmJob {
    /// PUT the VM with each attempt's size and priority until one gets capacity. A synchronous
    /// `SkuNotAvailable` created nothing; an allocation failure reported by the operation
    /// leaves a `Failed` VM, deleted before the next attempt. Quota and other errors end it.
    /// The VM's system-assigned identity (`identity.principalId` of the PUT's answer), if any.
    pub async fn run(self) -> Result<Option<String>> {
        let ctx = errors::Context {
            location: Some(&self.location),
            identity: self.identity.as_deref(),
        };
        let mut tried = Vec::new();
        let mut last = None;
        for (size, spot) in &self.attempts {
            let mut body = self.body.clone();
            body["properties"]["hardwareProfile"]["vmSize"] = json!(size);
            if *spot {
                body["properties"]["priority"] = json!("Spot");
                body["properties"]["evictionPolicy"] = json!("Delete");
                body["properties"]["billingProfile"] = json!({"maxPrice": -1});
            }
            tried.push(format!("{size}{}", if *spot { " (Spot)" } else { "" }));
            let op = format!("PUT {}", self.path);
            let result = match self
                .arm
                .put::<_, Value>(&self.path, COMPUTE_API, &body, false)
                .await
            {
                Ok(put) => self
                    .arm
                    .wait(&op, &put.raw)
                    .await
                    .map(|()| crate::ttl::principal_of(&put.value)),
                Err(e) => Err(e),
            };
            match result {
                Ok(principal) => return Ok(principal),
                Err(e) if e.is_capacity() => {
                    if matches!(e, ArmError::Operation { .. }) {
                        // The failed VM stays until deleted (and holds its NIC).
                        self.arm
                            .delete(&self.path, COMPUTE_API, &[])
                            .await
                            .map_err(|e| errors::map(e, ctx))?;
                    }
                    last = Some(e);
                }
                Err(e) => return Err(errors::map(e, ctx)),
            }
        }
        let message = last.map_or_else(String::new, |e| e.to_string());
        Err(Error::CapacityUnavailable {
            provider: ProviderKind::Azure,
            location: self.location.clone(),
            message: format!("{message} (tried {})", tried.join(", ")),
        })
    }
}
