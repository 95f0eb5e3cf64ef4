# Sourced by scripts/demo and scripts/test: a virtual environment with consentgate installed.
# Re-installs only when pyproject.toml or the requested extras change, so repeated runs are fast.
# Usage: EXTRAS="dev,fides" . scripts/bootstrap.sh

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CONSENTGATE_VENV:-$ROOT/.venv}"
EXTRAS="${EXTRAS:-}"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)" || {
    echo "consentgate needs Python >= 3.11; installing Debian's python3 ..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq python3 python3-venv >/dev/null
    PY="$(find_python)" || { echo "error: no Python >= 3.11 available" >&2; exit 1; }
  }
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian splits venv support into its own package.
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  fi
fi

stamp="$VENV/.consentgate-install"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) extras=$EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing consentgate${EXTRAS:+[$EXTRAS]} into $VENV ..." >&2
  log="$VENV/pip-install.log"
  spec="$ROOT"; [ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
  torch_first=true
  case ",$EXTRAS," in
    # torch==2.13.0 is the CPU build that lies on this machine's disk (pip's find-links); any other
    # release resolves to a CUDA build of several GB from PyPI.
    *,torch,*) torch_first() { "$VENV/bin/python" -c "import torch" 2>/dev/null ||
                 "$VENV/bin/python" -m pip install --disable-pip-version-check "torch==2.13.0"; }
               torch_first=torch_first ;;
  esac
  if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check -U pip &&
         $torch_first &&
         "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$spec"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "error: installing consentgate failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
