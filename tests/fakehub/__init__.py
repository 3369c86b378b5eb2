"""A fake Civitai + Hugging Face hub on loopback for tests (see README.md).

    from fakehub import FakeHub
    from fakehub.fixtures import fake_hub, hub_config   # pytest fixtures
"""

from .hub import FakeHub, Fault, RequestRecord
from .registry import CivitaiIds, HfFile, HfRepo, blob, civitai_hashes, git_blob_oid

__all__ = ["FakeHub", "Fault", "RequestRecord", "CivitaiIds", "HfFile", "HfRepo", "blob", "civitai_hashes",
           "git_blob_oid"]
