"""The simulated account's fixed catalog: regions, sizes, images, default VPCs, the account.

Owns the static data every answer is built from. Figures are DigitalOcean's as of the 2024-10
`GET /v2/{regions,sizes,images}` dumps in shared/notes/digitalocean.md (prices per month and per
hour, vCPUs, memory in MiB, disk in GiB, transfer in TiB). Awkward parts kept on purpose:
`s-2vcpu-4gb` is NOT offered in nyc3 (refused there since 2026-03), `m-2vcpu-16gb` is not in
blr1, `sfo1` exists but is unavailable, the GPU size is only in tor1, and the Docker 1-Click's
slug `docker-20-04` is named "Docker on Ubuntu 22.04" (and turns UFW on: `ufw: True`, see
dosim/network.py). Default VPC ranges differ per region, all inside 10.0.0.0/8 (the sandbox).
"""

import uuid

CREATED = "2024-10-01T00:00:00Z"
_NS = uuid.UUID("5c8b0a4e-6a43-4d0f-9a30-1a2b3c4d5e6f")

# slug, name, available, default VPC range
_REGIONS = [
    ("nyc1", "New York 1", True, "10.116.0.0/20"),
    ("nyc3", "New York 3", True, "10.108.0.0/20"),
    ("sfo1", "San Francisco 1", False, None),
    ("sfo3", "San Francisco 3", True, "10.124.0.0/20"),
    ("ams3", "Amsterdam 3", True, "10.110.0.0/20"),
    ("fra1", "Frankfurt 1", True, "10.114.0.0/20"),
    ("lon1", "London 1", True, "10.106.0.0/20"),
    ("sgp1", "Singapore 1", True, "10.104.0.0/20"),
    ("tor1", "Toronto 1", True, "10.118.0.0/20"),
    ("blr1", "Bangalore 1", True, "10.122.0.0/20"),
    ("syd1", "Sydney 1", True, "10.126.0.0/20"),
]
REGION_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"]
AVAILABLE_REGIONS = [r[0] for r in _REGIONS if r[2]]

# slug, description, vcpus, memory MiB, disk GiB, transfer TiB, $/month, $/hour, regions (None=all)
_SIZES = [
    ("s-1vcpu-1gb", "Basic", 1, 1024, 25, 1.0, 6.0, 0.00893, None),
    ("s-1vcpu-2gb", "Basic", 1, 2048, 50, 2.0, 12.0, 0.01786, None),
    ("s-2vcpu-2gb", "Basic", 2, 2048, 60, 3.0, 18.0, 0.02679, None),
    ("s-2vcpu-4gb", "Basic", 2, 4096, 80, 4.0, 24.0, 0.03571,
     [r for r in AVAILABLE_REGIONS if r != "nyc3"]),
    ("s-4vcpu-8gb", "Basic", 4, 8192, 160, 5.0, 48.0, 0.07143, None),
    ("s-8vcpu-16gb", "Basic", 8, 16384, 320, 6.0, 96.0, 0.14286, None),
    ("c-2", "CPU-Optimized", 2, 4096, 25, 4.0, 42.0, 0.0625, None),
    ("c-4", "CPU-Optimized", 4, 8192, 50, 5.0, 84.0, 0.125, None),
    ("g-2vcpu-8gb", "General Purpose", 2, 8192, 25, 4.0, 63.0, 0.09375, None),
    ("g-4vcpu-16gb", "General Purpose", 4, 16384, 50, 5.0, 126.0, 0.1875, None),
    ("gd-2vcpu-8gb", "General Purpose", 2, 8192, 50, 4.0, 68.0, 0.10119, None),
    ("m-2vcpu-16gb", "Memory-Optimized", 2, 16384, 50, 4.0, 84.0, 0.125,
     [r for r in AVAILABLE_REGIONS if r != "blr1"]),
    ("gpu-h100x1-80gb", "GPU", 20, 245760, 720, 15.0, 2522.16, 3.39, ["tor1"]),
]
GPU_INFO = {"gpu-h100x1-80gb": {"count": 1, "model": "nvidia_h100",
                                "vram": {"amount": 80, "unit": "gib"}}}

# id, slug, name, distribution, type, kind ("distribution"|"application"), min disk, GiB, description
_IMAGES = [
    (165064254, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", "base", "distribution", 7, 2.56,
     "Ubuntu 24.04 (LTS) x64"),
    (129211873, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", "base", "distribution", 7, 2.36,
     "Ubuntu 22.04 (LTS) x64"),
    (161417302, "debian-12-x64", "12 x64", "Debian", "base", "distribution", 7, 1.24,
     "Debian 12 x64"),
    (163086562, "docker-20-04", "Docker on Ubuntu 22.04", "Ubuntu", "snapshot", "application",
     25, 5.71, "Docker 1-Click (docker-ce, docker-compose; UFW on)"),
]
UFW_IMAGES = {"docker-20-04"}


def vpc_id(region):
    return str(uuid.uuid5(_NS, "default-vpc-" + region))


def _cached(fn):
    """Catalog answers are built once and shared: callers must treat them as read-only."""
    box = []

    def get():
        if not box:
            box.append(fn())
        return box[0]
    get.__doc__ = fn.__doc__
    return get


@_cached
def regions():
    """The region objects, `sizes` being the sizes offered there."""
    out = []
    for slug, name, available, _ in _REGIONS:
        sizes = [s["slug"] for s in sizes_list() if slug in s["regions"]] if available else []
        out.append({"name": name, "slug": slug, "features": list(REGION_FEATURES),
                    "available": available, "sizes": sizes})
    return out


def region(slug):
    return next((r for r in regions() if r["slug"] == slug), None)


@_cached
def sizes_list():
    out = []
    for slug, desc, vcpus, mem, disk, transfer, monthly, hourly, where in _SIZES:
        s = {"slug": slug, "memory": mem, "vcpus": vcpus, "disk": disk, "transfer": transfer,
             "price_monthly": monthly, "price_hourly": hourly,
             "regions": list(where) if where is not None else list(AVAILABLE_REGIONS),
             "available": True, "description": desc,
             "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}]}
        if slug in GPU_INFO:
            s["gpu_info"] = GPU_INFO[slug]
            s["disk_info"] = [{"type": "boot", "size": {"amount": disk, "unit": "gib"}},
                              {"type": "scratch", "size": {"amount": 5120, "unit": "gib"}}]
        out.append(s)
    return out


def size(slug):
    return next((s for s in sizes_list() if s["slug"] == slug), None)


@_cached
def images():
    """(public image object, kind) pairs."""
    out = []
    for iid, slug, name, dist, typ, kind, min_disk, gib, desc in _IMAGES:
        out.append(({"id": iid, "name": name, "distribution": dist, "slug": slug,
                     "public": True, "regions": list(AVAILABLE_REGIONS), "created_at": CREATED,
                     "type": typ, "min_disk_size": min_disk, "size_gigabytes": gib,
                     "description": desc, "tags": [], "status": "available",
                     "error_message": ""}, kind))
    return out


def image(ident):
    """The image for an id (int or digit string) or a slug, or None."""
    for img, _ in images():
        if isinstance(ident, bool):
            return None
        if isinstance(ident, int) and img["id"] == ident:
            return img
        if isinstance(ident, str) and (img["slug"] == ident or
                                       (ident.isdigit() and img["id"] == int(ident))):
            return img
    return None


@_cached
def default_vpcs():
    out = []
    for slug, _, available, rng in _REGIONS:
        if not available or rng is None:
            continue
        vid = vpc_id(slug)
        out.append({"id": vid, "urn": f"do:vpc:{vid}", "name": f"default-{slug}",
                    "description": "", "region": slug, "ip_range": rng, "default": True,
                    "created_at": CREATED})
    return out


def account(droplet_limit):
    return {"droplet_limit": droplet_limit, "floating_ip_limit": 3,
            "email": "sim@example.com", "name": "Simulated User",
            "uuid": str(uuid.uuid5(_NS, "account")), "email_verified": True,
            "status": "active", "status_message": "",
            "team": {"uuid": str(uuid.uuid5(_NS, "team")), "name": "My Team"}}
