#!/usr/bin/env bash
# Installs the tools that validate Cascade's shipped deployment, at the versions pinned in
# deploy/tools/versions.env, into a cache outside the repository (idempotent: an installed tool
# is reused; a half-finished build is never taken for a finished one).
#
#   deploy/tools/install.sh [compose] [helm] [kubeconform] [k8s-schemas] [all]   (default: all)
#
# What it makes, under CASCADE_TOOLS_CACHE (default ~/.cache/cascade/tools):
#   docker/cli-plugins/docker-compose   docker compose, built from its Go module
#                                       (use it with DOCKER_CONFIG=<cache>/docker, or standalone)
#   bin/helm-<version>                  helm, built from helm.sh/helm/v3/cmd/helm
#   bin/kubeconform-<version>           kubeconform, built from its Go module
#   k8s-schemas/<version>/v<k8s>-local-strict/*.json
#                                       strict Kubernetes JSON schemas from the kubernetes-validate
#                                       wheel (PyPI, sha256-checked), with their references made
#                                       file-relative so kubeconform reads them offline
#   go/{mod,build}                      the Go module and build caches
# On stdout, one NAME=VALUE line per installed tool (COMPOSE=, DOCKER_CONFIG=, HELM=,
# KUBECONFORM=, K8S_SCHEMAS=); progress goes to stderr.
#
# Needs: go (the machine's; GOTOOLCHAIN=local), python3 (its pip, or a throwaway venv's), and
# the Go module proxy and PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

cache="${CASCADE_TOOLS_CACHE:-$HOME/.cache/cascade/tools}"
mkdir -p "$cache/bin"
cache="$(cd "$cache" && pwd)"

log() { printf 'deploy/tools: %s\n' "$*" >&2; }
scratch=()
cleanup() { if [ ${#scratch[@]} -gt 0 ]; then rm -rf "${scratch[@]}"; fi; }
trap cleanup EXIT
die() { log "ERROR: $*"; exit 1; }

go_env() {
    export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly"
    command -v go >/dev/null || die "go is not installed (the machine's Go builds these tools)"
}

# The unpacked source of a module version (downloaded once into the module cache).
module_dir() { # module_dir MODULE VERSION
    local dir
    go_env
    dir="$(go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -n "$dir" ] && [ -f "$dir/go.mod" ] || die "go mod download $1@$2 failed"
    echo "$dir"
}

# Builds a module's main package as its own main module (a plain `go install pkg@version` refuses
# modules whose go.mod has replace/exclude directives, as docker compose's has). The module's own
# go.sum pins every dependency; the Go checksum database verifies the module itself.
build_module() { # build_module MODULE VERSION PACKAGE OUTPUT [LDFLAGS]
    local module="$1" version="$2" package="$3" output="$4" ldflags="${5:-}"
    local dir work started
    started=$SECONDS
    go_env
    log "building $module@$version ($package): first time on this machine takes a few minutes"
    dir="$(module_dir "$module" "$version")"
    work="$(mktemp -d "$cache/build.XXXXXX")"
    scratch+=("$work")
    cp -R "$dir/." "$work/src"
    chmod -R u+w "$work/src"
    (cd "$work/src" && nice -n 10 go build -ldflags "-s -w $ldflags" -o "$work/out" "$package") \
        || die "building $module@$version failed"
    mkdir -p "$(dirname "$output")"
    mv -f "$work/out" "$output"
    log "built $output in $((SECONDS - started))s"
}

install_compose() {
    local out="$cache/docker/cli-plugins/docker-compose"
    local stamp="$out.version"
    if [ ! -x "$out" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$COMPOSE_VERSION" ]; then
        build_module "$COMPOSE_MODULE" "$COMPOSE_VERSION" ./cmd "$out" \
            "-X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION"
        echo "$COMPOSE_VERSION" > "$stamp"
    fi
    echo "COMPOSE=$out"
    echo "DOCKER_CONFIG=$cache/docker"
}

install_helm() {
    local out="$cache/bin/helm-$HELM_VERSION"
    if [ ! -x "$out" ]; then
        # As helm's Makefile does: the default Kubernetes version (for `helm template` and
        # `helm lint`, and the chart's kubeVersion check) is that of the client-go it is built with.
        local minor
        go_env
        minor="$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' \
            "$(module_dir "$HELM_MODULE" "$HELM_VERSION")/go.mod")"
        [ -n "$minor" ] || die "cannot read the client-go version of $HELM_MODULE@$HELM_VERSION"
        local flags="-X $HELM_MODULE/internal/version.version=$HELM_VERSION"
        local pkg
        for pkg in pkg/lint/rules pkg/chartutil; do
            flags+=" -X $HELM_MODULE/$pkg.k8sVersionMajor=1 -X $HELM_MODULE/$pkg.k8sVersionMinor=$minor"
        done
        build_module "$HELM_MODULE" "$HELM_VERSION" ./cmd/helm "$out" "$flags"
    fi
    echo "HELM=$out"
}

install_kubeconform() {
    local out="$cache/bin/kubeconform-$KUBECONFORM_VERSION"
    if [ ! -x "$out" ]; then
        build_module "$KUBECONFORM_MODULE" "$KUBECONFORM_VERSION" ./cmd/kubeconform "$out"
    fi
    echo "KUBECONFORM=$out"
}

install_k8s_schemas() {
    local root="$cache/k8s-schemas/$KUBERNETES_VALIDATE_VERSION"
    local stamp="$root/.complete"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$KUBERNETES_SCHEMA_VERSIONS" ]; then
        local python="${PYTHON:-python3}" work wheel
        command -v "$python" >/dev/null || die "$python is not installed"
        work="$(mktemp -d "$cache/schemas.XXXXXX")"
        scratch+=("$work")
        log "downloading kubernetes-validate $KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas) from PyPI"
        printf 'kubernetes-validate==%s --hash=sha256:%s\n' \
            "$KUBERNETES_VALIDATE_VERSION" "$KUBERNETES_VALIDATE_SHA256" > "$work/requirements.txt"
        local pip=("$python" -m pip)
        if ! "${pip[@]}" --version >/dev/null 2>&1; then
            # a virtualenv without pip (uv's): a throwaway one that has it (ensurepip)
            "$python" -m venv "$work/venv" || die "$python has no pip, and python -m venv failed"
            pip=("$work/venv/bin/python" -m pip)
        fi
        "${pip[@]}" download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: --require-hashes -r "$work/requirements.txt" -d "$work" \
            || die "pip download kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
        wheel="$(ls "$work"/kubernetes_validate-*.whl)"
        "$python" - "$wheel" "$work/schemas" $KUBERNETES_SCHEMA_VERSIONS <<'PY'
import json, sys, zipfile
from pathlib import Path

wheel, out, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
prefix = "kubernetes_validate/kubernetes-json-schema/"
with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    for version in versions:
        folder = f"v{version}-local-strict/"
        members = [n for n in names if n.startswith(prefix + folder) and n.endswith(".json")]
        if not members:
            sys.exit(f"the wheel has no schemas for Kubernetes {version}")
        target = out / folder
        target.mkdir(parents=True)
        for name in members:
            schema = json.loads(archive.read(name))
            # The schemas refer to "/api/_definitions.json" under an https $id; made relative to the
            # file (and the $id dropped), kubeconform resolves them on disk, never on the network.
            schema.pop("$id", None)
            text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
            (target / name[len(prefix + folder):]).write_text(text)
PY
        rm -rf "$root"
        mkdir -p "$(dirname "$root")"
        mv "$work/schemas" "$root"
        echo "$KUBERNETES_SCHEMA_VERSIONS" > "$stamp"
        log "Kubernetes schemas $KUBERNETES_SCHEMA_VERSIONS in $root"
    fi
    echo "K8S_SCHEMAS=$root"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all)
for target in "${targets[@]}"; do
    case "$target" in
        compose) install_compose ;;
        helm) install_helm ;;
        kubeconform) install_kubeconform ;;
        k8s-schemas) install_k8s_schemas ;;
        all) install_compose; install_helm; install_kubeconform; install_k8s_schemas ;;
        *) die "unknown tool '$target' (compose, helm, kubeconform, k8s-schemas, all)" ;;
    esac
done
