"""The one settings schema: a frozen tree read from a YAML file and the environment, validated.

Each fact lives in one place. `schema` declares every key: its type, its default, its choices
(`Literal`), its per-field rules and environment variables (`Annotated`, see `constraints`).
`reader` reads any such dataclass generically, `crossfield` holds the rules that span several
fields, and `loader` puts the file, the environment and the downward API together.

Adding a settings group (for example a registry) is ONE dataclass and nothing else, plus the
field on its parent; a tuple of a union of dataclasses, each with a `kind: Literal[...]` field,
is read by that kind.
"""

from sidecar.settings.loader import from_mapping, load
from sidecar.settings.schema import (
    TOKEN_HEADER,
    BudgetSettings,
    ContainerSpec,
    EnvoySettings,
    KubernetesSettings,
    Mode,
    PhaseSettings,
    PodIdentity,
    Role,
    Secret,
    ServerSettings,
    Settings,
    TrafficSettings,
    TrafficSourceName,
    Unconfirmed,
)

__all__ = [
    "TOKEN_HEADER",
    "BudgetSettings",
    "ContainerSpec",
    "EnvoySettings",
    "KubernetesSettings",
    "Mode",
    "PhaseSettings",
    "PodIdentity",
    "Role",
    "Secret",
    "ServerSettings",
    "Settings",
    "TrafficSettings",
    "TrafficSourceName",
    "Unconfirmed",
    "from_mapping",
    "load",
]
