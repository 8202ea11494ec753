"""Device profiles (``devices/*.toml``): what each target box runs and how to build for it."""

from edgemask.devices.profiles import (
    KINDS,
    PRECISIONS,
    DeviceProfile,
    detect_profile_name,
    list_profiles,
    load_all_profiles,
    load_profile,
    parse_profile,
    plan_dla,
    plan_precision,
    profile_dirs,
    profile_name_for,
    tensorrt_version_matches,
)

__all__ = [
    "DeviceProfile",
    "KINDS",
    "PRECISIONS",
    "detect_profile_name",
    "list_profiles",
    "load_all_profiles",
    "load_profile",
    "parse_profile",
    "plan_dla",
    "plan_precision",
    "profile_dirs",
    "profile_name_for",
    "tensorrt_version_matches",
]
