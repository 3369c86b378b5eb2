"""Civitai backend: real and real-shaped response bodies (tests/fixtures/api-samples) parsed by the real client, file choice,
folder mapping, hash lookup, early access and login-required models."""

from __future__ import annotations

import hashlib
import json

import pytest

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search.civitai import (
    commercial_use,
    civitai_types_for,
    folder_for_civitai,
    parse_civitai_url,
    pick_file,
)
from fakehub import blob
from fakehub.fixtures import fake_hub, hub_config  # noqa: F401


def ref(filename, folder="checkpoints", **kw):
    return ModelReference(filename=filename, node_type="Loader", expected_type=folder.rstrip("s"),
                          expected_directory=folder, **kw)


@pytest.fixture
def search(hub_config):
    with ModelSearch(hub_config, backends=["civitai"]) as s:
        yield s


def sample(fixtures_dir, name):
    return (fixtures_dir / "api-samples" / "civitai" / name).read_bytes()


def test_search_body_exact_file(fake_hub, search, fixtures_dir):
    """A search body of the real shape (written for the tests: AutoV1/V2/V3, SHA256, CRC32, BLAKE3,
    several versions, non-primary and training-data files): the file is found by exact name."""
    body = sample(fixtures_dir, "models_search_checkpoints_written.json")
    fake_hub.inject("/api/v1/models", 200, body=body)
    (best, *_) = search.resolve(ref("riverstoneRealistic_v7.safetensors"))
    assert best.filename == "riverstoneRealistic_v7.safetensors" and best.confidence >= 0.9
    assert best.hash_sha256 == "d54622b2b2503e8fca726ffa6c1bc3848b2d49368d953230062a6788303ec7c1"
    assert best.size_bytes == round(2082642.474609375 * 1024)
    assert best.download_url == f"{fake_hub.civitai_url}/api/download/models/88001?fileId=66001"
    assert best.metadata["page_url"] == f"{fake_hub.civitai_url}/models/7101?modelVersionId=88001"
    assert best.metadata["version_id"] == 88001 and best.metadata["file_id"] == 66001
    assert best.metadata["fp"] == "fp16" and best.metadata["pickle"] is False
    assert best.directory == "checkpoints" and best.model_type == "checkpoint"
    assert "exact file name on Civitai" in best.reason
    # the query sent was derived from the file name, with the type filter of the folder
    (req,) = fake_hub.find_requests("/api/v1/models")
    assert "query=riverstone realistic" in req.query and "types=Checkpoint" in req.query


def test_drift_tolerated_null_stats_empty_files_numeric_cursor(fake_hub, search, fixtures_dir):
    body = json.loads(sample(fixtures_dir, "models_search_krea2_newest_2026-08_condensed.json"))
    body["metadata"] = {"nextCursor": 12345}
    fake_hub.inject("/api/v1/models", 200, body=body, times=None)
    results = search.resolve(ref("Pocahontas_Krea2_byKonan.safetensors", "loras"))
    assert results[0].filename == "Pocahontas_Krea2_byKonan.safetensors" and results[0].confidence >= 0.9
    assert results[0].metadata["downloads"] == 0


def test_doc_shaped_body_truncated_hash_and_string_licence(fake_hub, search, fixtures_dir):
    """The developer docs' shape: commercial use as a ``{a,b}`` string, hashes cut with ``...``."""
    fake_hub.inject("/api/v1/models", 200, body=sample(fixtures_dir, "models_search_doc_shape_written.json"), times=None)
    (best,) = search.resolve(ref("meadowIllustriousSDXL_v160.safetensors"))
    assert best.hash_sha256 is None  # "B7E41C09D2..." is not a sha256
    assert best.confidence >= 0.9
    item = json.loads(sample(fixtures_dir, "models_search_doc_shape_written.json"))["items"][0]
    fake_hub.inject("/api/v1/models/9301", 200, body=item)
    details = search.get_model_details("civitai", "9301")
    assert details.metadata["allow_commercial_use"] == ["Image", "RentCivit"]
    assert details.files[0]["name"] == "meadowIllustriousSDXL_v160.safetensors"


def test_real_model_body_details(fake_hub, search, fixtures_dir):
    fake_hub.inject("/api/v1/models/2833924", 200, body=sample(fixtures_dir, "model_2833924_2026-08.json"))
    details = search.get_model_details("civitai", 2833924)
    assert details.name == "Mihaila Krea" and details.model_type == "lora"
    assert details.metadata["allow_commercial_use"] == []
    assert details.files[0]["sha256"] == "5b4cd3d7db3e13e2e8bd8418921efd8e11c1f5559b43dc0be78522fee3f5fc5b"
    assert details.files[0]["download_url"].endswith("/api/download/models/3198110?fileId=3094942")
    assert details.page_url == f"{fake_hub.civitai_url}/models/2833924"


def test_hash_lookup_on_version_body(fake_hub, search, fixtures_dir):
    body = sample(fixtures_dir, "model_version_pickle_written.json")
    sha = "2E0FA958FCE4F25E023C94A86D74A48D0A0C9FF280C692729BCB5CB5B728817E"
    fake_hub.inject(f"/api/v1/model-versions/by-hash/{sha.lower()}", 200, body=body)
    (best,) = search.resolve(ref("whatever_it_was_called.ckpt", hash=sha.lower(), hash_type="sha256"))
    assert best.confidence == 1.0 and best.reason == "sha256 match on Civitai"
    assert best.filename == "pondStyle_frog.ckpt" and best.save_as == "whatever_it_was_called.ckpt"
    assert best.metadata["pickle"] is True and best.metadata["format"] == "PickleTensor"
    assert best.download_url.endswith("/api/download/models/1404?fileId=377")
    assert fake_hub.request_count("/api/v1/models") == 0  # no name search after a hash hit


def test_known_hash_via_resolve_argument(fake_hub, search):
    data = blob(3000, 7)
    ids = fake_hub.add_civitai_model("Some Lora", {"renamed_on_civitai.safetensors": data}, type="LORA")
    sha = hashlib.sha256(data).hexdigest()
    (best,) = search.resolve(ref("my_local_name.safetensors", "loras"), known_sha256=sha)
    assert best.confidence == 1.0 and best.hash_sha256 == sha
    assert best.metadata["file_id"] == ids.file_id and best.save_as == "my_local_name.safetensors"


def test_unknown_hash_falls_back_to_name(fake_hub, search):
    fake_hub.add_civitai_model("Detail Tweaker", {"detailTweaker_v10.safetensors": blob(100)}, type="LORA")
    results = search.resolve(ref("detailTweaker_v10.safetensors", "loras", hash="ff" * 32, hash_type="sha256"))
    assert results and results[0].confidence <= 0.55 and "differs" in results[0].reason


def test_type_mismatch_is_not_trusted(fake_hub, search):
    fake_hub.add_civitai_model("Cool Thing", {"coolThing_v1.safetensors": blob(100)}, type="LORA")
    (r,) = search.resolve(ref("coolThing_v1.safetensors", "embeddings"))
    assert r.confidence < 0.8 and "another folder" in r.reason
    assert r.directory == "embeddings"  # the folder comes from the reference
    (r,) = search.search("coolThing_v1.safetensors")
    assert r.directory == "loras" and r.confidence >= 0.85


def test_file_level_type_overrides_model_type(fake_hub, search):
    fake_hub.add_civitai_model("Big Checkpoint", {
        "bigCheckpoint_v1.safetensors": blob(100, 1),
        "bigCheckpoint_vae.safetensors": {"data": blob(50, 2), "type": "VAE"},
    })
    results = {r.filename: r for r in search.search("big checkpoint")}
    assert "bigCheckpoint_v1.safetensors" in results  # free text: the primary file
    vae, *others = search.resolve(ref("bigCheckpoint_vae.safetensors", "vae"))
    assert vae.filename == "bigCheckpoint_vae.safetensors" and vae.confidence >= 0.9
    assert all(o.confidence < 0.8 for o in others)  # the checkpoint file is only similar
    # without a folder the file's own type decides where it goes
    (found,) = [r for r in search.search("bigCheckpoint_vae.safetensors") if r.filename.endswith("_vae.safetensors")]
    assert found.directory == "vae"


def test_early_access_and_login_required_are_flagged(fake_hub, search):
    fake_hub.add_civitai_model("Early Model", {"earlyModel_v1.safetensors": blob(10)},
                               early_access_until="2099-01-01T00:00:00.000Z")
    fake_hub.add_civitai_model("Locked Model", {"lockedModel_v1.safetensors": blob(10)}, requires_auth=True)
    (early,) = search.resolve(ref("earlyModel_v1.safetensors"))
    assert early.metadata["early_access"] is True and early.metadata["requires_auth"] is True
    assert early.metadata["early_access_until"] == "2099-01-01T00:00:00.000Z"
    (locked,) = search.resolve(ref("lockedModel_v1.safetensors"))
    assert "token" not in locked.download_url


def test_pick_file_rules():
    files = [
        {"id": 1, "name": "m.ckpt", "type": "Model", "metadata": {"format": "PickleTensor", "fp": "fp32"}},
        {"id": 2, "name": "m.safetensors", "type": "Model", "metadata": {"format": "SafeTensor", "fp": "fp16"}},
        {"id": 3, "name": "data.zip", "type": "Training Data", "primary": True},
    ]
    assert pick_file(files)["id"] == 2  # no primary key at all: SafeTensor wins; training data never
    assert pick_file(files, precision="fp32")["id"] == 1
    files[0]["primary"] = True
    assert pick_file(files)["id"] == 1
    assert pick_file([{"id": 9, "name": "x.zip", "type": "Archive"}]) is None


def test_folder_mapping_and_helpers():
    assert folder_for_civitai("LORA") == "loras" and folder_for_civitai("LoCon") == "loras"
    assert folder_for_civitai("Checkpoint", "VAE") == "vae"
    assert folder_for_civitai("Workflows") is None
    assert set(civitai_types_for("loras")) == {"LORA", "LoCon", "DoRA"}
    assert civitai_types_for("unet") == ["UNet", "Checkpoint"]  # fine-tunes published as Checkpoint
    assert civitai_types_for("facerestore_models") == []
    assert commercial_use("{Image,RentCivit}") == ["Image", "RentCivit"]
    assert commercial_use(["Sell"]) == ["Sell"] and commercial_use(None) == []
    assert parse_civitai_url("https://civitai.com/api/download/models/176425?fileId=9&type=Model") == \
        {"version_id": 176425, "file_id": 9}
    assert parse_civitai_url("https://civitai.com/models/43331/majicmix?modelVersionId=176425") == \
        {"model_id": 43331, "version_id": 176425}


def test_download_urls_never_carry_the_token(fake_hub, tmp_path):
    from fakehub.fixtures import config_for_hub

    config = config_for_hub(fake_hub, tmp_path, civitai_token="civ-KEY-123")
    fake_hub.add_civitai_model("Token Test", {"tokenTest_v1.safetensors": blob(10)})
    with ModelSearch(config, backends=["civitai"]) as s:
        (r,) = s.resolve(ref("tokenTest_v1.safetensors"))
    assert "civ-KEY-123" not in json.dumps(r.to_dict())
    assert all(req.authorization == "Bearer civ-KEY-123" for req in fake_hub.find_requests(listener="civitai"))
