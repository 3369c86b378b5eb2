"""Download scripts (bash and PowerShell) for people who fetch models themselves.

The scripts use curl (``curl.exe`` ships with Windows 10+): ``--fail --location
--continue-at -`` into ``<file>.part``, a sha256 check (``sha256sum -c`` /
``Get-FileHash``), then a rename.  A token is never written into the script: it is read
from ``$CIVITAI_API_TOKEN`` / ``$HF_TOKEN`` at run time and handed to curl on stdin
(``--config -``) so it does not show in ``ps`` either; curl (>= 7.58) does not forward a
custom Authorization header to another host on redirect.
"""

from __future__ import annotations

import shlex
import string
import time
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional
from urllib.parse import urlsplit

from ..errors import ValidationError
from ..security import check_url, strip_secret_params, validate_relative_path
from .verify import parse_sha256

@dataclass
class ScriptItem:
    url: str
    #: ``folder/sub/name.ext`` relative to the models dir, or an absolute path
    dest: str
    absolute: bool
    sha256: Optional[str]
    token_var: Optional[str]


def generate_script(models: Iterable[Any], config, *, template: Optional[str] = None, shell: str = "bash") -> str:
    """The text of a bash (``shell="bash"``) or PowerShell (``"powershell"``) script.

    ``models``: dicts (``url``, ``filename``, ``directory``, ``sha256`` or an absolute
    ``save_path``), ``SearchResult``s or anything with those attributes.  ``template`` is a
    ``string.Template`` that may use ``${header}``, ``${helpers}``, ``${commands}``,
    ``${footer}``, ``${models_dir}`` and ``${count}``.
    """
    shell = shell.lower()
    if shell in ("pwsh", "ps1", "ps"):
        shell = "powershell"
    if shell not in ("bash", "powershell"):
        raise ValidationError(f"shell must be 'bash' or 'powershell', not {shell!r}")
    items = [_item(m, config) for m in models]
    models_dir = str(config.models_dir() or config.output_dir)
    parts = _bash(items, models_dir) if shell == "bash" else _powershell(items, models_dir)
    parts.update(models_dir=models_dir, count=str(len(items)))
    default = _BASH_TEMPLATE if shell == "bash" else _PS_TEMPLATE
    return string.Template(template if template is not None else default).safe_substitute(parts)


def _get(model: Any, *names: str) -> Any:
    for name in names:
        value = model.get(name) if isinstance(model, Mapping) else getattr(model, name, None)
        if value not in (None, ""):
            return value
    return None


def _item(model: Any, config) -> ScriptItem:
    url = _get(model, "url", "download_url")
    if not isinstance(url, str):
        raise ValidationError("every model needs a download url")
    url = check_url(strip_secret_params(url.strip(), keep_signatures=True))
    sha = parse_sha256(_get(model, "sha256", "hash_sha256", "hash"))
    save_path = _get(model, "save_path")
    if save_path:
        dest, absolute = str(save_path), True
        if any(c in dest for c in "\0\r\n"):
            raise ValidationError("save_path contains control characters")
    else:
        name = _get(model, "save_as", "filename")
        if not name:
            name = urlsplit(url).path.rsplit("/", 1)[-1]
        rel = validate_relative_path(str(name))
        directory = _get(model, "directory", "expected_directory")
        dest = validate_relative_path(f"{directory}/{rel}") if directory else rel
        absolute = False
    return ScriptItem(url=url, dest=dest, absolute=absolute, sha256=sha, token_var=_token_var(url, config))


def _token_var(url: str, config) -> Optional[str]:
    """The environment variable whose token this URL's host may receive (same rule as
    ``security.auth_headers_for``)."""
    host = (urlsplit(url).hostname or "").lower()
    for base, var in ((config.civitai_base_url, "CIVITAI_API_TOKEN"), (config.hf_endpoint, "HF_TOKEN")):
        if host == (urlsplit(base).hostname or "").lower() and urlsplit(url).port == urlsplit(base).port:
            return var
    return None


def _header_lines(items: List[ScriptItem], comment: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    needs = sorted({i.token_var for i in items if i.token_var})
    lines = [f"{comment} Downloads {len(items)} model file(s) that ComfyFixerSmart found missing.",
             f"{comment} Generated {stamp}. Needs curl. Re-running resumes unfinished files."]
    if needs:
        lines.append(f"{comment} Tokens are read from the environment, never stored here: "
                     + ", ".join(needs))
    return "\n".join(lines)


# -- bash -----------------------------------------------------------------------------------

_BASH_TEMPLATE = """#!/usr/bin/env bash
${header}
set -u
MODELS_DIR="$${MODELS_DIR:-${models_dir_q}}"
failed=0

${helpers}

${commands}

${footer}
"""

_BASH_HELPERS = r"""# sha256_ok FILE HASH: does FILE hash to HASH?
sha256_ok() {
  if command -v sha256sum >/dev/null 2>&1; then
    printf '%s  %s\n' "$2" "$1" | sha256sum -c --status -
  else
    printf '%s  %s\n' "$2" "$1" | shasum -a 256 -c -s -
  fi
}

# curl_get URL OUT TOKEN [extra curl args...]: the token goes to curl on stdin, not argv
curl_get() {
  local url="$1" out="$2" token="$3"; shift 3
  if [ -n "$token" ]; then
    printf 'header = "Authorization: Bearer %s"\n' "$token" |
      curl --config - --fail --location --silent --show-error --retry 5 --retry-delay 2 "$@" --output "$out" -- "$url"
  else
    curl --fail --location --silent --show-error --retry 5 --retry-delay 2 "$@" --output "$out" -- "$url"
  fi
}

# fetch URL DEST SHA256 TOKEN_VARIABLE
fetch() {
  local url="$1" dest="$2" sha="$3" token_var="$4"
  local part="$dest.part" token="" rc=0
  if [ -n "$token_var" ]; then token="${!token_var:-}"; fi
  mkdir -p "$(dirname "$dest")" || return 1
  if [ -e "$dest" ]; then
    if [ -z "$sha" ] || sha256_ok "$dest" "$sha"; then echo "present: $dest"; return 0; fi
    echo "exists with another sha256, not overwritten: $dest" >&2; return 1
  fi
  echo "downloading: $dest"
  curl_get "$url" "$part" "$token" --continue-at - || rc=$?
  if [ "$rc" -eq 33 ] || [ "$rc" -eq 36 ]; then
    # the server cannot resume this part: start it over
    rm -f -- "$part"; rc=0
    curl_get "$url" "$part" "$token" || rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    echo "download failed (curl exit $rc): $dest" >&2
    [ "$rc" -eq 22 ] && [ -z "$token" ] && [ -n "$token_var" ] && echo "  hint: export $token_var" >&2
    return 1
  fi
  if [ -n "$sha" ] && ! sha256_ok "$part" "$sha"; then
    rm -f -- "$part"; echo "sha256 mismatch, removed: $dest" >&2; return 1
  fi
  mv -f -- "$part" "$dest" && echo "done: $dest"
}"""


def _bash(items: List[ScriptItem], models_dir: str) -> dict:
    commands = []
    for item in items:
        dest = shlex.quote(item.dest) if item.absolute else '"$MODELS_DIR"/' + shlex.quote(item.dest)
        commands.append("fetch {} {} {} {} || failed=$((failed + 1))".format(
            shlex.quote(item.url), dest, shlex.quote(item.sha256 or ""), shlex.quote(item.token_var or "")))
    footer = ('if [ "$failed" -gt 0 ]; then echo "$failed download(s) failed" >&2; exit 1; fi\n'
              'echo "all downloads done"')
    # models_dir sits inside "${MODELS_DIR:-...}": escape what double quotes would expand
    escaped = models_dir.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return dict(header=_header_lines(items, "#"), helpers=_BASH_HELPERS, commands="\n".join(commands),
                footer=footer, models_dir_q=escaped)


# -- PowerShell -----------------------------------------------------------------------------

_PS_TEMPLATE = """${header}
$$ErrorActionPreference = 'Continue'
$$ModelsDir = if ($$env:MODELS_DIR) { $$env:MODELS_DIR } else { ${models_dir_q} }
$$failed = 0

${helpers}

${commands}

${footer}
"""

_PS_HELPERS = r"""# curl.exe: Windows 10+ ships it ("curl" alone is an Invoke-WebRequest alias in Windows PowerShell)
$Curl = if ($IsWindows -or $env:OS -eq 'Windows_NT') { 'curl.exe' } else { 'curl' }

function Invoke-Curl([string]$Url, [string]$Out, [string]$Token, [string[]]$Extra) {
  $curlArgs = @('--fail', '--location', '--silent', '--show-error', '--retry', '5', '--retry-delay', '2') + $Extra + @('--output', $Out, '--', $Url)
  if ($Token) {
    # the token goes to curl on stdin (--config -), not on its command line
    "header = `"Authorization: Bearer $Token`"" | & $Curl --config - @curlArgs
  } else {
    & $Curl @curlArgs
  }
  return $LASTEXITCODE
}

function Get-Model([string]$Url, [string]$Dest, [string]$Sha256, [string]$TokenVar) {
  $part = "$Dest.part"
  $token = if ($TokenVar) { [Environment]::GetEnvironmentVariable($TokenVar) } else { $null }
  New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Dest) | Out-Null
  if (Test-Path -LiteralPath $Dest) {
    if (-not $Sha256 -or (Get-FileHash -Algorithm SHA256 -LiteralPath $Dest).Hash -eq $Sha256) { Write-Host "present: $Dest"; return $true }
    Write-Warning "exists with another sha256, not overwritten: $Dest"; return $false
  }
  Write-Host "downloading: $Dest"
  $rc = Invoke-Curl $Url $part $token @('--continue-at', '-')
  if ($rc -eq 33 -or $rc -eq 36) { Remove-Item -LiteralPath $part -Force -ErrorAction SilentlyContinue; $rc = Invoke-Curl $Url $part $token @() }
  if ($rc -ne 0) { Write-Warning "download failed (curl exit $rc): $Dest"; return $false }
  if ($Sha256 -and (Get-FileHash -Algorithm SHA256 -LiteralPath $part).Hash -ne $Sha256) {
    Remove-Item -LiteralPath $part -Force; Write-Warning "sha256 mismatch, removed: $Dest"; return $false
  }
  Move-Item -LiteralPath $part -Destination $Dest -Force
  Write-Host "done: $Dest"
  return $true
}"""


#: PowerShell ends a '...' string at any of these, not just the ASCII apostrophe: a file name
#: with a typographic quote (U+2019) would otherwise end the string and run the rest as code.
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def _ps_quote(text: str) -> str:
    """A PowerShell single-quoted literal of ``text`` (every quote character doubled)."""
    return "'" + "".join(c + c if c in _PS_QUOTES else c for c in text) + "'"


def _powershell(items: List[ScriptItem], models_dir: str) -> dict:
    commands = []
    for item in items:
        dest = _ps_quote(item.dest) if item.absolute else f"(Join-Path $ModelsDir {_ps_quote(item.dest)})"
        commands.append("if (-not (Get-Model {} {} {} {})) {{ $failed++ }}".format(
            _ps_quote(item.url), dest, _ps_quote(item.sha256 or ""), _ps_quote(item.token_var or "")))
    footer = ('if ($failed -gt 0) { Write-Error "$failed download(s) failed"; exit 1 }\n'
              'Write-Host "all downloads done"')
    return dict(header=_header_lines(items, "#"), helpers=_PS_HELPERS, commands="\n".join(commands),
                footer=footer, models_dir_q=_ps_quote(models_dir))
