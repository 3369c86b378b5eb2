"""An official template with its ``models`` metadata removed resolves through the bundled
known-model index alone: the files Hugging Face's search cannot find (issue 8)."""

from __future__ import annotations

import hashlib
import json

from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search.known_models import KnownModelIndex
from templates_support import TEMPLATE, stripped, template_models
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401


def test_the_bundled_index_lists_every_file_of_the_template():
    wf = json.loads(TEMPLATE.read_text())
    index = KnownModelIndex()
    for m in template_models(wf):
        hits = index.lookup(m["name"], m["directory"])
        assert any(h.url == m["url"] for h in hits), (m, hits)


def test_stripped_template_resolves_from_the_index_without_any_search(fake_hub, tmp_path):  # noqa: F811
    wf = json.loads(TEMPLATE.read_text())
    served = {}
    for i, m in enumerate(template_models(wf)):
        repo, path = m["url"].split("huggingface.co/", 1)[1].split("/resolve/main/", 1)
        data = blob(1000 + i, seed=40 + i)
        fake_hub.add_hf_file(repo, path, data) if repo in fake_hub.hf_repos else fake_hub.add_hf_repo(repo, {path: data})
        served[m["name"]] = hashlib.sha256(data).hexdigest()
    # a decoy: the same VAE name with other bytes in a community repo (search would find it)
    fake_hub.add_hf_repo("someone/ae-vae-merge", {"ae.safetensors": blob(1000, seed=99)}, downloads=10**6)
    refs = WorkflowScanner().scan_data(stripped(wf)).model_references
    assert sorted(r.filename for r in refs) == sorted(served)
    assert not any(r.url for r in refs)
    with ModelSearch(config_for_hub(fake_hub, tmp_path)) as search:  # the bundled index
        out = search.resolve_many(refs)
    for res in out:
        best = res.choose()
        assert best is not None and best.backend == "index", res.to_dict()
        assert best.hash_sha256 == served[res.reference.filename]
        assert "official templates" in best.reason and "confirmed on the hub" in best.reason
        assert best.download_url.startswith(fake_hub.hf_url + "/")
    # the index was decisive: neither hub was searched
    assert fake_hub.request_count("/api/models*") == 0 and fake_hub.request_count("/api/v1/*") == 0
