"""Checks of the deployment manifests, run by scripts/check-deploy.

Runs with the tools venv's Python (deploy/check/requirements.txt):
  - Helm's own engine (helm-python-sdk: Helm v4 Go SDK) lints the chart and
    renders it with every values file, like `helm lint --strict` and
    `helm template`;
  - every rendered document and the Knative manifest parse with PyYAML;
  - built-in kinds are validated with kubernetes-validate (strict: unknown
    fields are errors) against each Kubernetes version in KUBE_VERSIONS;
  - custom resources (Knative Service, ServiceMonitor) are validated against
    their CRD schemas by validate-crds.mjs (@kubernetes-models, Node.js);
  - the Knative PodSpec is also validated strictly as a core PodSpec, and
    against the fields Knative's webhook admits by default;
  - the project's own rules: README names, resources from the limits,
    security context, probes, volumes, ports and selectors, the registry's
    and the gateway's wiring (tokens, grant keys, URLs, NetworkPolicies) in
    mode split and all-in-one (see `policy_*`, `*_problems`).
Prints one line per check; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml
from importlib import metadata

KUBE_VERSIONS = ["1.29.0", "1.37.0"]
CRD_KINDS = {
    ("serving.knative.dev/v1", "Service"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
RELEASE, NAMESPACE = "ext-runner", "ext-runner"

failures: list[str] = []


def ok(what: str) -> None:
    print(f"ok    {what}")


def fail(what: str, why: str) -> None:
    failures.append(what)
    print(f"FAIL  {what}: {why}")


def check(what: str, condition: bool, why: str) -> bool:
    if condition:
        ok(what)
    else:
        fail(what, why)
    return condition


# --- README -------------------------------------------------------------------


def readme_names(readme: Path) -> set[str]:
    """Variable names in the first column of the README's configuration table."""
    names: set[str] = set()
    in_section = False
    for line in readme.read_text().splitlines():
        if line.startswith("## "):
            in_section = line.strip() == "## Configuration"
            continue
        if in_section and line.startswith("|"):
            first = line.split("|")[1]
            names.update(n for n in re.findall(r"`([^`]+)`", first) if re.fullmatch(r"[A-Z][A-Z0-9_]*", n))
    return names


# --- quantities -----------------------------------------------------------------

_K8S_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def k8s_bytes(quantity) -> int:
    m = re.fullmatch(r"(\d+)([kMGT]i?|Ki)?", str(quantity))
    if not m:
        raise ValueError(f"unsupported quantity {quantity!r}")
    return int(m.group(1)) * _K8S_UNITS[m.group(2) or ""]


def runner_bytes(text: str) -> int:
    """RUNNER_CACHE_MAX_BYTES syntax (the runner's parse_bytes: binary units)."""
    m = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", text.strip())
    if not m:
        raise ValueError(f"not a byte count: {text!r}")
    scale = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
             "g": 2**30, "gb": 2**30, "gib": 2**30}[m.group(2).lower()]
    return int(m.group(1)) * scale


# --- validation -----------------------------------------------------------------


def validate_builtin(obj: dict, label: str) -> None:
    for version in KUBE_VERSIONS:
        what = f"{label}: schema of Kubernetes {version} (strict)"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            ok(what)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in getattr(e, "path", []))
            fail(what, f"{e.message} at /{path}")
        except kubernetes_validate.SchemaNotFoundError:
            fail(what, f"no schema for {obj.get('apiVersion')} {obj.get('kind')}")


def validate_crds(items: list[tuple[str, dict]], node_validator: Path) -> None:
    if not items:
        return
    out = subprocess.run(
        ["node", str(node_validator)],
        input=json.dumps([obj for _, obj in items]),
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        fail("CRD schema validation", out.stderr.strip() or f"node exited {out.returncode}")
        return
    for (label, _), result in zip(items, json.loads(out.stdout), strict=True):
        what = f"{label}: CRD schema (@kubernetes-models)"
        if result["ok"]:
            ok(what)
        else:
            fail(what, "; ".join(result["errors"]))


def label_of(source: str, obj: dict) -> str:
    return f"{source} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --- Knative admission (knative.dev/serving pkg/apis/serving/fieldmask.go) -----

KNATIVE_REVISION_FIELDS = {"containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"}
KNATIVE_POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
KNATIVE_CONTAINER_FIELDS = {"name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy",
                            "livenessProbe", "ports", "readinessProbe", "startupProbe", "resources",
                            "securityContext", "terminationMessagePath", "terminationMessagePolicy", "volumeMounts"}
KNATIVE_SECURITY_FIELDS = {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "capabilities",
                           "allowPrivilegeEscalation", "seccompProfile"}
# emptyDir needs `kubernetes.podspec-volumes-emptydir` where it is not on.
KNATIVE_VOLUME_SOURCES = {"secret", "configMap", "projected", "emptyDir"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}


def knative_admission(ksvc: dict, label: str) -> None:
    spec = ksvc["spec"]["template"]["spec"]
    problems = [f"spec.template.spec.{k} is not admitted by default" for k in spec
                if k not in KNATIVE_POD_FIELDS | KNATIVE_REVISION_FIELDS]
    for c in spec.get("containers", []):
        problems += [f"container {k} is not admitted" for k in c if k not in KNATIVE_CONTAINER_FIELDS]
        problems += [f"securityContext.{k} is not admitted" for k in c.get("securityContext", {})
                     if k not in KNATIVE_SECURITY_FIELDS]
        problems += [f"capabilities.add needs a feature flag" for _ in c.get("securityContext", {})
                     .get("capabilities", {}).get("add", [])]
        problems += [f"env {e['name']} is reserved by Knative" for e in c.get("env", [])
                     if e["name"] in KNATIVE_RESERVED_ENV]
        serving = [p.get("containerPort") for p in c.get("ports", [])] or [8080]
        for probe in ("livenessProbe", "readinessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if port is not None and port not in serving:
                problems.append(f"{probe}.httpGet.port {port} is not the serving port {serving[0]}")
        if len(c.get("ports", [])) > 1:
            problems.append("a Knative container exposes one port")
    for v in spec.get("volumes", []):
        problems += [f"volume {v['name']}: {k} volumes are not admitted" for k in v
                     if k != "name" and k not in KNATIVE_VOLUME_SOURCES]
    check(f"{label}: fields Knative admits (fieldmask)", not problems, "; ".join(problems))


# --- project rules ----------------------------------------------------------------


def effective_env(container: dict, config_maps: dict[str, dict]) -> tuple[dict[str, object], list[str]]:
    """Names → value (a string, or the valueFrom object) the container gets."""
    env: dict[str, object] = {}
    problems = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if name not in config_maps:
                problems.append(f"envFrom ConfigMap {name} is not part of the manifests")
                continue
            env.update({source.get("prefix", "") + k: v for k, v in (config_maps[name].get("data") or {}).items()})
        else:
            problems.append(f"envFrom {list(source)} cannot be checked (use env entries)")
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return env, problems


def policy_env_names(label: str, names: set[str], readme: set[str]) -> None:
    unknown = sorted(n for n in names if n not in readme)
    check(f"{label}: {len(names)} environment variables are in the README configuration table",
          not unknown, f"not in the README table: {', '.join(unknown)}")


def policy_security(label: str, pod: dict, container: dict, pod_level_allowed: bool = True) -> None:
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    problems = []
    if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not true")
    if (csc.get("runAsUser", psc.get("runAsUser"))) != 10001:
        problems.append("runAsUser is not 10001 (the image's user)")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []) or csc.get("capabilities", {}).get("add"):
        problems.append("capabilities do not drop ALL (or add some)")
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    if seccomp != "RuntimeDefault":
        problems.append(f"seccompProfile is {seccomp!r}, not RuntimeDefault")
    if not pod_level_allowed and psc:
        problems.append("pod-level securityContext needs Knative's podspec-securitycontext flag")
    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false (service links inject RUNNER_* names the runner refuses)")
    check(f"{label}: non-root, read-only root, no capabilities, RuntimeDefault seccomp", not problems, "; ".join(problems))


def policy_drain(label, pod, container, role):
    """Drain: terminationGracePeriodSeconds > preStop sleep + --shutdown-grace-ms."""
    args = " ".join(container.get("args", []))
    m = re.search(r"--shutdown-grace-ms[= ](\d+)", args)
    grace_ms = int(m.group(1)) if m else 30000
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(f"{label}: terminationGracePeriodSeconds {tgps} > preStop {sleep} s + shutdown grace {grace_ms} ms",
          tgps * 1000 > sleep * 1000 + grace_ms, f"the kubelet would SIGKILL a draining {role}")


def policy_probes(label: str, container: dict) -> None:
    paths = {p: container.get(p, {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
    check(f"{label}: liveness /healthz, readiness /readyz",
          paths == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, f"probe paths are {paths}")


def policy_volumes(label: str, pod: dict, container: dict, env: dict) -> None:
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    problems = []
    data, cache = env.get("RUNNER_DATA_DIR"), env.get("RUNNER_CACHE_DIR")
    writable = {data, cache, "/tmp"}
    for path in writable:
        m = mounts.get(path)
        if not m or m.get("readOnly") or "emptyDir" not in volumes.get(m["name"], {}):
            problems.append(f"{path} is not a writable emptyDir mount")
    for path, m in mounts.items():
        if path not in writable and not m.get("readOnly"):
            problems.append(f"{path} is writable; only the data, cache and /tmp dirs may be")
    if cache in mounts and "RUNNER_CACHE_MAX_BYTES" in env:
        limit = volumes[mounts[cache]["name"]]["emptyDir"].get("sizeLimit")
        budget = runner_bytes(str(env["RUNNER_CACHE_MAX_BYTES"]))
        if limit is None or k8s_bytes(limit) <= budget:
            problems.append(f"cache sizeLimit {limit} is not above RUNNER_CACHE_MAX_BYTES {env['RUNNER_CACHE_MAX_BYTES']}")
    trust = env.get("SIGNING_TRUST_BUNDLE")
    if isinstance(trust, str) and trust.startswith("/"):
        holder = [p for p, m in mounts.items() if trust.startswith(p.rstrip("/") + "/")]
        if not holder or "secret" not in volumes.get(mounts[holder[0]]["name"], {}):
            problems.append(f"SIGNING_TRUST_BUNDLE {trust} is not in a mounted Secret")
    check(f"{label}: writes only to data, cache ({env.get('RUNNER_CACHE_MAX_BYTES')} budget) and /tmp volumes",
          not problems, "; ".join(problems))


def policy_memory(label: str, container: dict, env: dict, overhead_mi: int | None) -> None:
    try:
        concurrency = int(env["RUNNER_MAX_CONCURRENCY"])
        memory_mb = int(env["RUNNER_MAX_MEMORY_MB"])
    except (KeyError, ValueError) as e:
        fail(f"{label}: memory from the limits", f"RUNNER_MAX_CONCURRENCY/RUNNER_MAX_MEMORY_MB not set as numbers ({e})")
        return
    res = container.get("resources", {})
    request = k8s_bytes(res.get("requests", {}).get("memory", "0")) // 2**20
    limit = k8s_bytes(res.get("limits", {}).get("memory", "0")) // 2**20
    floor = concurrency * memory_mb
    problems = []
    if overhead_mi is not None and request != floor + overhead_mi:
        problems.append(f"request {request}Mi ≠ {concurrency} × {memory_mb} + {overhead_mi}")
    if request <= floor:
        problems.append(f"request {request}Mi leaves no overhead above {concurrency} × {memory_mb} MiB")
    if limit != request:
        problems.append(f"limit {limit}Mi ≠ request {request}Mi")
    check(f"{label}: memory {request}Mi = RUNNER_MAX_CONCURRENCY {concurrency} × RUNNER_MAX_MEMORY_MB {memory_mb}"
          + (f" + {overhead_mi}" if overhead_mi is not None else " + overhead"), not problems, "; ".join(problems))


def listen_port(value) -> int | None:
    return int(str(value).rsplit(":", 1)[1]) if isinstance(value, str) and ":" in value else None


def component(obj: dict) -> str | None:
    return obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")


def is_registry(obj: dict) -> bool:
    """An object of the registry Deployment (registry.enabled), by its component label."""
    return component(obj) == "registry"


def is_gateway(obj: dict) -> bool:
    """An object of the gateway (its Deployment, or the gateway Service in mode all-in-one)."""
    return component(obj) == "gateway"


def is_role_object(obj: dict) -> bool:
    """An object of a role that runs apart from the runner's Deployment (or the gateway's Service)."""
    return is_registry(obj) or is_gateway(obj)


def all_in_one(values: dict) -> bool:
    return values.get("mode", "split") == "all-in-one"


def split_registry(values: dict) -> bool:
    return not all_in_one(values) and bool(values.get("registry", {}).get("enabled"))


def split_gateway(values: dict) -> bool:
    return not all_in_one(values) and bool(values.get("gateway", {}).get("enabled"))


def policy_deployment(label: str, objs: list[dict], values: dict, readme: set[str]) -> None:
    """The runner's Deployment and what serves it; the registry's and the
    gateway's objects (ConfigMaps aside, which envFrom resolves by name) are
    policy_registry's and policy_gateway's."""
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        if o["kind"] != "ConfigMap" and is_role_object(o):
            continue
        by_kind.setdefault(o["kind"], []).append(o)
    config_maps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    env, problems = effective_env(container, config_maps)
    check(f"{label}: environment resolves", not problems, "; ".join(problems))
    policy_env_names(label, set(env), readme)
    policy_security(label, pod, container)
    policy_probes(label, container)
    policy_volumes(label, pod, container, env)
    overhead = values.get("resources", {}).get("memoryOverheadMi", 512)
    if all_in_one(values):
        overhead += values.get("allInOne", {}).get("extraMemoryMi", 0)
    policy_memory(label, container, env, overhead)

    policy_drain(label, pod, container, "runner")

    # Listeners ↔ container ports ↔ Services ↔ NetworkPolicy ↔ ServiceMonitor.
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    problems = []
    if listen_port(env.get("RUNNER_LISTEN")) != ports.get("http"):
        problems.append(f"RUNNER_LISTEN {env.get('RUNNER_LISTEN')} ≠ container port http {ports.get('http')}")
    if "RUNNER_PUBLIC_LISTEN" in env or "public" in ports:
        if listen_port(env.get("RUNNER_PUBLIC_LISTEN")) != ports.get("public"):
            problems.append(f"RUNNER_PUBLIC_LISTEN {env.get('RUNNER_PUBLIC_LISTEN')} ≠ container port public")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if port is not None and port not in ports and port not in ports.values():
            problems.append(f"{probe} port {port} is not a container port")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for name, svc in services.items():
        if any(svc["spec"]["selector"].get(k) != v for k, v in svc["spec"]["selector"].items() if k in pod_labels) \
                or not set(svc["spec"]["selector"]) <= set(pod_labels):
            problems.append(f"Service {name} does not select the pods")
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
                problems.append(f"Service {name} targets port {p['targetPort']}, which the container lacks")
    public = [s for s in services.values() if s["metadata"]["labels"].get("app.kubernetes.io/component") == "public"]
    if ("public" in ports) != bool(public):
        problems.append("the public listener and the public Service come and go together")
    for np in by_kind.get("NetworkPolicy", []):
        allowed = {p["port"] for rule in np["spec"].get("ingress", []) for p in rule.get("ports", [])}
        if not set(ports.values()) <= allowed:
            problems.append(f"NetworkPolicy admits ports {sorted(allowed)}, container has {sorted(ports.values())}")
        if not {"Ingress", "Egress"} <= set(np["spec"].get("policyTypes", [])):
            problems.append("NetworkPolicy does not govern both ingress and egress")
        internal_rules = [r for r in np["spec"].get("ingress", []) if ports.get("http") in {p["port"] for p in r.get("ports", [])}]
        # In mode all-in-one the internal port is the gateway's too: open
        # exactly when gateway.networkPolicy.from is empty.
        open_by_design = all_in_one(values) and not values.get("gateway", {}).get("networkPolicy", {}).get("from")
        if any(not r.get("from") for r in internal_rules) and not open_by_design:
            problems.append("NetworkPolicy opens the internal port to everyone")
        dns = [r for r in np["spec"].get("egress", []) if {p["port"] for p in r.get("ports", [])} == {53}]
        if not dns:
            problems.append("NetworkPolicy egress has no DNS rule")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        targets = [s for s in services.values() if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        if len(targets) != 1 or targets[0]["metadata"]["labels"].get("app.kubernetes.io/component") != "internal":
            problems.append("ServiceMonitor does not select exactly the internal Service")
        elif {e["port"] for e in sm["spec"]["endpoints"]} - {p["name"] for p in targets[0]["spec"]["ports"]}:
            problems.append("ServiceMonitor scrapes a port the internal Service lacks")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        if hpa["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
            problems.append("HorizontalPodAutoscaler targets another Deployment")
        if "replicas" in deployment["spec"]:
            problems.append("Deployment sets replicas although the HorizontalPodAutoscaler owns them")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if any(pod_labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
            problems.append("PodDisruptionBudget does not select the pods")
    for name in ("secretKeyRef",):
        secrets = {s["metadata"]["name"] for s in by_kind.get("Secret", [])}
        # The registry's and the gateway's Secrets are always the operator's.
        refs = {v[name]["name"] for k, v in env.items() if isinstance(v, dict) and name in v
                and k not in OPERATOR_SECRET_ENV}
        if secrets and not refs <= secrets:
            problems.append(f"env refers to Secrets {sorted(refs - secrets)} the chart does not create")
    check(f"{label}: listeners, ports, Services, NetworkPolicy, ServiceMonitor, HPA and PDB agree",
          not problems, "; ".join(problems))


# Variables that are secrets: each must come from a secretKeyRef, never a
# literal env value or a ConfigMap key.
SECRET_ENV = {"RUNNER_SERVICE_TOKEN", "BUNDLE_STORAGE_ACCESS_KEY_ID", "BUNDLE_STORAGE_SECRET_ACCESS_KEY",
              "RUNNER_SECRETS_KEY", "RUNNER_SECRETS_KEY_FILE", "REGISTRY_DATABASE_URL", "REGISTRY_TOKENS",
              "RUNNER_REGISTRY_TOKEN", "GATEWAY_RUNNER_TOKEN", "GATEWAY_REGISTRY_TOKEN", "GATEWAY_JWT_SECRET"}
# Secret variables whose Secrets the operator creates (never secret.create's).
OPERATOR_SECRET_ENV = {"RUNNER_REGISTRY_TOKEN", "REGISTRY_DATABASE_URL", "REGISTRY_TOKENS", "GATEWAY_JWT_SECRET"}
REGISTRY_VALIDATE_PATH = "/v1/registry/installs/validate"
REGISTRY_REVOCATIONS_PATH = "/v1/registry/revocations"


def pod_of(deployment: dict) -> tuple[dict, dict, dict]:
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container, deployment["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def registry_problems(objs: list[dict], values: dict) -> dict[str, list[str]]:
    """The registry Deployment's rules, rule → problems (empty: it holds).
    Separate from printing so the canaries can feed it broken manifests."""
    reg = values.get("registry", {})
    enabled = split_registry(values)
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    registry = [d for d in deployments if is_registry(d)]
    runners = [d for d in deployments if not is_role_object(d)]
    config_maps = {c["metadata"]["name"]: c for c in objs if c["kind"] == "ConfigMap"}
    rules: dict[str, list[str]] = {k: [] for k in ("presence", "roles", "secrets", "security", "probes",
                                                   "resources", "serving", "runner_token", "runner_urls",
                                                   "runner_egress", "validate_url")}
    p = rules["presence"]
    if len(runners) != 1:
        p.append(f"{len(runners)} runner Deployments")
    if not enabled:
        leftover = [f"{o['kind']}/{o['metadata']['name']}" for o in objs if is_registry(o)]
        if leftover:
            p.append(f"registry.enabled is false{' (or mode all-in-one)' if all_in_one(values) else ''} "
                     f"but the chart renders {', '.join(leftover)}")
    elif len(registry) != 1:
        p.append(f"registry.enabled but {len(registry)} registry Deployments")
    # Literal secrets: in no Deployment's env, in no ConfigMap.
    for d in deployments:
        for e in pod_of(d)[1].get("env", []):
            if e["name"] in SECRET_ENV and "secretKeyRef" not in e.get("valueFrom", {}):
                rules["secrets"].append(f"{d['metadata']['name']}: {e['name']} is not from a secretKeyRef")
    for name, cm in config_maps.items():
        leaked = sorted(SECRET_ENV & set(cm.get("data") or {}))
        if leaked:
            rules["secrets"].append(f"ConfigMap {name} holds {', '.join(leaked)}")
    runner_env: dict = {}
    if len(runners) == 1:
        runner_env, _ = effective_env(pod_of(runners[0])[1], config_maps)
        roles = runner_env.get("RUNNER_ROLES")
        want = "all" if all_in_one(values) else "runner" if enabled or split_gateway(values) else None
        if roles != want:
            rules["roles"].append(f"runner RUNNER_ROLES is {roles!r}, not {want or 'unset'}")
        leaked = sorted(n for n in runner_env if n.startswith("REGISTRY_"))
        if leaked and not all_in_one(values):
            rules["secrets"].append(f"the runner gets {', '.join(leaked)}")
    if not enabled or len(registry) != 1 or len(runners) != 1:
        return rules
    (deployment,) = registry
    pod, container, pod_labels = pod_of(deployment)
    rpod, rcontainer, runner_labels = pod_of(runners[0])
    env, problems = effective_env(container, config_maps)
    rules["presence"] += problems
    if env.get("RUNNER_ROLES") != "registry":
        rules["roles"].append(f"registry RUNNER_ROLES is {env.get('RUNNER_ROLES')!r}, not 'registry'")
    tokens_secret = reg.get("tokens", {}).get("existingSecret") or reg.get("database", {}).get("existingSecret")
    for name, secret, key in (
            ("REGISTRY_DATABASE_URL", reg.get("database", {}).get("existingSecret"), reg.get("database", {}).get("key")),
            ("REGISTRY_TOKENS", tokens_secret, reg.get("tokens", {}).get("key"))):
        ref = env.get(name, {}).get("secretKeyRef") if isinstance(env.get(name), dict) else None
        if not ref:
            rules["secrets"].append(f"{name} is {'missing' if name not in env else 'not from a secretKeyRef'}")
        elif (ref.get("name"), ref.get("key")) != (secret, key) or ref.get("optional"):
            rules["secrets"].append(f"{name} comes from Secret {ref.get('name')} key {ref.get('key')}"
                                    f"{' (optional)' if ref.get('optional') else ''}, not {secret} key {key}")
    # Security: the runner's, field for field.
    for what, mine, theirs in (("pod securityContext", pod.get("securityContext"), rpod.get("securityContext")),
                               ("container securityContext", container.get("securityContext"),
                                rcontainer.get("securityContext"))):
        if mine != theirs:
            rules["security"].append(f"{what} {mine} differs from the runner's {theirs}")
    for field in ("enableServiceLinks", "automountServiceAccountToken", "serviceAccountName"):
        if pod.get(field) != rpod.get(field):
            rules["security"].append(f"{field} {pod.get(field)!r} differs from the runner's {rpod.get(field)!r}")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = container.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in set(ports) | set(ports.values()):
            rules["probes"].append(f"{probe} is {got or 'missing'}, not GET {path} on a container port")
    res = container.get("resources", {})
    want = f"{reg.get('resources', {}).get('memoryMi')}Mi"
    if res.get("requests", {}).get("memory") != want or res.get("limits", {}).get("memory") != want:
        rules["resources"].append(f"memory request/limit {res.get('requests', {}).get('memory')}/"
                                  f"{res.get('limits', {}).get('memory')} ≠ registry.resources.memoryMi {want}")
    if env.get("RUNNER_MAX_CONCURRENCY") != "1":
        rules["resources"].append(f"RUNNER_MAX_CONCURRENCY {env.get('RUNNER_MAX_CONCURRENCY')!r}: the registry executes nothing, 1")
    if deployment["spec"].get("replicas") != reg.get("replicas"):
        rules["resources"].append(f"replicas {deployment['spec'].get('replicas')} ≠ registry.replicas {reg.get('replicas')}")
    s = rules["serving"]
    if listen_port(env.get("RUNNER_LISTEN")) != ports.get("http") or set(ports) != {"http"}:
        s.append(f"RUNNER_LISTEN {env.get('RUNNER_LISTEN')} / container ports {ports}: one port, http")
    if "RUNNER_PUBLIC_LISTEN" in env:
        s.append("RUNNER_PUBLIC_LISTEN is set: the registry serves no UI assets")
    sel = deployment["spec"]["selector"]["matchLabels"]
    if selects(sel, runner_labels) or selects(runners[0]["spec"]["selector"]["matchLabels"], pod_labels):
        s.append("the runner's and the registry's selectors overlap")
    services = [o for o in objs if o["kind"] == "Service"]
    mine = [o for o in services if selects(o["spec"]["selector"], pod_labels)]
    if len(mine) != 1 or not is_registry(mine[0]):
        s.append(f"Services selecting the registry pods: {[o['metadata']['name'] for o in mine]}, not one registry Service")
    else:
        svc = mine[0]
        if selects(svc["spec"]["selector"], runner_labels):
            s.append(f"Service {svc['metadata']['name']} also selects the runner pods")
        if svc["spec"]["ports"][0]["port"] != reg.get("service", {}).get("port"):
            s.append(f"Service port {svc['spec']['ports'][0]['port']} ≠ registry.service.port")
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
                s.append(f"Service targets port {p['targetPort']}, which the container lacks")
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget" and selects(o["spec"]["selector"]["matchLabels"], pod_labels)]
    if len(pdbs) != int(bool(reg.get("podDisruptionBudget", {}).get("enabled"))) or any(
            selects(o["spec"]["selector"]["matchLabels"], runner_labels) for o in pdbs):
        s.append(f"PodDisruptionBudgets of the registry pods: {[o['metadata']['name'] for o in pdbs]}")
    for sm in (o for o in objs if o["kind"] == "ServiceMonitor" and is_registry(o)):
        targets = [o for o in services if selects(sm["spec"]["selector"]["matchLabels"], o["metadata"]["labels"])]
        if targets != mine:
            s.append("the registry ServiceMonitor does not select exactly the registry Service")
    for hpa in (o for o in objs if o["kind"] == "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]:
            s.append("a HorizontalPodAutoscaler targets the registry (registry.replicas is fixed)")
    # The runners' wiring to the registry: a `runner` token from the
    # configured Secret, both URLs on the registry Service's in-cluster name
    # and port, and a NetworkPolicy that lets them through.
    token_secret = reg.get("runnerToken", {}).get("existingSecret") or tokens_secret
    token_key = reg.get("runnerToken", {}).get("key")
    token = runner_env.get("RUNNER_REGISTRY_TOKEN")
    ref = token.get("secretKeyRef") if isinstance(token, dict) else None
    if not ref:
        rules["runner_token"].append("the runner's RUNNER_REGISTRY_TOKEN is "
                                     + ("missing" if token is None else "not from a secretKeyRef"))
    elif (ref.get("name"), ref.get("key")) != (token_secret, token_key) or ref.get("optional"):
        rules["runner_token"].append(f"the runner's RUNNER_REGISTRY_TOKEN comes from Secret {ref.get('name')} key "
                                     f"{ref.get('key')}{' (optional)' if ref.get('optional') else ''}, "
                                     f"not {token_secret} key {token_key}")
    if mine:
        base = f"http://{mine[0]['metadata']['name']}.{NAMESPACE}.svc:{mine[0]['spec']['ports'][0]['port']}"
        own_validator = str((values.get("config") or {}).get("RUNNER_UI_VALIDATE_URL") or "")
        for name, want in (("RUNNER_REVOCATIONS_URL", base + REGISTRY_REVOCATIONS_PATH),
                           ("RUNNER_UI_VALIDATE_URL", own_validator or base + REGISTRY_VALIDATE_PATH)):
            if runner_env.get(name) != want:
                rules["runner_urls"].append(f"the runner's {name} is {runner_env.get(name)!r}, not {want!r}")
    policies = [o for o in objs if o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"]
                                                                            .get("matchLabels", {}), runner_labels)]
    for np in policies:
        reach = [r for r in np["spec"].get("egress", [])
                 if any("podSelector" in t and "namespaceSelector" not in t and "ipBlock" not in t
                        and selects(t["podSelector"].get("matchLabels", {}), pod_labels) for t in r.get("to", []))
                 and ports.get("http") in {p.get("port") for p in r.get("ports", [])}]
        if not reach:
            rules["runner_egress"].append(f"NetworkPolicy {np['metadata']['name']} lets the runner pods reach no "
                                          f"registry pod on port {ports.get('http')}")
    # The registry's validate route answers 401 without a token, which the
    # runner turns into 503 for every UI asset.
    url = str(runner_env.get("RUNNER_UI_VALIDATE_URL") or "")
    if mine and f"//{mine[0]['metadata']['name']}" in url and REGISTRY_VALIDATE_PATH in url and not ref:
        rules["validate_url"].append(f"the runner's RUNNER_UI_VALIDATE_URL {url} is the registry's validate route, "
                                     "and the runner has no RUNNER_REGISTRY_TOKEN: 401, every UI request 503")
    return rules


REGISTRY_RULES = {
    "presence": "the registry Deployment exists exactly when registry.enabled",
    "roles": "RUNNER_ROLES: registry for the registry Deployment, runner for the runner's (when a role runs apart), "
             "all in mode all-in-one",
    "secrets": "REGISTRY_DATABASE_URL and REGISTRY_TOKENS from the registry.* Secrets (secretKeyRef); no literal secrets",
    "security": "registry pod and container security context, service account and service links are the runner's",
    "probes": "registry startup and liveness /healthz, readiness /readyz",
    "resources": "registry memory request = limit = registry.resources.memoryMi, RUNNER_MAX_CONCURRENCY 1, replicas",
    "serving": "registry listener, Service, PodDisruptionBudget and ServiceMonitor select the registry pods only",
    "runner_token": "the runner's RUNNER_REGISTRY_TOKEN from registry.runnerToken's Secret and key (secretKeyRef)",
    "runner_urls": "the runner's RUNNER_REVOCATIONS_URL and RUNNER_UI_VALIDATE_URL (unless config's) on the registry "
                   "Service's in-cluster name and port",
    "runner_egress": "the runner's NetworkPolicy lets it reach the registry pods on their port",
    "validate_url": "the runner's RUNNER_UI_VALIDATE_URL is the registry's validate route only with a runner token",
}


def policy_registry(label: str, objs: list[dict], values: dict, readme: set[str]) -> None:
    rules = registry_problems(objs, values)
    enabled = split_registry(values)
    for rule, problems in rules.items():
        if not enabled and rule not in ("presence", "roles", "secrets"):
            continue
        check(f"{label}: {REGISTRY_RULES[rule]}", not problems, "; ".join(problems))
    registry = [o for o in objs if o["kind"] == "Deployment" and is_registry(o)]
    if enabled and len(registry) == 1:
        policy_role_pod(label, "registry", registry[0], objs, readme)


def policy_role_pod(label: str, role: str, deployment: dict, objs: list[dict], readme: set[str]) -> None:
    """The rules every role's pod shares with the runner's: README names,
    security context, volumes, drain."""
    pod, container, _ = pod_of(deployment)
    config_maps = {c["metadata"]["name"]: c for c in objs if c["kind"] == "ConfigMap"}
    env, _ = effective_env(container, config_maps)
    role_label = f"{label} {role}"
    policy_env_names(role_label, set(env), readme)
    policy_security(role_label, pod, container)
    policy_volumes(role_label, pod, container, env)
    policy_drain(role_label, pod, container, role)


# --- gateway (gateway.enabled, or mode all-in-one) ----------------------------------

GRANT_DIR, USER_JWKS_DIR = "/etc/ext-runner/grant", "/etc/ext-runner/user-jwks"
# What only the gateway process is given: the runner pods never get these.
GATEWAY_ONLY_ENV = {"GATEWAY_RUNNER_TOKEN", "GATEWAY_REGISTRY_TOKEN", "GATEWAY_GRANT_KEY", "GATEWAY_REGISTRY_URL",
                    "RUNNER_BASE_URL"}
# What the gateway pods must not get: they read no bundle and open no secret.
NOT_FOR_GATEWAY_ENV = {"BUNDLE_STORAGE_ACCESS_KEY_ID", "BUNDLE_STORAGE_SECRET_ACCESS_KEY", "RUNNER_SECRETS_KEY",
                       "RUNNER_SECRETS_KEY_FILE", "RUNNER_REGISTRY_TOKEN", "SIGNING_TRUST_BUNDLE"}
USER_TOKEN_ENV = ("GATEWAY_JWT_SECRET", "GATEWAY_JWKS_URL", "GATEWAY_JWKS_FILE")


def secret_ref(value) -> dict | None:
    return value.get("secretKeyRef") if isinstance(value, dict) else None


def mounted_file(path, pod: dict, container: dict) -> tuple[dict | None, str]:
    """The volume a file path lies in (through a read-only mount) and the
    item key it is, or (None, why)."""
    if not isinstance(path, str) or not path.startswith("/"):
        return None, f"{path!r} is not a file path"
    for m in container.get("volumeMounts", []):
        base = m["mountPath"].rstrip("/") + "/"
        if path.startswith(base):
            if not m.get("readOnly"):
                return None, f"{path} is on a writable mount"
            (volume,) = [v for v in pod.get("volumes", []) if v["name"] == m["name"]]
            source = volume.get("secret") or volume.get("configMap") or {}
            items = {i["path"]: i["key"] for i in source.get("items", [])}
            rel = path[len(base):]
            if rel not in items:
                return None, f"{path}: {rel} is not an item of volume {volume['name']} (items {sorted(items)})"
            return volume, items[rel]
    return None, f"{path} is in no mounted volume"


def source_is(volume: dict, secret: str | None, config_map: str | None) -> bool:
    if config_map:
        return volume.get("configMap", {}).get("name") == config_map and "secret" not in volume
    return volume.get("secret", {}).get("secretName") == secret and "configMap" not in volume


def peer_key(peer: dict) -> str:
    return json.dumps(peer, sort_keys=True)


def metrics_peer(values: dict) -> dict | None:
    m = values.get("networkPolicy", {}).get("metrics", {}) or {}
    peer = {k: m[k] for k in ("namespaceSelector", "podSelector") if m.get(k)}
    return peer or None


def rules_for_port(np: dict, port: int) -> list[dict]:
    """The policy's ingress rules that admit traffic to `port` (a rule
    without ports admits every port)."""
    return [r for r in np["spec"].get("ingress", [])
            if not r.get("ports") or port in {p.get("port") for p in r["ports"]}]


def gateway_problems(objs: list[dict], values: dict) -> dict[str, list[str]]:
    """The gateway's rules, rule → problems (empty: it holds); like
    registry_problems, separate from printing for the canaries."""
    g = values.get("gateway", {})
    aio, split = all_in_one(values), split_gateway(values)
    rules: dict[str, list[str]] = {k: [] for k in (
        "presence", "env", "secrets", "grants", "user_tokens", "security", "probes", "resources", "serving",
        "runner_ingress", "gateway_policy", "all_in_one")}
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    gateways = [d for d in deployments if is_gateway(d)]
    runners = [d for d in deployments if not is_role_object(d)]
    config_maps = {c["metadata"]["name"]: c for c in objs if c["kind"] == "ConfigMap"}
    services = [o for o in objs if o["kind"] == "Service"]
    gateway_services = [s for s in services if is_gateway(s)]
    p = rules["presence"]
    if split:
        if len(gateways) != 1:
            p.append(f"gateway.enabled but {len(gateways)} gateway Deployments")
    else:
        stray = [f"{o['kind']}/{o['metadata']['name']}" for o in objs if is_gateway(o)
                 and not (aio and o["kind"] == "Service")]
        if stray:
            p.append(f"{'mode all-in-one' if aio else 'gateway.enabled is false'} but the chart renders {', '.join(stray)}")
        if aio and len(gateway_services) != 1:
            p.append(f"mode all-in-one: {len(gateway_services)} gateway Services, not one")
    if len(runners) != 1:
        p.append(f"{len(runners)} runner Deployments")
        return rules
    rpod, rcontainer, runner_labels = pod_of(runners[0])
    runner_env, _ = effective_env(rcontainer, config_maps)
    reach = ({n for n in GATEWAY_ONLY_ENV if n in runner_env}
             | ({"RUNNER_GRANT_KEYS"} & set(runner_env) if aio else set()))
    if reach:
        rules["secrets" if not aio else "all_in_one"].append(
            f"the runner pods get {', '.join(sorted(reach))}"
            + (" (in-process in mode all-in-one; grants use the process's own key)" if aio else ""))
    internal = [s for s in services if component(s) == "internal"]
    runner_port = values.get("runner", {}).get("port")
    mpeer = metrics_peer(values)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    runner_policies = [np for np in policies if selects(np["spec"]["podSelector"].get("matchLabels", {}), runner_labels)]

    def user_tokens(env: dict, pod: dict, container: dict, out: list[str]) -> None:
        u = g.get("userTokens", {})
        got = [n for n in USER_TOKEN_ENV if n in env]
        if not got:
            out.append("no GATEWAY_JWT_SECRET, GATEWAY_JWKS_URL or GATEWAY_JWKS_FILE: no user can be authenticated")
        if "GATEWAY_JWT_SECRET" in env:
            ref = secret_ref(env["GATEWAY_JWT_SECRET"])
            want = (u.get("jwtSecret", {}).get("existingSecret"), u.get("jwtSecret", {}).get("key"))
            if not ref or (ref.get("name"), ref.get("key")) != want or ref.get("optional"):
                out.append(f"GATEWAY_JWT_SECRET is {env['GATEWAY_JWT_SECRET']!r}, not a secretKeyRef of {want}")
        if "GATEWAY_JWKS_URL" in env and env["GATEWAY_JWKS_URL"] != u.get("jwksUrl"):
            out.append(f"GATEWAY_JWKS_URL {env['GATEWAY_JWKS_URL']!r} ≠ gateway.userTokens.jwksUrl")
        if "GATEWAY_JWKS_FILE" in env:
            f = u.get("jwksFile", {})
            volume, key = mounted_file(env["GATEWAY_JWKS_FILE"], pod, container)
            if volume is None:
                out.append(f"GATEWAY_JWKS_FILE: {key}")
            elif not source_is(volume, f.get("existingSecret"), f.get("configMap")) or key != f.get("key"):
                out.append(f"GATEWAY_JWKS_FILE is key {key} of volume {volume['name']}, not gateway.userTokens.jwksFile's")

    def public_base(env: dict, out: list[str]) -> None:
        want = str(g.get("publicBase") or "").rstrip("/")
        if not want or env.get("RUNNER_PUBLIC_BASE") != want:
            out.append(f"RUNNER_PUBLIC_BASE is {env.get('RUNNER_PUBLIC_BASE')!r}, not gateway.publicBase {want!r}")

    def ingress_from(np: dict, port: int, out: list[str]) -> None:
        """gateway.networkPolicy.from (+ the metrics peer), or anyone when it is empty."""
        frm = g.get("networkPolicy", {}).get("from") or []
        got = rules_for_port(np, port)
        if not got:
            out.append(f"NetworkPolicy {np['metadata']['name']} admits nobody to port {port}")
        elif not frm:
            if not any(not r.get("from") for r in got):
                out.append(f"NetworkPolicy {np['metadata']['name']}: gateway.networkPolicy.from is empty, "
                           f"yet port {port} is not open")
        else:
            want = {peer_key(x) for x in frm} | ({peer_key(mpeer)} if mpeer else set())
            peers = {peer_key(x) for r in got for x in r.get("from") or [{"anyone": True}]}
            if peers != want:
                out.append(f"NetworkPolicy {np['metadata']['name']} admits {sorted(peers)} to port {port}, "
                           f"not gateway.networkPolicy.from and the metrics peer")

    if aio:
        a = rules["all_in_one"]
        pod, container = rpod, rcontainer
        if runner_env.get("RUNNER_ROLES") != "all":
            a.append(f"RUNNER_ROLES is {runner_env.get('RUNNER_ROLES')!r}, not 'all'")
        for name in ("RUNNER_REVOCATIONS_URL", "RUNNER_REGISTRY_TOKEN"):
            if name in runner_env:
                a.append(f"{name} is set: the runner asks the registry in-process")
        reg = values.get("registry", {})
        tokens_secret = reg.get("tokens", {}).get("existingSecret") or reg.get("database", {}).get("existingSecret")
        for name, want in (("REGISTRY_DATABASE_URL", (reg.get("database", {}).get("existingSecret"),
                                                      reg.get("database", {}).get("key"))),
                           ("REGISTRY_TOKENS", (tokens_secret, reg.get("tokens", {}).get("key")))):
            ref = secret_ref(runner_env.get(name))
            if not ref or (ref.get("name"), ref.get("key")) != want or ref.get("optional"):
                a.append(f"{name} is {runner_env.get(name)!r}, not a secretKeyRef of {want}")
        public_base(runner_env, a)
        user_tokens(runner_env, pod, container, rules["user_tokens"])
        ports = {pp["name"]: pp["containerPort"] for pp in container.get("ports", [])}
        for svc in gateway_services:
            if not selects(svc["spec"]["selector"], runner_labels):
                a.append(f"Service {svc['metadata']['name']} does not select the pods that run the gateway role")
            if any(pp["targetPort"] not in ("http", ports.get("http")) for pp in svc["spec"]["ports"]):
                a.append(f"Service {svc['metadata']['name']} does not target the one listener (http)")
            if svc["spec"]["ports"][0]["port"] != g.get("service", {}).get("port"):
                a.append(f"Service {svc['metadata']['name']} port ≠ gateway.service.port")
        for np in runner_policies:
            ingress_from(np, runner_port, rules["runner_ingress"])
        return rules
    if not split or len(gateways) != 1:
        if any("GRANT" in n for n in GATEWAY_ONLY_ENV & set(runner_env)):
            rules["grants"].append("grant settings without the gateway")
        return rules

    (deployment,) = gateways
    pod, container, pod_labels = pod_of(deployment)
    env, problems = effective_env(container, config_maps)
    rules["presence"] += problems
    ports = {pp["name"]: pp["containerPort"] for pp in container.get("ports", [])}
    # Settings: role, listener, the runner's and the registry's Services.
    e = rules["env"]
    if env.get("RUNNER_ROLES") != "gateway":
        e.append(f"RUNNER_ROLES is {env.get('RUNNER_ROLES')!r}, not 'gateway'")
    if env.get("RUNNER_LISTEN") != f"0.0.0.0:{g.get('port')}":
        e.append(f"RUNNER_LISTEN is {env.get('RUNNER_LISTEN')!r}, not 0.0.0.0:<gateway.port {g.get('port')}>")
    if len(internal) == 1:
        want = f"http://{internal[0]['metadata']['name']}.{NAMESPACE}.svc:{internal[0]['spec']['ports'][0]['port']}"
        if env.get("RUNNER_BASE_URL") != want or not selects(internal[0]["spec"]["selector"], runner_labels):
            e.append(f"RUNNER_BASE_URL is {env.get('RUNNER_BASE_URL')!r}, not the runner's Service {want!r}")
    else:
        e.append(f"{len(internal)} internal runner Services")
    registry_svcs = [s for s in services if is_registry(s)]
    if split_registry(values):
        want = (f"http://{registry_svcs[0]['metadata']['name']}.{NAMESPACE}.svc:{registry_svcs[0]['spec']['ports'][0]['port']}"
                if len(registry_svcs) == 1 else None)
    else:
        want = str(g.get("registryUrl") or "").rstrip("/") or None
    if not want or env.get("GATEWAY_REGISTRY_URL") != want:
        e.append(f"GATEWAY_REGISTRY_URL is {env.get('GATEWAY_REGISTRY_URL')!r}, not {want!r}")
    public_base(env, e)
    missing = [n for n in ("RUNNER_SERVICE_TOKEN", "GATEWAY_RUNNER_TOKEN", "GATEWAY_REGISTRY_TOKEN",
                           "GATEWAY_GRANT_KEY") if n not in env]
    if missing:
        e.append(f"not set: {', '.join(missing)}")
    # Secrets: each from its Secret and key; nothing the gateway does not need.
    s = rules["secrets"]
    secret_name = values.get("secret", {}).get("name") or RELEASE
    keys = values.get("secret", {}).get("keys", {})
    reg = values.get("registry", {})
    want_runner = (g.get("runnerToken", {}).get("existingSecret") or secret_name,
                   g.get("runnerToken", {}).get("key") or keys.get("serviceToken"))
    fallback = (reg.get("tokens", {}).get("existingSecret") or reg.get("database", {}).get("existingSecret")
                if split_registry(values) else None)
    want_registry = (g.get("registryToken", {}).get("existingSecret") or fallback, g.get("registryToken", {}).get("key"))
    for name, want in (("GATEWAY_RUNNER_TOKEN", want_runner), ("RUNNER_SERVICE_TOKEN", want_runner),
                       ("GATEWAY_REGISTRY_TOKEN", want_registry)):
        ref = secret_ref(env.get(name))
        if name in env and (not ref or (ref.get("name"), ref.get("key")) != want or ref.get("optional")):
            s.append(f"the gateway's {name} is {env.get(name)!r}, not a secretKeyRef of {want}")
    leaked = sorted(n for n in env if n in NOT_FOR_GATEWAY_ENV or n.startswith("REGISTRY_"))
    if leaked:
        s.append(f"the gateway gets {', '.join(leaked)}")
    # One of the runners' tokens: checkable when the chart creates both.
    created = {o["metadata"]["name"]: o.get("stringData", {}) for o in objs if o["kind"] == "Secret"}
    gref, rref = secret_ref(env.get("GATEWAY_RUNNER_TOKEN")), secret_ref(runner_env.get("RUNNER_SERVICE_TOKEN"))
    if gref and rref and gref["name"] in created and rref["name"] in created:
        token = created[gref["name"]].get(gref["key"])
        accepted = [x.strip() for x in str(created[rref["name"]].get(rref["key"], "")).split(",")]
        if token not in accepted:
            s.append("GATEWAY_RUNNER_TOKEN is not one of the runners' RUNNER_SERVICE_TOKEN list")
    # Grants: the gateway signs with the private key, the runners verify
    # with its public JWKS, and neither file reaches the other side.
    gr = rules["grants"]
    k = g.get("grantKey", {})
    volume, key = mounted_file(env.get("GATEWAY_GRANT_KEY"), pod, container)
    if volume is None:
        gr.append(f"GATEWAY_GRANT_KEY: {key}")
    elif not source_is(volume, k.get("existingSecret"), None) or key != k.get("key") \
            or len(volume["secret"].get("items", [])) != 1:
        gr.append(f"GATEWAY_GRANT_KEY is key {key} of volume {volume['name']}, not only {k.get('key')} of Secret "
                  f"{k.get('existingSecret')}")
    jwks = k.get("jwks", {})
    volume, key = mounted_file(runner_env.get("RUNNER_GRANT_KEYS"), rpod, rcontainer)
    if volume is None:
        gr.append(f"the runners' RUNNER_GRANT_KEYS: {key} (grants are required with the gateway)")
    elif not source_is(volume, jwks.get("existingSecret") or k.get("existingSecret"), jwks.get("configMap")) \
            or key != jwks.get("key"):
        gr.append(f"the runners' RUNNER_GRANT_KEYS is key {key} of volume {volume['name']}, not gateway.grantKey.jwks'")
    for v in rpod.get("volumes", []):
        src = v.get("secret") or {}
        if src.get("secretName") == k.get("existingSecret") and (
                not src.get("items") or k.get("key") in {i["key"] for i in src["items"]}):
            gr.append(f"the runner pods mount the grant's private key (volume {v['name']})")
    user_tokens(env, pod, container, rules["user_tokens"])
    # Security, probes, resources: as the registry's.
    for what, mine, theirs in (("pod securityContext", pod.get("securityContext"), rpod.get("securityContext")),
                               ("container securityContext", container.get("securityContext"),
                                rcontainer.get("securityContext"))):
        if mine != theirs:
            rules["security"].append(f"{what} {mine} differs from the runner's {theirs}")
    for field in ("enableServiceLinks", "automountServiceAccountToken", "serviceAccountName"):
        if pod.get(field) != rpod.get(field):
            rules["security"].append(f"{field} {pod.get(field)!r} differs from the runner's {rpod.get(field)!r}")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = container.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in set(ports) | set(ports.values()):
            rules["probes"].append(f"{probe} is {got or 'missing'}, not GET {path} on a container port")
    r = rules["resources"]
    res = container.get("resources", {})
    want = f"{g.get('resources', {}).get('memoryMi')}Mi"
    if res.get("requests", {}).get("memory") != want or res.get("limits", {}).get("memory") != want:
        r.append(f"memory request/limit {res.get('requests', {}).get('memory')}/{res.get('limits', {}).get('memory')}"
                 f" ≠ gateway.resources.memoryMi {want}")
    if env.get("RUNNER_MAX_CONCURRENCY") != "1":
        r.append(f"RUNNER_MAX_CONCURRENCY {env.get('RUNNER_MAX_CONCURRENCY')!r}: the gateway executes nothing, 1")
    hpas = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"
            and o["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]]
    auto = g.get("autoscaling", {})
    if auto.get("enabled"):
        if len(hpas) != 1 or "replicas" in deployment["spec"]:
            r.append(f"gateway.autoscaling.enabled: {len(hpas)} HPAs target it, replicas "
                     f"{deployment['spec'].get('replicas')!r} (the HPA owns them)")
        elif (hpas[0]["spec"]["minReplicas"], hpas[0]["spec"]["maxReplicas"]) != (auto.get("minReplicas"),
                                                                                  auto.get("maxReplicas")):
            r.append("the gateway HPA's replicas are not gateway.autoscaling's")
    elif hpas or deployment["spec"].get("replicas") != g.get("replicas"):
        r.append(f"replicas {deployment['spec'].get('replicas')} ≠ gateway.replicas {g.get('replicas')}, or an HPA")
    # Serving: one port, its own Service, PDB and ServiceMonitor.
    sv = rules["serving"]
    if set(ports) != {"http"} or ports.get("http") != g.get("port") or "RUNNER_PUBLIC_LISTEN" in env:
        sv.append(f"container ports {ports}: one, http = gateway.port {g.get('port')}, no public listener")
    others = [d for d in deployments if d is not deployment]
    if any(selects(deployment["spec"]["selector"]["matchLabels"], pod_of(d)[2])
           or selects(d["spec"]["selector"]["matchLabels"], pod_labels) for d in others):
        sv.append("the gateway's and another Deployment's selectors overlap")
    mine = [o for o in services if selects(o["spec"]["selector"], pod_labels)]
    if len(mine) != 1 or not is_gateway(mine[0]):
        sv.append(f"Services selecting the gateway pods: {[o['metadata']['name'] for o in mine]}, not one gateway Service")
    else:
        svc = mine[0]
        if selects(svc["spec"]["selector"], runner_labels):
            sv.append(f"Service {svc['metadata']['name']} also selects the runner pods")
        if svc["spec"]["ports"][0]["port"] != g.get("service", {}).get("port"):
            sv.append(f"Service port {svc['spec']['ports'][0]['port']} ≠ gateway.service.port")
        if any(pp["targetPort"] not in ports and pp["targetPort"] not in ports.values() for pp in svc["spec"]["ports"]):
            sv.append(f"Service {svc['metadata']['name']} targets a port the gateway container lacks")
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget" and selects(o["spec"]["selector"]["matchLabels"], pod_labels)]
    if len(pdbs) != int(bool(g.get("podDisruptionBudget", {}).get("enabled"))) or any(
            selects(o["spec"]["selector"]["matchLabels"], runner_labels) for o in pdbs):
        sv.append(f"PodDisruptionBudgets of the gateway pods: {[o['metadata']['name'] for o in pdbs]}")
    sms = [o for o in objs if o["kind"] == "ServiceMonitor" and is_gateway(o)]
    if len(sms) != int(bool(g.get("serviceMonitor", {}).get("enabled"))):
        sv.append(f"{len(sms)} gateway ServiceMonitors, gateway.serviceMonitor.enabled is "
                  f"{g.get('serviceMonitor', {}).get('enabled')}")
    for sm in sms:
        targets = [o for o in services if selects(sm["spec"]["selector"]["matchLabels"], o["metadata"]["labels"])]
        if targets != mine or {ep["path"] for ep in sm["spec"]["endpoints"]} != {"/metrics"}:
            sv.append("the gateway ServiceMonitor does not scrape exactly the gateway Service's /metrics")
    if not values.get("networkPolicy", {}).get("enabled"):
        return rules
    # The runner's internal port: the gateway's pods (and the scraper) only.
    ri = rules["runner_ingress"]
    if not runner_policies:
        ri.append("no NetworkPolicy covers the runner pods")
    for np in runner_policies:
        got = rules_for_port(np, runner_port)
        peers = [x for rule in got for x in (rule.get("from") or [{"anyone": True}])]
        gateway_peers = [x for x in peers if set(x) == {"podSelector"}
                         and selects(x["podSelector"].get("matchLabels", {"-": "-"}), pod_labels)
                         and not x["podSelector"].get("matchExpressions")]
        wrong = [x for x in peers if x not in gateway_peers and (not mpeer or peer_key(x) != peer_key(mpeer))]
        if not gateway_peers:
            ri.append(f"NetworkPolicy {np['metadata']['name']} does not admit the gateway pods to runner.port {runner_port}")
        if wrong:
            ri.append(f"NetworkPolicy {np['metadata']['name']} admits {wrong} to runner.port {runner_port} "
                      "(only the gateway pods and networkPolicy.metrics may)")
        for x in gateway_peers:
            strangers = [d["metadata"]["name"] for d in others
                         if selects(x["podSelector"].get("matchLabels", {}), pod_of(d)[2])]
            if strangers:
                ri.append(f"its gateway peer also selects the pods of {strangers}")
    # The gateway's own policy.
    gp = rules["gateway_policy"]
    mine_np = [np for np in policies if selects(np["spec"]["podSelector"].get("matchLabels", {}), pod_labels)]
    if len(mine_np) != 1:
        gp.append(f"{len(mine_np)} NetworkPolicies cover the gateway pods")
        return rules
    (np,) = mine_np
    if not {"Ingress", "Egress"} <= set(np["spec"].get("policyTypes", [])):
        gp.append("it does not govern both ingress and egress")
    ingress_from(np, g.get("port"), gp)
    egress = np["spec"].get("egress", [])
    if not [x for x in egress if {pp["port"] for pp in x.get("ports", [])} == {53}]:
        gp.append("no DNS egress")

    def reaches(labels: dict, port) -> bool:
        return any(any("podSelector" in t and "namespaceSelector" not in t and "ipBlock" not in t
                       and selects(t["podSelector"].get("matchLabels", {}), labels) for t in x.get("to", []))
                   and port in {pp.get("port") for pp in x.get("ports", [])} for x in egress)
    if not reaches(runner_labels, runner_port):
        gp.append(f"no egress to the runner pods on runner.port {runner_port}")
    registry = [d for d in deployments if is_registry(d)]
    if split_registry(values) and (len(registry) != 1 or not reaches(pod_of(registry[0])[2],
                                                                      values.get("registry", {}).get("port"))):
        gp.append("no egress to the registry pods on registry.port")
    return rules


GATEWAY_RULES = {
    "presence": "the gateway Deployment exists exactly when gateway.enabled in mode split (all-in-one: only its Service)",
    "env": "gateway RUNNER_ROLES=gateway, RUNNER_LISTEN on gateway.port, RUNNER_BASE_URL = the runner Service, "
           "GATEWAY_REGISTRY_URL = the registry Service (or registryUrl), RUNNER_PUBLIC_BASE, tokens and grant key set",
    "secrets": "GATEWAY_RUNNER_TOKEN (= its RUNNER_SERVICE_TOKEN, one of the runners') and GATEWAY_REGISTRY_TOKEN "
               "from their Secrets; no S3 credentials, secrets key or registry variables in the gateway, no gateway "
               "tokens in the runner",
    "grants": "GATEWAY_GRANT_KEY only the private key of gateway.grantKey's Secret (read-only); the runners' "
              "RUNNER_GRANT_KEYS its public JWKS, never the private key",
    "user_tokens": "end users are authenticated: GATEWAY_JWT_SECRET (secretKeyRef), GATEWAY_JWKS_URL or a mounted "
                   "GATEWAY_JWKS_FILE, as gateway.userTokens says",
    "security": "gateway pod and container security context, service account and service links are the runner's",
    "probes": "gateway startup and liveness /healthz, readiness /readyz",
    "resources": "gateway memory request = limit = gateway.resources.memoryMi, RUNNER_MAX_CONCURRENCY 1, replicas "
                 "or its HPA",
    "serving": "gateway listener, Service, PodDisruptionBudget and ServiceMonitor select the gateway pods only",
    "runner_ingress": "the runner's NetworkPolicy admits only the gateway pods (and networkPolicy.metrics) to "
                      "runner.port",
    "gateway_policy": "the gateway's NetworkPolicy: gateway.port from gateway.networkPolicy.from (or anyone), egress "
                      "to DNS, the runner pods and the registry pods",
    "all_in_one": "mode all-in-one: RUNNER_ROLES=all, the registry's Secrets, RUNNER_PUBLIC_BASE, the gateway "
                  "Service on the one listener, no grant keys, service tokens or registry URLs between roles",
}
SPLIT_ONLY = {"env", "secrets", "grants", "security", "probes", "resources", "serving", "gateway_policy"}


def policy_gateway(label: str, objs: list[dict], values: dict, readme: set[str]) -> None:
    rules = gateway_problems(objs, values)
    aio, split = all_in_one(values), split_gateway(values)
    for rule, problems in rules.items():
        if rule in SPLIT_ONLY and not split and not (rule == "secrets" and problems):
            continue
        if rule in ("user_tokens", "runner_ingress") and not (aio or split):
            continue
        if rule == "runner_ingress" and not values.get("networkPolicy", {}).get("enabled"):
            continue
        if rule == "all_in_one" and not aio:
            continue
        check(f"{label}: {GATEWAY_RULES[rule]}", not problems, "; ".join(problems))
    gateways = [o for o in objs if o["kind"] == "Deployment" and is_gateway(o)]
    if split and len(gateways) == 1:
        policy_role_pod(label, "gateway", gateways[0], objs, readme)


def policy_knative(label: str, ksvc: dict, readme: set[str]) -> None:
    spec = ksvc["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env, problems = effective_env(container, {})
    check(f"{label}: environment resolves", not problems, "; ".join(problems))
    policy_env_names(label, set(env), readme)
    policy_security(label, spec, container, pod_level_allowed=False)
    policy_probes(label, container)
    policy_volumes(label, spec, container, env)
    policy_memory(label, container, env, None)
    concurrency = env.get("RUNNER_MAX_CONCURRENCY")
    check(f"{label}: containerConcurrency {spec.get('containerConcurrency')} = RUNNER_MAX_CONCURRENCY {concurrency}",
          str(spec.get("containerConcurrency")) == str(concurrency), "they must be equal")
    check(f"{label}: listens on $PORT (RUNNER_LISTEN and PORT not set)",
          "RUNNER_LISTEN" not in env and "PORT" not in env, "remove RUNNER_LISTEN/PORT: Knative assigns PORT")
    timeout_ms = int(env.get("RUNNER_MAX_TIMEOUT_MS", 30000))
    check(f"{label}: timeoutSeconds {spec.get('timeoutSeconds')} ≥ RUNNER_MAX_TIMEOUT_MS {timeout_ms} ms",
          spec.get("timeoutSeconds", 300) * 1000 >= timeout_ms, "Knative would cut executions short")


# --- Dockerfile ---------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    if buf:
        raise ValueError("Dockerfile ends inside a line continuation")
    return out


def check_dockerfile(path: Path, readme: set[str]) -> None:
    try:
        ins = dockerfile_instructions(path)
    except ValueError as e:
        fail("Dockerfile parses", str(e))
        return
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
             "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    bad = [w for w, _ in ins if w not in known]
    check(f"Dockerfile parses ({len(ins)} instructions)", not bad, f"unknown instructions {bad}")
    stages = [a for w, a in ins if w == "FROM"]
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    check("Dockerfile: builder rust:1.95-bookworm, runtime debian:bookworm-slim",
          len(stages) == 2 and stages[0].startswith("rust:1.95-bookworm ") and stages[1] == "debian:bookworm-slim",
          f"stages are {stages}")
    runs = " ".join(a for w, a in ins if w == "RUN")
    check("Dockerfile: adds wasm32-wasip2, builds ext-runner and the example",
          all(s in runs for s in ("rustup target add wasm32-wasip2", "cargo build --release --locked -p ext-runner",
                                   "scripts/build-example")), "a build step is missing")
    env: dict[str, str] = {}
    for w, a in final:
        if w == "ENV":
            for token in shlex.split(a):
                k, _, v = token.partition("=")
                env[k] = v
    final_words = {w: a for w, a in final}
    problems = []
    if final_words.get("USER") not in ("10001", "10001:10001"):
        problems.append(f"USER is {final_words.get('USER')}")
    if final_words.get("ENTRYPOINT") != '["ext-runner", "serve"]':
        problems.append(f"ENTRYPOINT is {final_words.get('ENTRYPOINT')}")
    if "HEALTHCHECK" in final_words:
        problems.append("HEALTHCHECK present (Kubernetes probes instead)")
    volumes = json.loads(final_words.get("VOLUME", "[]"))
    if env.get("RUNNER_DATA_DIR") != "/var/lib/ext-runner" or env.get("RUNNER_CACHE_DIR") not in volumes \
            or env.get("RUNNER_DATA_DIR") not in volumes:
        problems.append(f"RUNNER_DATA_DIR/RUNNER_CACHE_DIR are not /var/lib/ext-runner and VOLUMEs ({volumes})")
    if "RUNNER_LISTEN" in env:
        problems.append("RUNNER_LISTEN set in the image: it would override PORT on Knative")
    if "EXPOSE" not in final_words:
        problems.append("no EXPOSE")
    check("Dockerfile: uid 10001, ENTRYPOINT [ext-runner serve], data/cache VOLUMEs, no HEALTHCHECK",
          not problems, "; ".join(problems))
    policy_env_names("Dockerfile ENV", set(env), readme)
    ignore = path.with_name(".dockerignore")
    patterns = set(ignore.read_text().split()) if ignore.exists() else set()
    check(".dockerignore keeps target/, node_modules and .git out of the build context",
          {"target", "**/target", "**/node_modules", ".git"} <= patterns, f"patterns are {sorted(patterns)}")


# --- canaries: the checkers must reject known-bad input ------------------------------


def canaries(node_validator: Path, readme: set[str], chart: Path) -> None:
    bad_deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {}, "template": {}, "replicaz": 2}}
    try:
        kubernetes_validate.validate(bad_deploy, KUBE_VERSIONS[0], strict=True)
        fail("canary: kubernetes-validate rejects an unknown field", "it accepted spec.replicaz")
    except kubernetes_validate.ValidationError:
        ok("canary: kubernetes-validate rejects an unknown field")
    out = subprocess.run(["node", str(node_validator)], capture_output=True, text=True, check=False,
                         input=json.dumps([{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                                            "metadata": {"name": "x"},
                                            "spec": {"selector": {}, "endpoints": [{"interval": 30}]}}]))
    rejected = out.returncode == 0 and not json.loads(out.stdout)[0]["ok"]
    check("canary: the CRD validator rejects a wrongly typed ServiceMonitor", rejected, out.stderr or out.stdout)
    check("canary: a misspelt variable is not in the README table",
          "RUNNER_MAX_CONCURENCY" not in readme and "RUNNER_MAX_CONCURRENCY" in readme, "README parse is off")
    try:
        with helm.Chart.load(str(chart)) as c:
            c.render({"config": {"RUNNER_LISTEN": "0.0.0.0:1"}}, name=RELEASE, namespace=NAMESPACE)
        fail("canary: the chart refuses a chart-owned key in config", "it rendered")
    except helm.HelmError:
        ok("canary: the chart refuses a chart-owned key in config")
    try:
        helm_lint(chart, {"runner": {"maxConcurrency": "many"}}, "canary", quiet=True)
        fail("canary: values.schema.json rejects a mistyped value", "lint passed")
    except LintFailed:
        ok("canary: values.schema.json rejects a mistyped value")
    registry_url = f"http://{RELEASE}-registry.{NAMESPACE}.svc:8080{REGISTRY_VALIDATE_PATH}"
    for what, values in (
            ("the chart refuses registry.enabled without registry.database.existingSecret",
             {"registry": {"enabled": True}}),
            ("the chart refuses the runner's RUNNER_UI_VALIDATE_URL on the registry's validate route without "
             "registry.enabled (no runner token)", {"config": {"RUNNER_UI_VALIDATE_URL": registry_url}}),
            ("the chart refuses registry.enabled without a runner token (registry.runnerToken.key empty)",
             {"registry": {"enabled": True, "database": {"existingSecret": "db"}, "runnerToken": {"key": ""}}}),
            ("the chart refuses config.RUNNER_REVOCATIONS_URL with registry.enabled",
             {"registry": {"enabled": True, "database": {"existingSecret": "db"}},
              "config": {"RUNNER_REVOCATIONS_URL": "http://elsewhere.example/v1/registry/revocations"}}),
            ("the chart refuses RUNNER_REGISTRY_TOKEN in config", {"config": {"RUNNER_REGISTRY_TOKEN": "x" * 32}})):
        try:
            with helm.Chart.load(str(chart)) as c:
                c.render(values, name=RELEASE, namespace=NAMESPACE)
            fail(f"canary: {what}", "it rendered")
        except helm.HelmError:
            ok(f"canary: {what}")
    # The registry rules, fed broken copies of the full render.
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    full_values = yaml.safe_load((chart.parent.parent / "check/values-full.yaml").read_text())
    full = merge(copy.deepcopy(defaults), full_values)
    with helm.Chart.load(str(chart)) as c:
        texts = c.render(full_values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs = [d for path, t in texts.items() if path.endswith(".yaml") for d in yaml.safe_load_all(t) if d]
    check("canary: the registry rules pass the full render", not any(registry_problems(objs, full).values()),
          str(registry_problems(objs, full)))

    def broken(change) -> dict[str, list[str]]:
        copied = copy.deepcopy(objs)
        (registry,) = [o for o in copied if o["kind"] == "Deployment" and is_registry(o)]
        change(copied, registry, pod_of(registry)[1])
        return registry_problems(copied, full)

    def literal_tokens(_objs, _d, container):
        for e in container["env"]:
            if e["name"] == "REGISTRY_TOKENS":
                e.pop("valueFrom")
                e["value"] = "admin@admin=0123456789abcdef0123"

    def writable_root(_objs, _d, container):
        container["securityContext"]["readOnlyRootFilesystem"] = False

    def no_readiness(_objs, _d, container):
        container.pop("readinessProbe")

    def runner_of(copied) -> tuple[dict, dict]:
        (runner,) = [o for o in copied if o["kind"] == "Deployment" and not is_role_object(o)]
        (cm,) = [o for o in copied if o["kind"] == "ConfigMap" and o["metadata"]["name"] == RELEASE]
        return pod_of(runner)[1], cm

    def drop_runner_token(copied):
        container, _ = runner_of(copied)
        container["env"] = [e for e in container["env"] if e["name"] != "RUNNER_REGISTRY_TOKEN"]

    def runner_validates_at_registry_without_token(copied, _d, _c):
        drop_runner_token(copied)
        runner_of(copied)[1]["data"]["RUNNER_UI_VALIDATE_URL"] = registry_url

    def literal_runner_token(copied, _d, _c):
        for e in runner_of(copied)[0]["env"]:
            if e["name"] == "RUNNER_REGISTRY_TOKEN":
                e.pop("valueFrom")
                e["value"] = "fleet-token-0123456789abcdef"

    def runner_token_elsewhere(copied, _d, _c):
        for e in runner_of(copied)[0]["env"]:
            if e["name"] == "RUNNER_REGISTRY_TOKEN":
                e["valueFrom"]["secretKeyRef"]["name"] = "someone-else"

    def revocations_path_wrong(copied, _d, _c):
        cm = runner_of(copied)[1]
        cm["data"]["RUNNER_REVOCATIONS_URL"] = cm["data"]["RUNNER_REVOCATIONS_URL"].replace("revocations", "revoked")

    def no_registry_egress(copied, registry, _c):
        labels = pod_of(registry)[2]
        for np in (o for o in copied if o["kind"] == "NetworkPolicy"):
            np["spec"]["egress"] = [r for r in np["spec"]["egress"] if not any(
                selects(t.get("podSelector", {}).get("matchLabels", {"-": "-"}), labels) for t in r.get("to", []))]

    for what, change, rule in (("a literal REGISTRY_TOKENS", literal_tokens, "secrets"),
                               ("a registry security context unlike the runner's", writable_root, "security"),
                               ("a registry without a readiness probe", no_readiness, "probes"),
                               ("the runner validating installs at the registry without a runner token",
                                runner_validates_at_registry_without_token, "validate_url"),
                               ("a runner without RUNNER_REGISTRY_TOKEN",
                                lambda copied, _d, _c: drop_runner_token(copied), "runner_token"),
                               ("a literal RUNNER_REGISTRY_TOKEN", literal_runner_token, "secrets"),
                               ("a runner token from another Secret than registry.runnerToken's",
                                runner_token_elsewhere, "runner_token"),
                               ("a runner polling another path than /v1/registry/revocations", revocations_path_wrong,
                                "runner_urls"),
                               ("a runner NetworkPolicy without egress to the registry pods", no_registry_egress,
                                "runner_egress")):
        check(f"canary: the registry rules reject {what}", bool(broken(change)[rule]), "accepted")
    with helm.Chart.load(str(chart)) as c:
        texts = c.render({}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    plain = [d for path, t in texts.items() if path.endswith(".yaml") for d in yaml.safe_load_all(t) if d]
    stray = [o for o in objs if o["kind"] == "Deployment" and is_registry(o)]
    check("canary: the registry rules reject a registry Deployment while registry.enabled is false",
          bool(registry_problems(plain + stray, defaults)["presence"]), "accepted")


def gateway_canaries(chart: Path) -> None:
    """The gateway's refusals and rules must reject known-bad input."""
    def render_values(values: dict) -> list[dict]:
        with helm.Chart.load(str(chart)) as c:
            texts = c.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return [d for path, t in texts.items() if path.endswith(".yaml") for d in yaml.safe_load_all(t) if d]

    split = {"registry": {"enabled": True, "database": {"existingSecret": "db"}},
             "gateway": {"enabled": True, "publicBase": "https://ext-ui.example.com",
                         "grantKey": {"existingSecret": "grant"}, "userTokens": {"jwtSecret": {"existingSecret": "jwt"}}}}
    aio = {"mode": "all-in-one", "config": {"BUNDLE_STORAGE_URL": "s3://bundles/p"},
           "registry": {"database": {"existingSecret": "db"}},
           "gateway": {"publicBase": "https://ext.example.com", "userTokens": {"jwtSecret": {"existingSecret": "jwt"}}}}
    for what, base in (("split", split), ("all-in-one", aio)):
        try:
            render_values(base)
            ok(f"canary: the base of the {what} gateway refusals renders")
        except helm.HelmError as e:
            fail(f"canary: the base of the {what} gateway refusals renders", str(e))
    refusals = (
        ("gateway.enabled without a registry", split, {"registry": {"enabled": False}}, "GATEWAY_REGISTRY_URL"),
        ("both registry.enabled and gateway.registryUrl", split, {"gateway": {"registryUrl": "http://r.example:8080"}},
         "gateway.registryUrl"),
        ("gateway.registryUrl without a registry token Secret", split,
         {"registry": {"enabled": False}, "gateway": {"registryUrl": "http://r.example:8080"}},
         "gateway.registryToken.existingSecret"),
        ("the gateway without a registry token key", split, {"gateway": {"registryToken": {"key": ""}}},
         "gateway.registryToken.key"),
        ("the gateway without a grant key Secret", split, {"gateway": {"grantKey": {"existingSecret": ""}}},
         "gateway.grantKey.existingSecret"),
        ("the grant JWKS from both a Secret and a ConfigMap", split,
         {"gateway": {"grantKey": {"jwks": {"existingSecret": "a", "configMap": "b"}}}}, "gateway.grantKey.jwks"),
        ("the gateway without a user-token key", split,
         {"gateway": {"userTokens": {"jwtSecret": {"existingSecret": ""}}}}, "gateway.userTokens"),
        ("the gateway without gateway.publicBase", split, {"gateway": {"publicBase": ""}}, "gateway.publicBase"),
        ("the gateway without the runner's public listener", split,
         {"runner": {"publicListener": {"enabled": False}}}, "runner.publicListener.enabled"),
        ("GATEWAY_JWT_SECRET in config", split, {"config": {"GATEWAY_JWT_SECRET": "x" * 32}},
         "config.GATEWAY_JWT_SECRET"),
        ("RUNNER_GRANT_KEYS in config with the gateway", split, {"config": {"RUNNER_GRANT_KEYS": "off"}},
         "config.RUNNER_GRANT_KEYS"),
        ("a chart-owned name in gateway.config", split, {"gateway": {"config": {"RUNNER_LISTEN": "0.0.0.0:1"}}},
         "gateway.config.RUNNER_LISTEN"),
        ("the runners' whole token list as GATEWAY_RUNNER_TOKEN", split,
         {"secret": {"create": True, "serviceToken": "a" * 20 + "," + "b" * 20, "trustBundle": "x"}},
         "gateway.runnerToken"),
        ("mode all-in-one without the registry's database Secret", aio,
         {"registry": {"database": {"existingSecret": ""}}}, "registry.database.existingSecret"),
        ("mode all-in-one without a user-token key", aio,
         {"gateway": {"userTokens": {"jwtSecret": {"existingSecret": ""}}}}, "gateway.userTokens"),
        ("mode all-in-one with config.RUNNER_REVOCATIONS_URL", aio,
         {"config": {"RUNNER_REVOCATIONS_URL": "http://r.example/v1/registry/revocations"}}, "same process"),
        ("mode all-in-one with grants turned off", aio, {"config": {"RUNNER_GRANT_KEYS": "off"}},
         "config.RUNNER_GRANT_KEYS"),
        ("mode all-in-one on a file bundle store", aio, {"config": {"BUNDLE_STORAGE_URL": ""}},
         "config.BUNDLE_STORAGE_URL"),
        ("an unknown mode", split, {"mode": "both"}, "mode"),
    )
    for what, base, change, says in refusals:
        try:
            render_values(merge(copy.deepcopy(base), change))
            fail(f"canary: the chart refuses {what}", "it rendered")
        except helm.HelmError as e:
            check(f"canary: the chart refuses {what}", says in str(e), f"it failed, but not naming {says}: {e}")

    # The rules, fed broken copies of renders that pass them.
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    checks = chart.parent.parent / "check"
    bases = {}
    for name in ("values-full.yaml", "values-all-in-one.yaml"):
        given = yaml.safe_load((checks / name).read_text())
        values, objs = merge(copy.deepcopy(defaults), given), render_values(given)
        bases[name] = (values, objs)
        problems = {k: v for k, v in gateway_problems(objs, values).items() if v}
        check(f"canary: the gateway rules pass {name}", not problems, str(problems))

    def parts(copied: list[dict]) -> dict:
        deployments = [o for o in copied if o["kind"] == "Deployment"]
        out = {"runner": [d for d in deployments if not is_role_object(d)][0]}
        out["gateway"] = next((d for d in deployments if is_gateway(d)), None)
        out["cm"] = {o["metadata"]["name"]: o for o in copied if o["kind"] == "ConfigMap"}
        out["np"] = {o["metadata"]["name"]: o for o in copied if o["kind"] == "NetworkPolicy"}
        out["svc"] = {o["metadata"]["name"]: o for o in copied if o["kind"] == "Service"}
        return out

    gw = f"{RELEASE}-gateway"

    def env_of(d: dict) -> list[dict]:
        return pod_of(d)[1]["env"]

    def set_env(d: dict, name: str, entry: dict) -> None:
        env = [e for e in env_of(d) if e["name"] != name]
        pod_of(d)[1]["env"] = env + [{"name": name, **entry}]

    def internal_rule(x: dict) -> dict:
        (rule,) = [r for r in x["np"][RELEASE]["spec"]["ingress"] if 8080 in {p["port"] for p in r.get("ports", [])}]
        return rule

    def literal_registry_token(x):
        set_env(x["gateway"], "GATEWAY_REGISTRY_TOKEN", {"value": "edge-token-0123456789abcdef"})

    def gateway_gets_secrets_key(x):
        set_env(x["gateway"], "RUNNER_SECRETS_KEY", {"valueFrom": {"secretKeyRef": {"name": RELEASE,
                                                                                     "key": "runner-secrets-key"}}})

    def runner_token_elsewhere(x):
        set_env(x["gateway"], "GATEWAY_RUNNER_TOKEN", {"valueFrom": {"secretKeyRef": {"name": RELEASE, "key": "other"}}})

    def runner_gets_gateway_token(x):
        set_env(x["runner"], "GATEWAY_REGISTRY_TOKEN", {"valueFrom": {"secretKeyRef": {"name": "r", "key": "k"}}})

    def token_list(x):
        (secret,) = [o for o in x["all"] if o["kind"] == "Secret"]
        secret["stringData"]["service-token"] += ",another-service-token-0123456789"

    def no_grant_keys(x):
        x["cm"][RELEASE]["data"].pop("RUNNER_GRANT_KEYS")

    def runner_mounts_private_key(x):
        pod_of(x["runner"])[0]["volumes"].append({"name": "leak", "secret": {"secretName": "ext-runner-grant"}})

    def whole_grant_secret(x):
        for v in pod_of(x["gateway"])[0]["volumes"]:
            if v["name"] == "grant":
                v["secret"].pop("items")

    def other_registry(x):
        x["cm"][gw]["data"]["GATEWAY_REGISTRY_URL"] = "http://registry.elsewhere.svc:8080"

    def base_url_port(x):
        x["cm"][gw]["data"]["RUNNER_BASE_URL"] = x["cm"][gw]["data"]["RUNNER_BASE_URL"].replace(":8080", ":8081")

    def no_user_tokens(x):
        pod_of(x["gateway"])[1]["env"] = [e for e in env_of(x["gateway"]) if e["name"] != "GATEWAY_JWT_SECRET"]
        for name in ("GATEWAY_JWKS_URL", "GATEWAY_JWKS_FILE"):
            x["cm"][gw]["data"].pop(name)

    def extra_peer(x):
        internal_rule(x)["from"].append({"namespaceSelector": {}})

    def open_internal_port(x):
        internal_rule(x).pop("from")

    def broad_gateway_peer(x):
        internal_rule(x)["from"][0] = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}}

    def no_runner_egress(x):
        x["np"][gw]["spec"]["egress"] = [r for r in x["np"][gw]["spec"]["egress"]
                                         if 8080 not in {p["port"] for p in r.get("ports", [])}
                                         or any("namespaceSelector" in t or "ipBlock" in t for t in r.get("to", []))]

    def gateway_port_open(x):
        x["np"][gw]["spec"]["ingress"][0].pop("from")

    def service_selects_runner(x):
        x["svc"][gw]["spec"]["selector"] = {"app.kubernetes.io/instance": RELEASE}

    def gateway_memory(x):
        pod_of(x["gateway"])[1]["resources"]["limits"]["memory"] = "1Gi"

    def writable_root(x):
        pod_of(x["gateway"])[1]["securityContext"]["readOnlyRootFilesystem"] = False

    def no_readiness(x):
        pod_of(x["gateway"])[1].pop("readinessProbe")

    def aio_grant_key(x):
        x["cm"][RELEASE]["data"]["GATEWAY_GRANT_KEY"] = "/etc/ext-runner/grant/grant.pem"

    def aio_roles(x):
        x["cm"][RELEASE]["data"]["RUNNER_ROLES"] = "runner"

    def aio_service_public(x):
        x["svc"][gw]["spec"]["ports"][0]["targetPort"] = "public"

    def aio_revocations(x):
        x["cm"][RELEASE]["data"]["RUNNER_REVOCATIONS_URL"] = "http://ext-runner-registry.ext-runner.svc:8080/v1/registry/revocations"

    def aio_wider_ingress(x):
        internal_rule(x)["from"].append({"namespaceSelector": {}})

    for base, what, change, rule in (
            ("values-full.yaml", "a literal GATEWAY_REGISTRY_TOKEN", literal_registry_token, "secrets"),
            ("values-full.yaml", "a gateway with the secrets key", gateway_gets_secrets_key, "secrets"),
            ("values-full.yaml", "a gateway runner token from another key", runner_token_elsewhere, "secrets"),
            ("values-full.yaml", "a runner with the gateway's registry token", runner_gets_gateway_token, "secrets"),
            ("values-full.yaml", "a gateway runner token that is the runners' whole list", token_list, "secrets"),
            ("values-full.yaml", "runners without RUNNER_GRANT_KEYS", no_grant_keys, "grants"),
            ("values-full.yaml", "runners mounting the grant's private key", runner_mounts_private_key, "grants"),
            ("values-full.yaml", "a gateway mounting its whole grant Secret", whole_grant_secret, "grants"),
            ("values-full.yaml", "a gateway asking another registry", other_registry, "env"),
            ("values-full.yaml", "RUNNER_BASE_URL on another port than the runner Service's", base_url_port, "env"),
            ("values-full.yaml", "a gateway without a user-token key", no_user_tokens, "user_tokens"),
            ("values-full.yaml", "a runner policy admitting another peer to runner.port", extra_peer, "runner_ingress"),
            ("values-full.yaml", "a runner policy opening runner.port to everyone", open_internal_port, "runner_ingress"),
            ("values-full.yaml", "a runner policy whose gateway peer also selects the runner pods", broad_gateway_peer,
             "runner_ingress"),
            ("values-full.yaml", "a gateway policy without egress to the runner pods", no_runner_egress,
             "gateway_policy"),
            ("values-full.yaml", "a gateway policy open to anyone while gateway.networkPolicy.from is set",
             gateway_port_open, "gateway_policy"),
            ("values-full.yaml", "a gateway Service that selects the runner pods", service_selects_runner, "serving"),
            ("values-full.yaml", "a gateway memory limit unlike gateway.resources.memoryMi", gateway_memory,
             "resources"),
            ("values-full.yaml", "a gateway security context unlike the runner's", writable_root, "security"),
            ("values-full.yaml", "a gateway without a readiness probe", no_readiness, "probes"),
            ("values-all-in-one.yaml", "an all-in-one pod with a grant key file", aio_grant_key, "all_in_one"),
            ("values-all-in-one.yaml", "an all-in-one pod that runs only the runner role", aio_roles, "all_in_one"),
            ("values-all-in-one.yaml", "an all-in-one gateway Service on the public UI port", aio_service_public,
             "all_in_one"),
            ("values-all-in-one.yaml", "an all-in-one pod polling revocations over HTTP", aio_revocations,
             "all_in_one"),
            ("values-all-in-one.yaml", "an all-in-one policy admitting more than gateway.networkPolicy.from",
             aio_wider_ingress, "runner_ingress")):
        values, objs = bases[base]
        copied = copy.deepcopy(objs)
        x = parts(copied)
        x["all"] = copied
        change(x)
        check(f"canary: the gateway rules reject {what}", bool(gateway_problems(copied, values)[rule]), "accepted")
    values, objs = bases["values-full.yaml"]
    plain = render_values({})
    stray = [o for o in objs if o["kind"] == "Deployment" and is_gateway(o)]
    check("canary: the gateway rules reject a gateway Deployment while gateway.enabled is false",
          bool(gateway_problems(plain + stray, defaults)["presence"]), "accepted")


# --- Helm -------------------------------------------------------------------------------


class LintFailed(Exception):
    pass


def helm_lint(chart: Path, values: dict, label: str, quiet: bool = False) -> None:
    report = helm.lint(str(chart), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}")
    findings = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    findings += report.get("errors", [])
    if findings:
        if quiet:
            raise LintFailed("; ".join(findings))
        fail(f"helm lint --strict ({label})", "; ".join(findings))
        raise LintFailed
    infos = [m["error"] for m in report.get("messages", []) if m.get("severity") == 1]
    if not quiet:
        ok(f"helm lint --strict ({label})" + (f" [info: {'; '.join(infos)}]" if infos else ""))


def render(chart: Path, values: dict, label: str) -> list[dict]:
    with helm.Chart.load(str(chart)) as c:
        manifests = c.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        try:
            objs += [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{label}: {path} parses as YAML", str(e))
    kinds = sorted(f"{o['kind']}" for o in objs)
    ok(f"helm template ({label}): {len(objs)} documents parse as YAML: {', '.join(kinds)}")
    return objs


def node_version() -> str:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "missing"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--node-validator", type=Path, required=True)
    args = ap.parse_args()
    root = args.root
    chart = root / "deploy/helm/ext-runner"
    readme = readme_names(root / "README.md")
    check(f"README configuration table: {len(readme)} variable names", len(readme) > 20, "table not found")

    print(f"--- tools: Helm {helm.helm_sdk_version()} (helm-python-sdk {metadata.version('helm-python-sdk')}), "
          f"kubernetes-validate {metadata.version('kubernetes-validate')} (Kubernetes {', '.join(KUBE_VERSIONS)}), "
          f"PyYAML {yaml.__version__}, Node.js {node_version()}")

    print("--- Dockerfile")
    check_dockerfile(root / "Dockerfile", readme)

    print("--- Helm chart")
    value_sets = {"default values": {}}
    for f in sorted((root / "deploy/check").glob("values-*.yaml")):
        value_sets[f.name] = yaml.safe_load(f.read_text()) or {}
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    crds: list[tuple[str, dict]] = []
    for label, values in value_sets.items():
        try:
            helm_lint(chart, values, label)
        except LintFailed:
            continue
        try:
            objs = render(chart, values, label)
        except helm.HelmError as e:
            fail(f"helm template ({label})", str(e))
            continue
        for obj in objs:
            if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS:
                crds.append((label_of(label, obj), obj))
            else:
                validate_builtin(obj, label_of(label, obj))
        merged = merge(copy.deepcopy(defaults), values)
        try:
            policy_deployment(label, objs, merged, readme)
        except (KeyError, ValueError, TypeError) as e:
            fail(f"{label}: project rules", f"{type(e).__name__}: {e}")
        try:
            policy_registry(label, objs, merged, readme)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            fail(f"{label}: registry rules", f"{type(e).__name__}: {e}")
        try:
            policy_gateway(label, objs, merged, readme)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            fail(f"{label}: gateway rules", f"{type(e).__name__}: {e}")

    print("--- Knative")
    kpath = root / "deploy/knative/service.yaml"
    try:
        kdocs = [d for d in yaml.safe_load_all(kpath.read_text()) if d is not None]
        ok(f"deploy/knative/service.yaml: {len(kdocs)} document parses as YAML")
    except yaml.YAMLError as e:
        fail("deploy/knative/service.yaml parses as YAML", str(e))
        kdocs = []
    for ksvc in kdocs:
        label = label_of("knative", ksvc)
        crds.append((label, ksvc))
        pod = {k: v for k, v in ksvc["spec"]["template"]["spec"].items() if k not in KNATIVE_REVISION_FIELDS}
        validate_builtin({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ksvc"}, "spec": pod},
                         f"{label} PodSpec")
        knative_admission(ksvc, label)
        try:
            policy_knative(label, ksvc, readme)
        except (KeyError, ValueError, TypeError) as e:
            fail(f"{label}: project rules", f"{type(e).__name__}: {e}")

    check_observability(root, chart, args.node_validator)
    print("--- custom resources")
    validate_crds(crds, args.node_validator)

    print("--- canaries")
    canaries(args.node_validator, readme, chart)
    gateway_canaries(chart)

    if failures:
        print(f"check-deploy: {len(failures)} check(s) failed")
        return 1
    return 0


def merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


# --- dashboards and alert rules (dashboards.*, prometheusRule.*) ----------------

# Validated against its CRD schema by validate-crds.mjs, like ServiceMonitor.
CRD_KINDS.add(("monitoring.coreos.com/v1", "PrometheusRule"))
DASHBOARD, RULES = "dashboards/ext-runner.json", "prometheus/ext-runner-rules.yaml"
COPIES = {DASHBOARD: "deploy/grafana/ext-runner.json", RULES: "deploy/prometheus/ext-runner-rules.yaml"}
PROM_DURATION = re.compile(r"(0|([0-9]+(ms|[smhdwy]))+)")


def dashboard_problems(dashboard: dict) -> list[str]:
    """The shape the README promises: a current schema, `${datasource}` on
    every query, the tenant and extension variables, a tidy grid."""
    problems = []
    if dashboard.get("schemaVersion", 0) < 39:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} is older than Grafana 11's")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource", {})
    if (source.get("type"), source.get("query")) != ("datasource", "prometheus"):
        problems.append("no `datasource` variable of Prometheus data sources")
    for name in ("tenant", "extension"):
        var = variables.get(name, {})
        query = var.get("query", {}).get("query", "") if isinstance(var.get("query"), dict) else var.get("query", "")
        if var.get("type") != "query" or not query.startswith("label_values(") or not query.endswith(f", {name})"):
            problems.append(f"no `{name}` variable from label_values(…, {name})")
        elif var.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"variable {name} does not query ${{datasource}}")
    ids, cells = set(), set()
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"panel id {panel.get('id')} used twice")
        ids.add(panel.get("id"))
        g = panel.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"panel {title!r} is wider than the grid")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    problems.append(f"panel {title!r} overlaps another at ({x}, {y})")
                    break
                cells.add((x, y))
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets or not panel.get("description"):
            problems.append(f"panel {title!r} has no queries or no description")
        for ref in [panel.get("datasource", {})] + [t.get("datasource", {}) for t in targets]:
            if ref.get("uid") != "${datasource}":
                problems.append(f"panel {title!r} does not query ${{datasource}}")
                break
        if any(not t.get("expr", "").strip() for t in targets):
            problems.append(f"panel {title!r} has an empty query")
    return problems


def rules_problems(rules: dict) -> list[str]:
    """Every alert: a unique name, an expression, `for`, a severity and
    both annotations."""
    problems, names = [], set()
    groups = rules.get("groups") if isinstance(rules, dict) else None
    if not groups or set(rules) != {"groups"}:
        return ["not a rule-group file: only `groups:` at the top"]
    for group in groups:
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if not name or name in names:
                problems.append(f"alert name {name!r} missing or used twice")
            names.add(name)
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.append(f"{name}: no expr")
            if not PROM_DURATION.fullmatch(str(rule.get("for", ""))):
                problems.append(f"{name}: `for` is {rule.get('for')!r}")
            if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                problems.append(f"{name}: severity is not critical or warning")
            if not all(rule.get("annotations", {}).get(a) for a in ("summary", "description")):
                problems.append(f"{name}: summary or description missing")
    if not names:
        problems.append("no alerts")
    return problems


def check_observability(root: Path, chart: Path, node_validator: Path) -> None:
    """The chart's dashboard and rules files (and their copies outside the
    chart), the ConfigMap and PrometheusRule made of them: absent by default,
    the files unchanged when enabled, the sidecar label configurable."""
    print("--- dashboards and alert rules")
    texts = {}
    for in_chart, copy_path in COPIES.items():
        texts[in_chart] = (chart / in_chart).read_text()
        check(f"{copy_path} is the chart's {in_chart}, byte for byte",
              (root / copy_path).read_text() == texts[in_chart], "the copies differ: copy the chart's over")
    dashboard = json.loads(texts[DASHBOARD])
    problems = dashboard_problems(dashboard)
    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    check(f"{DASHBOARD}: {len(panels)} panels, variables datasource, tenant, extension, queries on ${{datasource}}",
          not problems, "; ".join(problems))
    rules = yaml.safe_load(texts[RULES])
    problems = rules_problems(rules)
    alerts = [r.get("alert") for g in rules.get("groups", []) for r in g.get("rules", [])] if not problems else []
    check(f"{RULES}: {len(alerts)} alerts, each with expr, for, severity, summary and description",
          not problems, "; ".join(problems))

    def rendered(values: dict) -> list[dict]:
        with helm.Chart.load(str(chart)) as c:
            manifests = c.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return [d for path, text in manifests.items() if path.endswith(".yaml")
                for d in yaml.safe_load_all(text) if d is not None]

    def dashboards_of(objs: list[dict]) -> list[dict]:
        return [o for o in objs if o["kind"] == "ConfigMap" and DASHBOARD.split("/")[1] in o.get("data", {})]

    default = rendered({})
    check("default values: no dashboard ConfigMap, no PrometheusRule",
          not dashboards_of(default) and not any(o["kind"] == "PrometheusRule" for o in default),
          "rendered although dashboards.enabled and prometheusRule.enabled default to false")
    values = yaml.safe_load((root / "deploy/check/values-observability.yaml").read_text())
    objs = rendered(values)
    maps = dashboards_of(objs)
    problems = []
    if len(maps) != 1:
        problems.append(f"{len(maps)} dashboard ConfigMaps")
    else:
        meta = maps[0]["metadata"]
        if maps[0]["data"]["ext-runner.json"] != texts[DASHBOARD]:
            problems.append("its ext-runner.json is not the chart's file")
        if meta.get("labels", {}).get("grafana_dashboard") != "1":
            problems.append("no grafana_dashboard: \"1\" label")
        if meta.get("annotations") != values["dashboards"]["annotations"]:
            problems.append(f"annotations {meta.get('annotations')}")
    check("values-observability.yaml: the dashboard ConfigMap holds the file unchanged, labelled for the sidecar",
          not problems, "; ".join(problems))
    rule_objs = [o for o in objs if o["kind"] == "PrometheusRule"]
    problems = []
    if len(rule_objs) != 1:
        problems.append(f"{len(rule_objs)} PrometheusRules")
    else:
        if rule_objs[0]["spec"] != rules:
            problems.append("its spec is not the chart's rules file")
        labels = rule_objs[0]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in values["prometheusRule"]["labels"].items()):
            problems.append(f"labels {labels}")
    check("values-observability.yaml: the PrometheusRule's spec is the rules file, with prometheusRule.labels",
          not problems, "; ".join(problems))
    custom = rendered({"dashboards": {"enabled": True, "label": "team_dashboards", "labelValue": "ext",
                                      "namespace": "monitoring"}})
    maps = dashboards_of(custom)
    check("dashboards.label, labelValue and namespace place the ConfigMap where the sidecar looks",
          len(maps) == 1 and maps[0]["metadata"]["labels"].get("team_dashboards") == "ext"
          and "grafana_dashboard" not in maps[0]["metadata"]["labels"]
          and maps[0]["metadata"]["namespace"] == "monitoring",
          f"rendered {[m['metadata'] for m in maps]}")

    bad_rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
                "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "5 minutes"}]}]}}
    out = subprocess.run(["node", str(node_validator)], capture_output=True, text=True, check=False,
                         input=json.dumps([bad_rule]))
    rejected = out.returncode == 0 and not json.loads(out.stdout)[0]["ok"]
    check("canary: the CRD validator rejects a PrometheusRule with a malformed `for`", rejected,
          out.stderr or out.stdout)
    broken = copy.deepcopy(rules)
    del broken["groups"][0]["rules"][0]["labels"]["severity"]
    broken_dash = copy.deepcopy(dashboard)
    next(p for p in broken_dash["panels"] if p.get("targets"))["targets"][0]["datasource"] = {"uid": "prom"}
    check("canary: the shape checks reject an alert without severity and a panel on a fixed data source",
          bool(rules_problems(broken)) and bool(dashboard_problems(broken_dash)), "they passed")


if __name__ == "__main__":
    sys.exit(main())
