"""Request validation of the /comfyfixer/ routes: folders, file names, URLs, hashes."""

from __future__ import annotations

import os

import pytest

from comfyfixersmart.errors import HostNotAllowedError, UnsafePathError, ValidationError, WorkflowParseError
from comfyfixersmart.service.validation import (
    check_download_url,
    optional_min_confidence,
    parse_json_body,
    require_workflow,
    validate_download_item,
    validate_download_items,
)

URL = "https://huggingface.co/org/repo/resolve/main/model.safetensors"


@pytest.fixture
def folders(tmp_path):
    a = tmp_path / "models" / "checkpoints"
    b = tmp_path / "extra" / "checkpoints"
    d = tmp_path / "models" / "diffusion_models"
    for p in (a, b, d):
        p.mkdir(parents=True)
    return {"checkpoints": [str(a), str(b)], "diffusion_models": [str(d)], "loras": [],
            "custom_nodes": [str(tmp_path / "custom_nodes")]}


@pytest.fixture
def config(make_config):
    return make_config()


def item(**kw):
    base = {"filename": "sd15/model.safetensors", "directory": "checkpoints", "url": URL}
    base.update(kw)
    return base


def test_valid_item_keeps_subfolder_and_uses_first_path(folders, config):
    spec = validate_download_item(item(sha256="AB" * 32, size=123), folders, config)
    assert spec.directory == "checkpoints"
    assert spec.filename == "sd15/model.safetensors"
    assert spec.save_path == os.path.join(folders["checkpoints"][0], "sd15", "model.safetensors")
    assert spec.sha256 == "ab" * 32 and spec.size == 123
    assert spec.key == "checkpoints/sd15/model.safetensors"


def test_folder_index_picks_another_path_of_the_key(folders, config):
    spec = validate_download_item(item(folder_index=1), folders, config)
    assert spec.save_path.startswith(folders["checkpoints"][1] + os.sep)
    with pytest.raises(ValidationError, match="out of range"):
        validate_download_item(item(folder_index=2), folders, config)
    with pytest.raises(ValidationError):
        validate_download_item(item(folder_index="1"), folders, config)


def test_legacy_folder_names_are_mapped(folders, config):
    spec = validate_download_item(item(directory="unet", filename="flux.safetensors"), folders, config)
    assert spec.directory == "diffusion_models"


@pytest.mark.parametrize("directory", ["no/pe", "..", "../checkpoints", "unknown", "", None, 5, "custom_nodes",
                                       "CUSTOM_NODES", "a b", "nul", "x.", "-rf", "\u212a", "x" * 101])
def test_malformed_or_forbidden_folder_rejected(folders, config, directory):
    with pytest.raises(ValidationError):
        validate_download_item(item(directory=directory), folders, config)


@pytest.mark.parametrize("key", ["background_removal", "geometry_estimation", "LLM", "frame_interpolation"])
def test_a_folder_key_comfyui_does_not_list_goes_to_models_key(folders, config, key, tmp_path):
    spec = validate_download_item(item(directory=key, filename="sub/net.safetensors"), folders, config)
    assert spec.directory == key
    assert spec.save_path == str(tmp_path / "models" / key / "sub" / "net.safetensors")


def test_a_new_folder_key_needs_a_known_models_root(config, tmp_path):
    with pytest.raises(ValidationError, match="no models folder"):
        validate_download_item(item(directory="background_removal"), {"checkpoints": [str(tmp_path / "ckpts")]}, config)


def test_folder_without_path_rejected(folders, config):
    with pytest.raises(ValidationError, match="no path"):
        validate_download_item(item(directory="loras"), folders, config)


@pytest.mark.parametrize("name", [
    "../escape.safetensors", "..\\escape.safetensors", "/abs/model.safetensors", "C:\\x\\m.safetensors",
    "a/../../m.safetensors", "", "nul.safetensors", "bad\0name.safetensors",
])
def test_file_names_must_stay_inside_the_folder(folders, config, name):
    with pytest.raises(UnsafePathError):
        validate_download_item(item(filename=name), folders, config)


def test_symlink_leaving_the_folder_rejected(folders, config, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(folders["checkpoints"][0], "link"))
    with pytest.raises(UnsafePathError):
        validate_download_item(item(filename="link/model.safetensors"), folders, config)


def test_non_model_extension_rejected(folders, config):
    with pytest.raises(ValidationError, match="extension"):
        validate_download_item(item(filename="evil.py"), folders, config)


@pytest.mark.parametrize("url", [
    "ftp://huggingface.co/x.safetensors", "file:///etc/passwd", "https://evil.example/x.safetensors",
    "https://user:pw@huggingface.co/x.safetensors", "https://civitai.com/api/download/models/1?token=abc",
    "javascript:alert(1)", "", None, 7,
])
def test_bad_urls_rejected(folders, config, url):
    with pytest.raises((HostNotAllowedError, ValidationError)):
        validate_download_item(item(url=url), folders, config)


def test_allowed_hosts_include_configured_endpoints(make_config):
    config = make_config(hf_endpoint="http://127.0.0.1:9999")
    assert check_download_url("http://127.0.0.1:9999/r/resolve/main/m.safetensors", config)
    assert check_download_url("https://cdn-lfs.hf.co/x?X-Amz-Signature=1", config)


@pytest.mark.parametrize("field,value", [("sha256", "xyz"), ("sha256", "ab" * 31), ("size", -1),
                                         ("size", "10"), ("size", True)])
def test_bad_hash_or_size_rejected(folders, config, field, value):
    with pytest.raises(ValidationError, match=field):
        validate_download_item(item(**{field: value}), folders, config)


def test_items_list_checks(folders, config):
    with pytest.raises(ValidationError):
        validate_download_items([], folders, config)
    with pytest.raises(ValidationError):
        validate_download_items({"a": 1}, folders, config)
    with pytest.raises(ValidationError, match=r"items\[1\]"):
        validate_download_items([item(), item(filename="../x.safetensors")], folders, config)
    with pytest.raises(ValidationError, match="same file"):
        validate_download_items([item(), item()], folders, config)
    specs = validate_download_items([item(), item(filename="other.safetensors")], folders, config)
    assert [s.filename for s in specs] == ["sd15/model.safetensors", "other.safetensors"]


def test_json_body_parsing():
    assert parse_json_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"", b"   ", b"[1]", b"{bad", b"\xff\xfe"):
        with pytest.raises(ValidationError):
            parse_json_body(raw)


def test_workflow_and_min_confidence():
    assert require_workflow({"workflow": {"nodes": []}}) == {"nodes": []}
    for body in ({}, {"workflow": "x"}, {"workflow": [1]}):
        with pytest.raises(WorkflowParseError):
            require_workflow(body)
    assert optional_min_confidence({}) is None
    assert optional_min_confidence({"min_confidence": 0.95}) == 0.95
    for bad in (1.5, -0.1, "0.9", True):
        with pytest.raises(ValidationError):
            optional_min_confidence({"min_confidence": bad})


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PARTS = st.sampled_from(["..", ".", "", "a", "b c", "CON", "x:y", "\\", "/", "~", "%2e%2e", "\u2025", "sub"])


# the fixtures are only read (a temp root and a Config), so sharing them across inputs is fine
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.one_of(_PARTS, st.text(max_size=12)), min_size=1, max_size=6),
       sep=st.sampled_from(["/", "\\"]))
def test_any_accepted_name_lands_inside_its_folder(tmp_path_factory, make_config, parts, sep):
    root = tmp_path_factory.getbasetemp() / "prop" / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = sep.join(parts) + ".safetensors"
    try:
        spec = validate_download_item({"filename": name, "directory": "checkpoints", "url": URL},
                                      {"checkpoints": [str(root)]}, make_config())
    except ValidationError:  # UnsafePathError included
        return
    resolved = os.path.realpath(spec.save_path)
    assert os.path.commonpath([resolved, os.path.realpath(root)]) == os.path.realpath(root)
    assert ".." not in spec.filename.split("/")
