"""``comfyfixer fix --retry-failed``: the failed downloads recorded in the state database (issue 11.6)."""

from __future__ import annotations

import json


from fakehub.fixtures import fake_hub  # noqa: F401
from test_core_support import MY_VAE, build_world, cli_world, run_cli  # noqa: F401




def test_retry_failed_downloads_what_failed_last_time(capsys, world, fake_hub):  # noqa: F811
    fault = fake_hub.inject("*other_name.safetensors", status=503, times=1000, method="GET")
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes", "--json")
    assert code == 1
    assert not (world.models / "vae" / "my_vae.safetensors").exists()
    assert fault.hits >= 1
    # nothing to ask and nothing resolved again: only the recorded failures are fetched
    fake_hub.clear_faults()
    fake_hub.clear_log()
    code, out, _ = run_cli(capsys, "fix", "--retry-failed", "--comfyui-root", world.root, "--dry-run", "--json")
    plan = json.loads(out)["plan"]
    assert code == 1 and [p["filename"] for p in plan] == ["my_vae.safetensors"]
    code, out, _ = run_cli(capsys, "fix", "--retry-failed", "--comfyui-root", world.root)
    assert code == 0, out
    assert (world.models / "vae" / "my_vae.safetensors").read_bytes() == MY_VAE
    assert not any("/api/" in r.path for r in fake_hub.requests)  # no search was made
    code, out, _ = run_cli(capsys, "fix", "--retry-failed", "--comfyui-root", world.root)
    assert code == 0 and "no failed download to retry" in out


def test_fix_needs_a_workflow_or_retry_failed(capsys):
    code, _, err = run_cli(capsys, "fix")
    assert code == 2 and "--retry-failed" in err
