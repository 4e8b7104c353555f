//! DigitalOcean's API v2 as clusterctl uses it: typed models of only the fields read, the
//! request bodies with only fields the OpenAPI spec defines, and one method per call, each
//! through `clusterctl_core::rest` (retries, `Retry-After`, the `ratelimit-*` headers).
//! Listings follow `links.pages.next` by its page number on this client's own base URL, so the
//! token never goes to a host a response names.

use std::time::{Duration, SystemTime};

use clusterctl_core::rest::{RestClient, RestError, segment};
use reqwest::{Method, StatusCode, Url, header::HeaderMap};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Items per page of every listing (the API's maximum).
pub const PER_PAGE: u32 = 200;
/// Most pages read from one listing (200 000 items): a guard against a `next` that never ends.
const MAX_PAGES: u32 = 1000;
/// Most droplets one create request may name.
pub const MAX_NAMES_PER_CREATE: usize = 10;

/// A droplet.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Droplet {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `new`, `active`, `off` or `archive`.
    pub status: String,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Its addresses.
    #[serde(default)]
    pub networks: Networks,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its size.
    #[serde(default)]
    pub size_slug: Option<String>,
}

/// A droplet's addresses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Networks {
    /// IPv4 addresses.
    #[serde(default)]
    pub v4: Vec<NetworkV4>,
}

/// One IPv4 address of a droplet.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetworkV4 {
    /// The address.
    pub ip_address: String,
    /// `public` or `private` (the VPC).
    #[serde(rename = "type")]
    pub kind: String,
}

/// The account the token acts for.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Account {
    /// Most droplets the team may have.
    #[serde(default)]
    pub droplet_limit: Option<u32>,
    /// The user's e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// The user's uuid.
    #[serde(default)]
    pub uuid: Option<String>,
    /// `active`, `warning` or `locked`.
    #[serde(default)]
    pub status: Option<String>,
    /// Why, when not active.
    #[serde(default)]
    pub status_message: Option<String>,
}

/// A region.
#[derive(Debug, Clone, Deserialize)]
pub struct Region {
    /// E.g. `nyc3`.
    pub slug: String,
    /// Whether droplets can be created there.
    #[serde(default)]
    pub available: bool,
}

/// A droplet size.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Size {
    /// E.g. `g-4vcpu-16gb`.
    pub slug: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory: u64,
    /// Price per hour in US dollars.
    #[serde(default)]
    pub price_hourly: f64,
    /// Regions that offer it.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Whether it can be created at all.
    #[serde(default = "yes")]
    pub available: bool,
    /// Present on GPU sizes.
    #[serde(default)]
    pub gpu_info: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// An image.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    /// Its name, e.g. "24.04 (LTS) x64".
    #[serde(default)]
    pub name: Option<String>,
    /// Its distribution, e.g. "Ubuntu".
    #[serde(default)]
    pub distribution: Option<String>,
    /// Regions it is available in.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// A VPC.
#[derive(Debug, Clone, Deserialize)]
pub struct Vpc {
    /// Its uuid.
    pub id: String,
    /// Its region.
    #[serde(default)]
    pub region: Option<String>,
    /// Its private range, e.g. `10.116.0.0/20`.
    #[serde(default)]
    pub ip_range: Option<String>,
    /// Whether it is the region's default VPC.
    #[serde(default)]
    pub default: bool,
}

/// An SSH key of the account.
#[derive(Debug, Clone, Deserialize)]
pub struct SshKey {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// A cloud firewall.
#[derive(Debug, Clone, Deserialize)]
pub struct Firewall {
    /// Its uuid.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The tags it applies to.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Its inbound rules (only their source tags are read).
    #[serde(default)]
    pub inbound_rules: Option<Vec<RuleTags>>,
    /// Its outbound rules (only their destination tags are read).
    #[serde(default)]
    pub outbound_rules: Option<Vec<RuleTags>>,
}

/// The tags a firewall rule names.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleTags {
    /// An inbound rule's sources.
    #[serde(default)]
    pub sources: Option<TargetTags>,
    /// An outbound rule's destinations.
    #[serde(default)]
    pub destinations: Option<TargetTags>,
}

/// The tags of a rule target.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TargetTags {
    /// Tag names.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl Firewall {
    /// Whether the firewall names `tag`, as the tags it applies to or in a rule.
    pub fn names_tag(&self, tag: &str) -> bool {
        let rules = self
            .inbound_rules
            .iter()
            .chain(&self.outbound_rules)
            .flatten();
        self.tags.iter().flatten().any(|t| t == tag)
            || rules
                .flat_map(|r| r.sources.iter().chain(&r.destinations))
                .flat_map(|t| t.tags.iter().flatten())
                .any(|t| t == tag)
    }
}

/// A tag and how many resources carry it.
#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    /// Its name.
    pub name: String,
    /// Resource counts.
    #[serde(default)]
    pub resources: Option<TagResources>,
}

/// How many resources carry a tag.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TagResources {
    /// Droplets, images, volumes, snapshots and databases together.
    #[serde(default)]
    pub count: Option<u64>,
}

impl Tag {
    /// Resources carrying the tag, when the API said (`None` is not zero: such a tag is never
    /// deleted).
    pub fn count(&self) -> Option<u64> {
        self.resources.as_ref().and_then(|r| r.count)
    }
}

/// A droplet image or SSH key reference: a number (id) or a string (slug, fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Ref {
    /// An id.
    Id(u64),
    /// A slug or fingerprint.
    Name(String),
}

impl Ref {
    /// A number when the text is one.
    pub fn parse(text: &str) -> Self {
        match text.parse() {
            Ok(id) if crate::options::is_key_id(text) => Ref::Id(id),
            _ => Ref::Name(text.to_string()),
        }
    }
}

/// The body of `POST /v2/droplets` (single or multiple create).
#[derive(Debug, Clone, Serialize)]
pub struct DropletCreate {
    /// One droplet's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Several droplets' names (at most [`MAX_NAMES_PER_CREATE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// Region slug.
    pub region: String,
    /// Size slug.
    pub size: String,
    /// Image slug or id.
    pub image: Ref,
    /// SSH key ids or fingerprints.
    pub ssh_keys: Vec<Ref>,
    /// Tags (created when missing).
    pub tags: Vec<String>,
    /// The cloud-init user-data.
    pub user_data: String,
    /// VPC uuid (none: the region's default VPC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_uuid: Option<String>,
    /// The monitoring agent.
    pub monitoring: bool,
    /// IPv6.
    pub ipv6: bool,
    /// The web console agent.
    pub with_droplet_agent: bool,
}

/// A firewall rule's sources or destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Addresses and CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Droplets carrying these (existing) tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// An inbound firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundRule {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: &'static str,
    /// A port, a range `a-b`, or `0` for all.
    pub ports: String,
    /// Who may send.
    pub sources: Target,
}

/// An outbound firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundRule {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: &'static str,
    /// A port, a range `a-b`, or `0` for all.
    pub ports: String,
    /// Where to.
    pub destinations: Target,
}

/// The body of `POST /v2/firewalls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallCreate {
    /// Its name.
    pub name: String,
    /// Droplets it applies to, by tag.
    pub tags: Vec<String>,
    /// Allowed inbound traffic.
    pub inbound_rules: Vec<InboundRule>,
    /// Allowed outbound traffic.
    pub outbound_rules: Vec<OutboundRule>,
}

/// The wait after a 429 for a route's own limit (`GET /v2/account/keys`: 10 a minute) while
/// the token's hourly budget is not spent: eight of these cover a whole minute.
const ROUTE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// DigitalOcean's rate-limit headers on a 429 without `Retry-After` (the per-minute burst sends
/// one): when `ratelimit-remaining` is 0 (the hourly budget), wait until `ratelimit-reset`
/// (epoch seconds, when the oldest counted request expires), at least a second; when it is not,
/// the 429 is a route's own limit: wait [`ROUTE_LIMIT_WAIT`].
pub fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if get("ratelimit-remaining")? > 0 {
        return Some(ROUTE_LIMIT_WAIT);
    }
    let reset = SystemTime::UNIX_EPOCH + Duration::from_secs(get("ratelimit-reset")?);
    Some(
        reset
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1)),
    )
}

/// The page number a `links.pages.next` URL asks for.
pub fn next_page(links: &serde_json::Value) -> Option<u32> {
    let next = links.get("pages")?.get("next")?.as_str()?;
    let url = Url::parse(next).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// The calls.
#[derive(Debug, Clone)]
pub struct Api {
    rest: RestClient,
}

#[derive(Deserialize)]
struct One<T> {
    #[serde(
        alias = "droplet",
        alias = "account",
        alias = "image",
        alias = "vpc",
        alias = "tag",
        alias = "ssh_key",
        alias = "firewall"
    )]
    item: T,
}

#[derive(Deserialize)]
struct Many<T> {
    droplets: Vec<T>,
}

fn ok_if_missing(r: Result<(), RestError>) -> Result<(), RestError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

impl Api {
    /// Calls through `rest`.
    pub fn new(rest: RestClient) -> Self {
        Api { rest }
    }

    async fn one<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, RestError> {
        match self.rest.get_json::<One<T>>(path).await {
            Ok(o) => Ok(Some(o.item)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item under `key` of the listing at `path`, page after page.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, RestError> {
        let mut items = Vec::new();
        let mut page = 1u32;
        loop {
            let mut req = self
                .rest
                .request(Method::GET, path)
                .query("per_page", PER_PAGE);
            if page > 1 {
                req = req.query("page", page);
            }
            for (k, v) in query {
                req = req.query(k, v);
            }
            let mut body: serde_json::Value = req.send_json().await?;
            if let Some(list) = body.get_mut(key).map(serde_json::Value::take)
                && !list.is_null()
            {
                let got: Vec<T> = serde_json::from_value(list).map_err(|e| RestError::Decode {
                    service: self.rest.service(),
                    method: Method::GET,
                    path: path.to_string(),
                    message: format!("`{key}`: {e}"),
                })?;
                items.extend(got);
            }
            match body.get("links").and_then(next_page) {
                Some(n) if n > page && n <= MAX_PAGES => page = n,
                _ => return Ok(items),
            }
        }
    }

    /// `GET /v2/account` (`None`: the API has no such route, e.g. a simulator without it).
    pub async fn account(&self) -> Result<Option<Account>, RestError> {
        self.one("/v2/account").await
    }

    /// `GET /v2/regions`.
    pub async fn regions(&self) -> Result<Vec<Region>, RestError> {
        self.list("/v2/regions", "regions", &[]).await
    }

    /// `GET /v2/sizes`.
    pub async fn sizes(&self) -> Result<Vec<Size>, RestError> {
        self.list("/v2/sizes", "sizes", &[]).await
    }

    /// `GET /v2/images/{slug or id}`.
    pub async fn image(&self, image: &str) -> Result<Option<Image>, RestError> {
        self.one(&format!("/v2/images/{}", segment(image))).await
    }

    /// `GET /v2/vpcs/{id}`.
    pub async fn vpc(&self, id: &str) -> Result<Option<Vpc>, RestError> {
        self.one(&format!("/v2/vpcs/{}", segment(id))).await
    }

    /// `GET /v2/vpcs`.
    pub async fn vpcs(&self) -> Result<Vec<Vpc>, RestError> {
        self.list("/v2/vpcs", "vpcs", &[]).await
    }

    /// `GET /v2/droplets?tag_name=…`.
    pub async fn droplets_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, RestError> {
        self.list("/v2/droplets", "droplets", &[("tag_name", tag)])
            .await
    }

    /// `GET /v2/droplets/{id}` (`None`: gone).
    pub async fn droplet(&self, id: u64) -> Result<Option<Droplet>, RestError> {
        self.one(&format!("/v2/droplets/{id}")).await
    }

    /// How many droplets the account has (`meta.total` of a one-item page).
    pub async fn droplet_count(&self) -> Result<u64, RestError> {
        let body: serde_json::Value = self
            .rest
            .request(Method::GET, "/v2/droplets")
            .query("per_page", 1)
            .send_json()
            .await?;
        Ok(body
            .pointer("/meta/total")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0))
    }

    /// `POST /v2/droplets`. Not repeated after a server error or a lost answer: it may have
    /// created the droplets (whatever it created carries the cluster tag, so `down` finds it).
    pub async fn create_droplets(&self, body: &DropletCreate) -> Result<Vec<Droplet>, RestError> {
        let resp = self
            .rest
            .request(Method::POST, "/v2/droplets")
            .json(body)
            .repeatable(false)
            .send()
            .await?;
        let decode = |message: String| RestError::Decode {
            service: self.rest.service(),
            method: Method::POST,
            path: "/v2/droplets".into(),
            message,
        };
        if body.names.is_some() {
            Ok(resp.json::<Many<Droplet>>().map_err(decode)?.droplets)
        } else {
            Ok(vec![resp.json::<One<Droplet>>().map_err(decode)?.item])
        }
    }

    /// `DELETE /v2/droplets/{id}` (gone already: fine).
    pub async fn delete_droplet(&self, id: u64) -> Result<(), RestError> {
        ok_if_missing(
            self.rest
                .request(Method::DELETE, &format!("/v2/droplets/{id}"))
                .send()
                .await
                .map(drop),
        )
    }

    /// `DELETE /v2/droplets?tag_name=…`: every droplet carrying the tag, server-side.
    pub async fn delete_droplets_by_tag(&self, tag: &str) -> Result<(), RestError> {
        ok_if_missing(
            self.rest
                .request(Method::DELETE, "/v2/droplets")
                .query("tag_name", tag)
                .send()
                .await
                .map(drop),
        )
    }

    /// `POST /v2/tags` (an existing tag is fine).
    pub async fn create_tag(&self, name: &str) -> Result<(), RestError> {
        match self
            .rest
            .request(Method::POST, "/v2/tags")
            .json(&serde_json::json!({ "name": name }))
            .repeatable(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.status() == Some(StatusCode::UNPROCESSABLE_ENTITY)
                    && e.body().is_some_and(|b| b.contains("already")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/tags`.
    pub async fn tags(&self) -> Result<Vec<Tag>, RestError> {
        self.list("/v2/tags", "tags", &[]).await
    }

    /// `DELETE /v2/tags/{name}` (gone already: fine).
    pub async fn delete_tag(&self, name: &str) -> Result<(), RestError> {
        ok_if_missing(
            self.rest
                .request(Method::DELETE, &format!("/v2/tags/{}", segment(name)))
                .send()
                .await
                .map(drop),
        )
    }

    /// `GET /v2/account/keys`: one listing of up to 200 keys per page (the route allows only
    /// 10 requests a minute).
    pub async fn keys(&self) -> Result<Vec<SshKey>, RestError> {
        self.list("/v2/account/keys", "ssh_keys", &[]).await
    }

    /// `POST /v2/account/keys`.
    pub async fn create_key(&self, name: &str, public_key: &str) -> Result<SshKey, RestError> {
        self.rest
            .request(Method::POST, "/v2/account/keys")
            .json(&serde_json::json!({ "name": name, "public_key": public_key }))
            .send_json::<One<SshKey>>()
            .await
            .map(|o| o.item)
    }

    /// `GET /v2/account/keys/{id}` (`None`: gone). Not limited like the listing.
    pub async fn key(&self, id: u64) -> Result<Option<SshKey>, RestError> {
        self.one(&format!("/v2/account/keys/{id}")).await
    }

    /// `PUT /v2/account/keys/{id}` with a new name (`None`: the key is gone).
    pub async fn rename_key(&self, id: u64, name: &str) -> Result<Option<()>, RestError> {
        match self
            .rest
            .request(Method::PUT, &format!("/v2/account/keys/{id}"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
        {
            Ok(_) => Ok(Some(())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /v2/account/keys/{id}` (gone already: fine).
    pub async fn delete_key(&self, id: u64) -> Result<(), RestError> {
        ok_if_missing(
            self.rest
                .request(Method::DELETE, &format!("/v2/account/keys/{id}"))
                .send()
                .await
                .map(drop),
        )
    }

    /// `GET /v2/firewalls`.
    pub async fn firewalls(&self) -> Result<Vec<Firewall>, RestError> {
        self.list("/v2/firewalls", "firewalls", &[]).await
    }

    /// `POST /v2/firewalls`. Repeatable: a duplicate is found by name and deleted with the
    /// cluster.
    pub async fn create_firewall(&self, body: &FirewallCreate) -> Result<Firewall, RestError> {
        self.rest
            .request(Method::POST, "/v2/firewalls")
            .json(body)
            .repeatable(true)
            .send_json::<One<Firewall>>()
            .await
            .map(|o| o.item)
    }

    /// `DELETE /v2/firewalls/{id}` (gone already: fine).
    pub async fn delete_firewall(&self, id: &str) -> Result<(), RestError> {
        ok_if_missing(
            self.rest
                .request(Method::DELETE, &format!("/v2/firewalls/{}", segment(id)))
                .send()
                .await
                .map(drop),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_hold_only_spec_fields_with_spec_types() {
        let body = DropletCreate {
            name: None,
            names: Some(vec!["a-worker-0".into(), "a-worker-1".into()]),
            region: "nyc3".into(),
            size: "g-4vcpu-16gb".into(),
            image: Ref::parse("ubuntu-24-04-x64"),
            ssh_keys: vec![Ref::parse("289794"), Ref::parse("3b:16:e4")],
            tags: vec!["clusterctl-cluster:a".into()],
            user_data: "#cloud-config\n".into(),
            vpc_uuid: None,
            monitoring: false,
            ipv6: false,
            with_droplet_agent: false,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["ssh_keys"], serde_json::json!([289794, "3b:16:e4"]));
        assert_eq!(v["image"], "ubuntu-24-04-x64");
        assert!(v.get("name").is_none() && v.get("vpc_uuid").is_none());
        // Sorted: serde_json keeps insertion order when another crate of the build turns on
        // its `preserve_order` feature.
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "image",
                "ipv6",
                "monitoring",
                "names",
                "region",
                "size",
                "ssh_keys",
                "tags",
                "user_data",
                "with_droplet_agent"
            ]
        );
        assert_eq!(Ref::parse("12345"), Ref::Id(12345));
    }

    #[test]
    fn models_read_spec_examples() {
        let d: One<Droplet> = serde_json::from_value(serde_json::json!({"droplet": {
            "id": 3164444, "name": "a-scheduler", "memory": 1024, "vcpus": 1, "disk": 25,
            "locked": false, "status": "active", "created_at": "2020-07-21T18:37:44Z",
            "networks": {"v4": [
                {"ip_address": "10.128.192.124", "netmask": "255.255.0.0", "gateway": "nil", "type": "private"},
                {"ip_address": "192.241.165.154", "netmask": "255.255.255.0", "gateway": "192.241.165.1", "type": "public"}
            ], "v6": []},
            "tags": ["clusterctl-cluster:a"], "size_slug": "s-1vcpu-1gb"
        }}))
        .unwrap();
        assert_eq!(d.item.networks.v4.len(), 2);
        let t: One<Tag> = serde_json::from_value(serde_json::json!({"tag": {
            "name": "x", "resources": {"count": 3, "last_tagged_uri": "u", "droplets": {"count": 3}}
        }}))
        .unwrap();
        assert_eq!(t.item.count(), Some(3));
        let f: One<Firewall> = serde_json::from_value(
            serde_json::json!({"firewall": {"id": "f", "name": "n", "tags": null}}),
        )
        .unwrap();
        assert_eq!(f.item.tags, None);
        assert!(!f.item.names_tag("x"));
        let f: One<Firewall> = serde_json::from_value(serde_json::json!({"firewall": {
            "id": "f", "name": "n", "tags": ["a"],
            "inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"tags": ["b"], "addresses": ["1.2.3.4"]}}],
            "outbound_rules": [{"protocol": "tcp", "ports": "0", "destinations": {"tags": ["c"]}}]
        }}))
        .unwrap();
        assert!(["a", "b", "c"].iter().all(|t| f.item.names_tag(t)));
        assert!(!f.item.names_tag("d"));
    }

    #[test]
    fn pages_and_rate_limits() {
        let links = serde_json::json!({"pages": {
            "next": "https://api.digitalocean.com/v2/droplets?page=3&per_page=200",
            "last": "https://api.digitalocean.com/v2/droplets?page=9&per_page=200"
        }});
        assert_eq!(next_page(&links), Some(3));
        assert_eq!(next_page(&serde_json::json!({})), None);
        assert_eq!(next_page(&serde_json::json!({"pages": {}})), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", "0".parse().unwrap());
        h.insert("ratelimit-reset", "1030".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, now), Some(Duration::from_secs(30)));
        h.insert("ratelimit-reset", "900".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, now), Some(Duration::from_secs(1)));
        h.insert("ratelimit-remaining", "12".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, now), Some(ROUTE_LIMIT_WAIT));
        assert_eq!(rate_limit_wait(&HeaderMap::new(), now), None);
    }
}
