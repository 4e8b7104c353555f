//! ARM as clusterctl uses it: typed models of only the fields read, and the calls (GET, PUT and
//! DELETE with their long-running operations, POST actions, listings that follow `nextLink`),
//! each through core's REST client with a fresh token from the credential. Request bodies are
//! built where the resource is (network.rs, lib.rs) with only properties the specs define.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use clusterctl_core::{
    rest::{RestClient, RestResponse},
    wait::Deadline,
};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{credential::Credential, errors::ArmError, lro};

/// api-version of resource groups, resource listings and subscriptions' usages.
pub const RESOURCES_API: &str = "2024-07-01";
/// api-version of Microsoft.Network.
pub const NETWORK_API: &str = "2024-03-01";
/// api-version of Microsoft.Compute virtual machines and usages.
pub const COMPUTE_API: &str = "2024-07-01";
/// api-version of resource SKUs.
pub const SKUS_API: &str = "2021-07-01";
/// api-version of subscriptions and locations.
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";
/// Most pages read from one listing: a guard against a `nextLink` that never ends.
const MAX_PAGES: usize = 500;

/// A resource group.
#[derive(Debug, Clone, Deserialize)]
pub struct ResourceGroup {
    /// Its name.
    pub name: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `Succeeded`, `Deleting`…
    #[serde(default)]
    pub properties: Option<ProvisioningProps>,
}

/// `properties.provisioningState`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningProps {
    /// The state.
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// A resource in a listing (tag-filtered listings omit tags).
#[derive(Debug, Clone, Deserialize)]
pub struct GenericResource {
    /// Its ARM id.
    pub id: String,
    /// Its type, e.g. `Microsoft.Network/networkSecurityGroups`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its tags (empty in a tag-filtered listing, which omits them).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A virtual machine.
#[derive(Debug, Clone, Deserialize)]
pub struct Vm {
    /// Its ARM id.
    pub id: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Its properties.
    #[serde(default)]
    pub properties: VmProps,
}

/// The VM properties read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmProps {
    /// `Creating`, `Succeeded`, `Failed`, `Deleting`…
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub time_created: Option<String>,
    /// Its NICs.
    #[serde(default)]
    pub network_profile: Option<NetworkProfile>,
    /// Present with `$expand=instanceView`.
    #[serde(default)]
    pub instance_view: Option<InstanceView>,
}

/// A VM's NICs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// The NIC references.
    #[serde(default)]
    pub network_interfaces: Vec<IdRef>,
}

/// A VM's instance view: its statuses (`PowerState/running`…).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceView {
    /// The statuses.
    #[serde(default)]
    pub statuses: Vec<Status>,
}

/// One status of an instance view.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    /// E.g. `PowerState/stopped`.
    #[serde(default)]
    pub code: String,
}

/// `{"id": …}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdRef {
    /// The referenced resource's ARM id.
    pub id: String,
}

/// A network interface.
#[derive(Debug, Clone, Deserialize)]
pub struct Nic {
    /// Its ARM id.
    pub id: String,
    /// Its properties.
    #[serde(default)]
    pub properties: NicProps,
}

/// The NIC properties read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicProps {
    /// Its IP configurations.
    #[serde(default)]
    pub ip_configurations: Vec<IpConfiguration>,
}

/// One IP configuration of a NIC.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpConfiguration {
    /// Its properties.
    #[serde(default)]
    pub properties: IpConfigurationProps,
}

/// The addresses of an IP configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpConfigurationProps {
    /// The private address (known as soon as the NIC exists).
    #[serde(default, rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
    /// The public IP resource, if any.
    #[serde(default, rename = "publicIPAddress")]
    pub public_ip_address: Option<IdRef>,
}

impl Nic {
    /// The primary private address.
    pub fn private_ip(&self) -> Option<String> {
        self.properties
            .ip_configurations
            .iter()
            .find_map(|c| c.properties.private_ip_address.clone())
    }

    /// The public IP resource's id.
    pub fn public_ip_id(&self) -> Option<String> {
        self.properties.ip_configurations.iter().find_map(|c| {
            c.properties
                .public_ip_address
                .as_ref()
                .map(|p| p.id.clone())
        })
    }
}

/// A public IP address.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicIp {
    /// Its ARM id.
    pub id: String,
    /// Its properties.
    #[serde(default)]
    pub properties: PublicIpProps,
}

/// The public IP properties read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpProps {
    /// The address.
    #[serde(default)]
    pub ip_address: Option<String>,
}

/// A resource SKU (only VM sizes are read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    /// E.g. `Standard_D4s_v5`.
    pub name: String,
    /// E.g. `virtualMachines`.
    #[serde(default)]
    pub resource_type: String,
    /// Where offered.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Restrictions for this subscription.
    #[serde(default)]
    pub restrictions: Vec<SkuRestriction>,
    /// `vCPUs`, `MemoryGB`, …
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// The quota family, e.g. `standardDSv5Family`.
    #[serde(default)]
    pub family: Option<String>,
}

/// A restriction of a SKU.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkuRestriction {
    /// `Location` or `Zone`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A capability of a SKU.
#[derive(Debug, Clone, Deserialize)]
pub struct Capability {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl Sku {
    /// A capability's value.
    pub fn capability(&self, name: &str) -> Option<&str> {
        self.capabilities
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }

    /// Its vCPUs.
    pub fn vcpus(&self) -> u32 {
        self.capability("vCPUs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A compute usage (quota) line.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Its name.
    pub name: UsageName,
    /// Used now.
    pub current_value: i64,
    /// The limit.
    pub limit: i64,
}

/// The name of a usage.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageName {
    /// E.g. `standardDSv5Family`, `cores`, `lowPriorityCores`.
    pub value: String,
    /// E.g. "Standard DSv5 Family vCPUs".
    #[serde(default)]
    pub localized_value: Option<String>,
}

/// A subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Its id.
    pub subscription_id: String,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `Enabled`, `Disabled`, …
    #[serde(default)]
    pub state: Option<String>,
}

/// A location.
#[derive(Debug, Clone, Deserialize)]
pub struct Location {
    /// E.g. `eastus`.
    pub name: String,
}

/// The boot diagnostics' SAS URLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootDiagnostics {
    /// The serial log's URL.
    #[serde(default)]
    pub serial_console_log_blob_uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(default)]
    next_link: Option<String>,
}

/// The ARM client of one subscription.
#[derive(Debug, Clone)]
pub struct Arm {
    rest: RestClient,
    cred: Arc<Credential>,
    /// The subscription id.
    pub subscription: String,
    /// Deadline of one long-running operation.
    pub lro_deadline: Duration,
}

/// The answer to a PUT: its status (201 created, 200 existed) and the resource.
#[derive(Debug)]
pub struct Put<T> {
    /// 200 or 201.
    pub status: StatusCode,
    /// The resource as the PUT answered it.
    pub value: T,
    /// The raw answer (for its operation headers).
    pub raw: RestResponse,
}

impl Arm {
    /// A client of `subscription` through `rest`, with tokens from `cred`.
    pub fn new(rest: RestClient, cred: Arc<Credential>, subscription: String) -> Self {
        Arm {
            rest,
            cred,
            subscription,
            lro_deadline: Duration::from_secs(900),
        }
    }

    /// The credential.
    pub fn credential(&self) -> &Arc<Credential> {
        &self.cred
    }

    /// `/subscriptions/{s}`.
    pub fn sub(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// `/subscriptions/{s}/resourcegroups/{rg}`.
    pub fn group(&self, rg: &str) -> String {
        format!("{}/resourceGroups/{rg}", self.sub())
    }

    /// A resource of a provider in a group: `…/resourceGroups/{rg}/providers/{kind}/{name}`.
    pub fn resource(&self, rg: &str, kind: &str, name: &str) -> String {
        format!("{}/providers/{kind}/{name}", self.group(rg))
    }

    /// `GET path`, `None` on 404.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>, ArmError> {
        let token = self.cred.token().await?;
        let mut req = self
            .rest
            .request(Method::GET, path)
            .query("api-version", api)
            .bearer(&token);
        for (k, v) in query {
            req = req.query(k, v);
        }
        match req.send_json().await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every item of a listing, following `nextLink` on ARM's own origin.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, ArmError> {
        let token = self.cred.token().await?;
        let mut req = self
            .rest
            .request(Method::GET, path)
            .query("api-version", api)
            .bearer(&token);
        for (k, v) in query {
            req = req.query(k, v);
        }
        let mut page: Page<T> = req.send_json().await?;
        let mut items = std::mem::take(&mut page.value);
        let mut pages = 1;
        while let Some(next) = page.next_link.take().filter(|n| !n.is_empty()) {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            let token = self.cred.token().await?;
            page = self
                .rest
                .request_url(Method::GET, &next)
                .bearer(&token)
                .send_json()
                .await?;
            items.append(&mut page.value);
        }
        Ok(items)
    }

    /// `PUT path` with `body` (with `If-None-Match: *` when `create_only`); does not wait for
    /// the operation.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        body: &B,
        create_only: bool,
    ) -> Result<Put<T>, ArmError> {
        let token = self.cred.token().await?;
        let mut req = self
            .rest
            .request(Method::PUT, path)
            .query("api-version", api)
            .bearer(&token)
            .json(body);
        if create_only {
            req = req.header("If-None-Match", "*");
        }
        let raw = req.send().await?;
        let value = raw.json().map_err(|message| ArmError::Unexpected {
            operation: format!("PUT {path}"),
            message,
        })?;
        Ok(Put {
            status: raw.status,
            value,
            raw,
        })
    }

    /// Wait for the operation a PUT, DELETE or POST answer started.
    pub async fn wait(&self, operation: &str, answer: &RestResponse) -> Result<(), ArmError> {
        let token = self.cred.token().await?;
        lro::wait(
            &self.rest,
            &token,
            operation,
            answer,
            Deadline::after(self.lro_deadline),
        )
        .await
    }

    /// `PUT path`, then its operation, then the resource as ARM has it now.
    pub async fn put_and_wait<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        body: &B,
    ) -> Result<T, ArmError> {
        let put: Put<serde_json::Value> = self.put(path, api, body, false).await?;
        self.wait(&format!("PUT {path}"), &put.raw).await?;
        self.get(path, api, &[])
            .await?
            .ok_or_else(|| ArmError::Unexpected {
                operation: format!("PUT {path}"),
                message: "the resource is gone after its creation".into(),
            })
    }

    /// `DELETE path` (404: already gone), then its operation.
    pub async fn delete(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> Result<(), ArmError> {
        let token = self.cred.token().await?;
        let mut req = self
            .rest
            .request(Method::DELETE, path)
            .query("api-version", api)
            .bearer(&token);
        for (k, v) in query {
            req = req.query(k, v);
        }
        match req.send().await {
            Ok(answer) => self.wait(&format!("DELETE {path}"), &answer).await,
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST path` (an action), decoded.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ArmError> {
        let token = self.cred.token().await?;
        let mut req = self
            .rest
            .request(Method::POST, path)
            .query("api-version", api)
            .bearer(&token)
            .repeatable(true);
        for (k, v) in query {
            req = req.query(k, v);
        }
        Ok(req.send_json().await?)
    }

    /// Plain text at a SAS URL (a boot diagnostics blob: no token, its own host).
    pub async fn blob_text(&self, url: &str) -> Result<String, ArmError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ArmError::Unexpected {
            operation: "boot diagnostics".into(),
            message: format!("not a URL: {e}"),
        })?;
        let origin = parsed.origin().ascii_serialization();
        let client = RestClient::new(
            clusterctl_core::rest::RestConfig::new("azure-blob", origin),
            None,
        )?;
        Ok(client.request_url(Method::GET, url).send().await?.body)
    }
}
