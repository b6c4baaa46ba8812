"""The header every sfsc-deploy file carries, written and checked in one place.

Checkpoints, sliced models, galleries, export manifests and device tables each start with
``{"format": ..., "format_version": ..., "tool_version": ...}``. ``FileFormat.header()`` writes it;
``FileFormat.check()`` refuses a file of another kind, a damaged header or one from a newer tool
with one clear line (never an ``assert``, which ``python -O`` would remove).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sfsc_deploy import __version__
from sfsc_deploy.errors import SfscError


@dataclass(frozen=True)
class FileFormat:
    name: str  # the value of "format", e.g. sfsc-deploy/gallery
    version: int
    what: str  # how messages name it, e.g. "gallery file"
    refusal: str  # what a file of another kind is told, e.g. "is not a readable gallery file"
    fix: str  # how to get a good one, e.g. "re-run `sfsc-deploy extract`"

    def header(self) -> dict[str, Any]:
        return {"format": self.name, "format_version": self.version, "tool_version": __version__}

    def check(self, data: Any, source: object) -> Mapping[str, Any]:
        """``data`` if it is this format at a version this tool reads; else one clear error."""
        if not isinstance(data, Mapping) or data.get("format") != self.name:
            raise SfscError(f"{source} {self.refusal}; {self.fix}")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SfscError(f"{source} has a damaged {self.what} header; {self.fix}")
        if version > self.version:
            raise SfscError(
                f"{source} was written by a newer sfsc-deploy ({self.what} format {version}); "
                f"upgrade sfsc-deploy to read it"
            )
        return data


CHECKPOINT = FileFormat(
    "sfsc-deploy/checkpoint",
    2,  # 2: the header carries its own sha256
    "checkpoint",
    "is not an sfsc-deploy checkpoint",
    "create one with `sfsc-deploy init` or `sfsc-deploy train`",
)
SLICED = FileFormat(
    "sfsc-deploy/sliced",
    1,
    "sliced model",
    "is not a valid sliced-model description",
    "re-run `sfsc-deploy slice`",
)
GALLERY = FileFormat(
    "sfsc-deploy/gallery", 1, "gallery file", "is not a readable gallery file", "re-run `sfsc-deploy extract`"
)
GALLERY_SHARDS = FileFormat(
    "sfsc-deploy/gallery-shards",
    1,
    "gallery manifest",
    "is not a gallery manifest",
    "re-run `sfsc-deploy extract`",
)
MANIFEST = FileFormat(
    "sfsc-deploy/export-manifest",
    1,
    "export manifest",
    "is not an export manifest",
    "re-run `sfsc-deploy export`",
)
DEVICE_TABLE = FileFormat(
    "sfsc-deploy/device-table",
    1,
    "device table",
    "is not a device table",
    "create one with `sfsc-deploy profile`",
)
SEARCH_RESULTS = FileFormat(
    "sfsc-deploy/search-results",
    1,
    "search results file",
    "is not a search results file",
    "re-run `sfsc-deploy search`",
)
