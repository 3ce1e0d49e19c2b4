#!/usr/bin/env bash
# Checks the YAML that nothing on this machine can run, offline:
#   - compose/docker-compose.yml against the Compose Specification JSON schema,
#   - every .github/workflows/*.yml against the GitHub workflow schema,
#     (both schemas vendored by check-jsonschema, pinned below: no download at check time)
#   - what `docker compose config` / `up` would trip over, without Docker: every depends_on
#     target exists and is not hidden behind a profile; a service waited for with
#     service_healthy has a healthcheck; one waited for with service_completed_successfully
#     does not restart; every bind-mounted path, build context and Dockerfile exists; every
#     named volume is declared; every HERALD_ENV names a config/<env>.toml,
#   - that compose and the workflows run one SQL Server image, pinned to a cumulative update.
# check-jsonschema lives in the venv $HERALD_STATE_DIR/venv (created if missing, shared with
# other scripts; the first run installs it from PyPI). Exits non-zero on any finding.
#
#   scripts/check-yaml.sh [COMPOSE_FILE]   (default: compose/docker-compose.yml)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(repo_root)"

CHECK_JSONSCHEMA_VERSION=0.39.0
VENV="$HERALD_STATE_DIR/venv"
COMPOSE_FILE="${1:-compose/docker-compose.yml}"

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        command -v python3 >/dev/null || die "python3 not found (needed for the venv at $VENV)"
        log "creating the venv $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (Debian: apt-get install python3-venv)"
    fi
    local have
    have="$({ "$VENV/bin/python" -m pip show check-jsonschema 2>/dev/null || true; } | sed -n 's/^Version: //p')"
    if [[ "$have" != "$CHECK_JSONSCHEMA_VERSION" ]]; then
        log "installing check-jsonschema $CHECK_JSONSCHEMA_VERSION into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" ||
            die "pip install check-jsonschema==$CHECK_JSONSCHEMA_VERSION failed"
    fi
}

ensure_venv
[[ -f "$COMPOSE_FILE" ]] || die "$COMPOSE_FILE not found"
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob

failed=0

log "schema: $COMPOSE_FILE (Compose Specification)"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$COMPOSE_FILE" || failed=1

if ((${#workflows[@]})); then
    log "schema: ${workflows[*]} (GitHub workflow)"
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}" || failed=1
else
    log "no workflows under .github/workflows"
fi

log "sanity: $COMPOSE_FILE (dependencies, healthchecks, paths, config files) and one pinned SQL Server image"
"$VENV/bin/python" - "$COMPOSE_FILE" "${workflows[@]}" <<'PY' || failed=1
import os, re, sys
from ruamel.yaml import YAML  # a dependency of check-jsonschema

path, workflows = sys.argv[1], sys.argv[2:]
base = os.path.dirname(os.path.abspath(path))

def load(file):
    try:
        with open(file) as f:
            return YAML(typ="safe").load(f) or {}
    except Exception as error:  # a YAML syntax error: say where, without a traceback
        sys.exit(f"{file}: not valid YAML: {error}")

doc = load(path)
services = doc.get("services") or {}
problems = []

def interpolated(value):
    """${VAR:-default} / ${VAR-default} -> default, ${VAR} -> '' (compose's view with VAR unset)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)

def local_path(p):
    return os.path.normpath(os.path.join(base, os.path.expanduser(interpolated(p))))

def depends(svc):
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}

for name, svc in services.items():
    svc = svc or {}
    for dep, condition in depends(svc).items():
        target = services.get(dep)
        if target is None:
            problems.append(f"{name}: depends_on {dep!r}, which is not a service")
            continue
        target = target or {}
        if target.get("profiles") and not svc.get("profiles"):
            problems.append(f"{name}: depends_on {dep!r}, which only starts with profile(s) {target['profiles']}")
        if condition == "service_healthy":
            hc = target.get("healthcheck") or {}
            if not hc.get("test") or hc.get("disable") or hc.get("test") in (["NONE"], "NONE"):
                problems.append(f"{name}: waits for {dep!r} to be healthy, but {dep!r} has no healthcheck")
        elif condition == "service_completed_successfully":
            restart = target.get("restart", "no")
            if restart not in ("no", False) and not str(restart).startswith("on-failure"):
                problems.append(f"{name}: waits for {dep!r} to complete, but {dep!r} has restart: {restart}")
        elif condition != "service_started":
            problems.append(f"{name}: depends_on {dep!r} with unknown condition {condition!r}")

    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            kind, source = volume.get("type"), volume.get("source")
        else:
            source = volume.split(":", 1)[0] if ":" in volume else None
            kind = "bind" if source and source.startswith((".", "/", "~", "$")) else "volume"
        if kind == "bind" and source and not os.path.exists(local_path(source)):
            problems.append(f"{name}: bind mount source {source!r} does not exist ({local_path(source)})")
        elif kind == "volume" and source and source not in (doc.get("volumes") or {}):
            problems.append(f"{name}: named volume {source!r} is not declared under the top-level volumes")

    build = svc.get("build")
    if build is not None:
        context = build if isinstance(build, str) else build.get("context", ".")
        context_dir = local_path(context)
        if not os.path.isdir(context_dir):
            problems.append(f"{name}: build context {context!r} is not a directory ({context_dir})")
        elif isinstance(build, dict) and "dockerfile_inline" not in build:
            dockerfile = os.path.join(context_dir, interpolated(build.get("dockerfile", "Dockerfile")))
            if not os.path.isfile(dockerfile):
                problems.append(f"{name}: Dockerfile {dockerfile} does not exist")

    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    herald_env = env.get("HERALD_ENV")
    if herald_env:
        toml = os.path.join(base, "..", "config", f"{interpolated(str(herald_env))}.toml")
        if not os.path.isfile(toml):
            problems.append(f"{name}: HERALD_ENV={herald_env} but {os.path.normpath(toml)} does not exist")

    for env_file in ([svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file") or []):
        file = env_file if isinstance(env_file, str) else env_file.get("path")
        required = isinstance(env_file, str) or env_file.get("required", True)
        if file and required and not os.path.isfile(local_path(file)):
            problems.append(f"{name}: env_file {file!r} does not exist")

# One SQL Server image everywhere, pinned to a cumulative update: a CU can move tools.
images = {}  # image -> where
for file, document in [(path, doc)] + [(w, load(w)) for w in workflows]:
    places = [(f"services.{n}", svc) for n, svc in (document.get("services") or {}).items()]
    for job, spec in (document.get("jobs") or {}).items():
        spec = spec or {}
        places += [(f"jobs.{job}.services.{n}", svc) for n, svc in (spec.get("services") or {}).items()]
        places.append((f"jobs.{job}.container", spec.get("container")))
    for where, spec in places:
        image = spec.get("image") if isinstance(spec, dict) else spec
        if isinstance(image, str) and "mssql/server" in image:
            images.setdefault(interpolated(image), []).append(f"{file}: {where}")
problems += [f"SQL Server image {image} is not a cumulative update's tag (<version>-CU<n>-<distro>), in {', '.join(where)}"
             for image, where in images.items() if not re.search(r":\d{4}-CU\d+", image)]
if len(images) > 1:
    problems.append("different SQL Server images: " + "; ".join(
        f"{image} in {', '.join(where)}" for image, where in images.items()))

for problem in problems:
    print(f"{path}: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"ok -- {len(services)} services: dependencies, healthchecks, paths and config files; SQL Server: {', '.join(images) or 'none'}")
PY

((failed == 0)) || die "YAML checks failed (see above)"
log "all YAML checks passed"
