"""What stages exchange, public: where each artifact lives, and the log tables' contract.

- ``raymlops.contracts.storage`` (re-exported here): every persistent
  artifact's location, derived from one storage home that may be a URI.
- ``raymlops.contracts.logs``: the inference log's and feedback's columns,
  schemas and table properties (it needs the config and the data stage, so it
  is imported by name: ``from raymlops.contracts.logs import ...``).

This package's ``__init__`` imports nothing but ``storage``, so the config may use it.
"""

from raymlops.contracts.storage import (
    OBJECT_STORE_SCHEMES,
    StorageLocations,
    is_remote,
    join,
    normalise_home,
    scheme_of,
)

__all__ = [
    "OBJECT_STORE_SCHEMES",
    "StorageLocations",
    "is_remote",
    "join",
    "normalise_home",
    "scheme_of",
]
