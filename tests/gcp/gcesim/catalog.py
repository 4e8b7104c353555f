"""Fixed data of the simulated Google Cloud: zones, regions, machine types, images, the default
network's subnets, default quotas, and the URL forms (www.googleapis.com self links).

Machine types are offered per zone like the real catalog is (a type not offered in a zone is
`notFound` there): `c3-standard-4` is not offered in us-east1-d, the GPU types (`g2-standard-4`
with one NVIDIA L4, `a2-highgpu-1g` with one A100) only in a few zones. Images: the public
projects `cos-cloud` (families `cos-stable`, `cos-121-lts`) and `ubuntu-os-cloud`
(`ubuntu-2404-lts-amd64`, `ubuntu-2404-lts-arm64`, `ubuntu-2204-lts`). The default network is
auto mode with Google's real per-region /20 ranges inside 10.128.0.0/9.
"""

import hashlib

API = "https://www.googleapis.com/compute/v1/"
CREATED = "2024-01-08T09:12:37.123-08:00"

REGIONS = {
    "us-central1": {"zones": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
                    "subnet": "10.128.0.0/20"},
    "us-east1": {"zones": ["us-east1-b", "us-east1-c", "us-east1-d"], "subnet": "10.142.0.0/20"},
    "us-west1": {"zones": ["us-west1-a", "us-west1-b", "us-west1-c"], "subnet": "10.138.0.0/20"},
    "europe-west1": {"zones": ["europe-west1-b", "europe-west1-c", "europe-west1-d"],
                     "subnet": "10.132.0.0/20"},
}
ZONES = {z: r for r, v in REGIONS.items() for z in v["zones"]}

# name -> (vCPUs, memory MiB, accelerators [(type, count)], zones (None = every zone))
MACHINE_TYPES = {
    "e2-micro": (2, 1024, [], None), "e2-small": (2, 2048, [], None),
    "e2-medium": (2, 4096, [], None),
    "e2-standard-2": (2, 8192, [], None), "e2-standard-4": (4, 16384, [], None),
    "e2-standard-8": (8, 32768, [], None), "e2-standard-16": (16, 65536, [], None),
    "e2-highmem-4": (4, 32768, [], None),
    "n2-standard-2": (2, 8192, [], None), "n2-standard-4": (4, 16384, [], None),
    "n2-standard-8": (8, 32768, [], None), "n2-highmem-4": (4, 32768, [], None),
    "c3-standard-4": (4, 16384, [], [z for z in ZONES if z != "us-east1-d"]),
    "g2-standard-4": (4, 16384, [("nvidia-l4", 1)],
                      ["us-central1-a", "us-central1-b", "europe-west1-b"]),
    "a2-highgpu-1g": (12, 87040, [("nvidia-tesla-a100", 1)], ["us-central1-a", "us-central1-c"]),
}
ACCELERATORS = {"nvidia-l4": ("NVIDIA L4", "NVIDIA_L4_GPUS"),
                "nvidia-tesla-a100": ("NVIDIA A100 40GB", "NVIDIA_A100_GPUS"),
                "nvidia-tesla-t4": ("NVIDIA T4", "NVIDIA_T4_GPUS")}
ACCELERATOR_ZONES = {"nvidia-l4": ["us-central1-a", "us-central1-b", "europe-west1-b"],
                     "nvidia-tesla-a100": ["us-central1-a", "us-central1-c"],
                     "nvidia-tesla-t4": ["us-central1-a", "us-central1-b", "us-east1-c",
                                         "us-west1-b", "europe-west1-b"]}

# project -> {family: image name}; every image is 10 GB, READY, x86_64 unless named arm64
IMAGES = {
    "cos-cloud": {"cos-stable": "cos-stable-121-18867-199-28",
                  "cos-121-lts": "cos-121-18867-199-28"},
    "ubuntu-os-cloud": {"ubuntu-2404-lts-amd64": "ubuntu-2404-noble-amd64-v20261101",
                        "ubuntu-2404-lts-arm64": "ubuntu-2404-noble-arm64-v20261101",
                        "ubuntu-2204-lts": "ubuntu-2204-jammy-v20261101"},
}
IMAGE_DISK_GB = 10

REGION_QUOTAS = {"CPUS": 24, "INSTANCES": 24, "IN_USE_ADDRESSES": 8, "PREEMPTIBLE_CPUS": 0,
                 "DISKS_TOTAL_GB": 4096, "SSD_TOTAL_GB": 500, "NVIDIA_L4_GPUS": 1,
                 "NVIDIA_A100_GPUS": 0, "NVIDIA_T4_GPUS": 1}
PROJECT_QUOTAS = {"FIREWALLS": 200, "NETWORKS": 15, "SUBNETWORKS": 275, "IMAGES": 2000}

SCOPE_CLOUD = "https://www.googleapis.com/auth/cloud-platform"
COMPUTE_SCOPES = {SCOPE_CLOUD, "https://www.googleapis.com/auth/compute"}
COMPUTE_READ_SCOPES = COMPUTE_SCOPES | {"https://www.googleapis.com/auth/compute.readonly",
                                        "https://www.googleapis.com/auth/cloud-platform.read-only"}


def num_id(*parts):
    """A stable uint64-looking decimal id for a resource."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return str(int.from_bytes(h[:8], "big") % (10 ** 19 - 10 ** 18) + 10 ** 18)


def project_number(project):
    h = hashlib.sha256(project.encode()).digest()
    return str(int.from_bytes(h[:5], "big") % (10 ** 12 - 10 ** 11) + 10 ** 11)


def link(*parts):
    return API + "/".join(str(p) for p in parts)


def zone_link(project, zone):
    return link("projects", project, "zones", zone)


def region_link(project, region):
    return link("projects", project, "regions", region)


def machine_type(name, zone):
    mt = MACHINE_TYPES.get(name)
    if mt is None or (mt[3] is not None and zone not in mt[3]):
        return None
    return mt


def machine_type_resource(project, zone, name):
    cpus, mem, accs, _ = MACHINE_TYPES[name]
    out = {"kind": "compute#machineType", "id": num_id("mt", name),
           "creationTimestamp": CREATED, "name": name,
           "description": f"{cpus} vCPUs, {mem / 1024:g} GB RAM", "guestCpus": cpus,
           "memoryMb": mem, "imageSpaceGb": 0, "maximumPersistentDisks": 128,
           "maximumPersistentDisksSizeGb": "263168", "zone": zone,
           "selfLink": link("projects", project, "zones", zone, "machineTypes", name),
           "isSharedCpu": name in ("e2-micro", "e2-small", "e2-medium"),
           "architecture": "X86_64"}
    if accs:
        out["accelerators"] = [{"guestAcceleratorType": a, "guestAcceleratorCount": n}
                               for a, n in accs]
    return out


def image_resource(project, name, family):
    arch = "ARM64" if "arm64" in name else "X86_64"
    return {"kind": "compute#image", "id": num_id("image", project, name),
            "creationTimestamp": CREATED, "name": name,
            "description": f"{family} image built on 2026-11-01", "sourceType": "RAW",
            "status": "READY", "archiveSizeBytes": "1843748480",
            "diskSizeGb": str(IMAGE_DISK_GB), "family": family,
            "selfLink": link("projects", project, "global", "images", name),
            "licenses": [link("projects", project, "global", "licenses", family)],
            "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "UEFI_COMPATIBLE"},
                                {"type": "GVNIC"}, {"type": "SEV_CAPABLE"}],
            "labelFingerprint": "42WmSpB8rSM=", "storageLocations": ["eu", "asia", "us"],
            "architecture": arch, "shieldedInstanceInitialState": {}}


def find_image(project, name):
    """(image name, family) by image name in a public image project, or None."""
    for family, image in IMAGES.get(project, {}).items():
        if image == name:
            return image, family
    return None
