"""Fixed data of the simulated Azure: locations, VM sizes (families, vCPUs, prices, where
offered), Marketplace images (publisher/offer/sku/versions), built-in roles, reserved admin
user names, and the address pools. A 2024-11 snapshot; prices are pay-as-you-go Linux USD/hour.
"""

LOCATIONS = {
    # name: (displayName, geography, zones, paired)
    "eastus": ("East US", "United States", ["1", "2", "3"], "westus"),
    "eastus2": ("East US 2", "United States", ["1", "2", "3"], "centralus"),
    "westus2": ("West US 2", "United States", ["1", "2", "3"], "westcentralus"),
    "westus3": ("West US 3", "United States", ["1", "2", "3"], "eastus"),
    "centralus": ("Central US", "United States", ["1", "2", "3"], "eastus2"),
    "westeurope": ("West Europe", "Europe", ["1", "2", "3"], "northeurope"),
    "northeurope": ("North Europe", "Europe", ["1", "2", "3"], "westeurope"),
    "uksouth": ("UK South", "United Kingdom", ["1", "2", "3"], "ukwest"),
    "westus": ("West US", "United States", [], "eastus"),
}

# name: (family, vCPUs, memory GiB, price/hour, locations where NOT offered, spot capacity)
SIZES = {
    "Standard_D2s_v5": ("standardDSv5Family", 2, 8, 0.096, (), True),
    "Standard_D4s_v5": ("standardDSv5Family", 4, 16, 0.192, (), True),
    "Standard_D8s_v5": ("standardDSv5Family", 8, 32, 0.384, (), True),
    "Standard_D16s_v5": ("standardDSv5Family", 16, 64, 0.768, (), True),
    "Standard_D2as_v5": ("standardDASv5Family", 2, 8, 0.086, ("uksouth",), True),
    "Standard_D4as_v5": ("standardDASv5Family", 4, 16, 0.172, ("uksouth",), True),
    "Standard_E4s_v5": ("standardESv5Family", 4, 32, 0.252, (), True),
    "Standard_E8s_v5": ("standardESv5Family", 8, 64, 0.504, (), False),
    "Standard_F4s_v2": ("standardFSv2Family", 4, 8, 0.169, (), True),
    "Standard_D4s_v3": ("standardDSv3Family", 4, 16, 0.192, ("westus3",), True),
    "Standard_B2s": ("standardBSFamily", 2, 4, 0.0416, (), False),
    "Standard_B2ms": ("standardBSFamily", 2, 8, 0.0832, (), False),
    "Standard_NC4as_T4_v3": ("standardNCASv3_T4Family", 4, 28, 0.526,
                             ("westeurope", "uksouth", "westus", "centralus"), False),
}
FAMILY_NAMES = {
    "standardDSv5Family": "Standard DSv5 Family vCPUs",
    "standardDASv5Family": "Standard DASv5 Family vCPUs",
    "standardESv5Family": "Standard ESv5 Family vCPUs",
    "standardFSv2Family": "Standard FSv2 Family vCPUs",
    "standardDSv3Family": "Standard DSv3 Family vCPUs",
    "standardBSFamily": "Standard BS Family vCPUs",
    "standardNCASv3_T4Family": "Standard NCASv3_T4 Family vCPUs",
}
SPOT_DISCOUNT = 0.2          # a spot VM costs this fraction of the pay-as-you-go price

# (publisher, offer, sku): (versions, hyperVGeneration, architecture)
IMAGES = {
    ("Canonical", "ubuntu-24_04-lts", "server"):
        (["24.04.202409120", "24.04.202410090", "24.04.202411030"], "V2", "x64"),
    ("Canonical", "ubuntu-24_04-lts", "server-gen1"):
        (["24.04.202409120", "24.04.202410090", "24.04.202411030"], "V1", "x64"),
    ("Canonical", "ubuntu-24_04-lts", "server-arm64"):
        (["24.04.202410090", "24.04.202411030"], "V2", "Arm64"),
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2"):
        (["22.04.202409250", "22.04.202410020", "22.04.202411010"], "V2", "x64"),
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts"):
        (["22.04.202410020", "22.04.202411010"], "V1", "x64"),
}

ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": ("Owner", ["*"], []),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": (
        "Contributor", ["*"],
        ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
         "Microsoft.Authorization/elevateAccess/Action"]),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": ("Reader", ["*/read"], []),
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": ("User Access Administrator",
                                              ["*/read", "Microsoft.Authorization/*",
                                               "Microsoft.Support/*"], []),
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c": ("Virtual Machine Contributor",
                                              ["Microsoft.Compute/virtualMachines/*",
                                               "Microsoft.Resources/subscriptions/resourceGroups/read"],
                                              []),
}

RESERVED_ADMIN_NAMES = {
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1",
    "123", "a", "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest",
    "john", "owner", "root", "server", "sql", "support", "support_388945a0", "sys", "test2",
    "test3", "user4", "user5"}

PUBLIC_POOL = "10.251.0.0/16"   # "public" IPs: a 10.x range no VNet should use (the sandbox)
DISK_PRICE_HOURLY = {"Standard_LRS": 0.0021, "StandardSSD_LRS": 0.0041, "Premium_LRS": 0.0071}
PUBLIC_IP_PRICE_HOURLY = 0.005


def size(name):
    """The size's record, matched case-insensitively, as (canonical name, tuple) or None."""
    for k, v in SIZES.items():
        if k.lower() == str(name).lower():
            return k, v
    return None


def location(name):
    key = str(name).lower().replace(" ", "")
    for k, v in LOCATIONS.items():
        if k == key or v[0].lower().replace(" ", "") == key:
            return k
    return None


def image(publisher, offer, sku):
    for (p, o, s), v in IMAGES.items():
        if (p.lower(), o.lower(), s.lower()) == (str(publisher).lower(), str(offer).lower(),
                                                 str(sku).lower()):
            return (p, o, s), v
    return None


def role(role_definition_id):
    """The role (name, actions, notActions) for a roleDefinitionId (full id or bare GUID)."""
    guid = str(role_definition_id).rstrip("/").rsplit("/", 1)[-1].lower()
    return guid, ROLES.get(guid)


def role_by_name(name):
    """The GUID of a built-in role named `name` (case-insensitive), or None."""
    for guid, (role_name, _, _) in ROLES.items():
        if role_name.lower() == name.strip().lower():
            return guid
    return None
