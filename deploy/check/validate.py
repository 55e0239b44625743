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
    security context, probes, volumes, ports and selectors (see `policy_*`).
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


def policy_deployment(label: str, objs: list[dict], values: dict, readme: set[str]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
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
    policy_memory(label, container, env, values.get("resources", {}).get("memoryOverheadMi", 512))

    # Drain: terminationGracePeriodSeconds > preStop sleep + --shutdown-grace-ms.
    args = " ".join(container.get("args", []))
    m = re.search(r"--shutdown-grace-ms[= ](\d+)", args)
    grace_ms = int(m.group(1)) if m else 30000
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(f"{label}: terminationGracePeriodSeconds {tgps} > preStop {sleep} s + shutdown grace {grace_ms} ms",
          tgps * 1000 > sleep * 1000 + grace_ms, "the kubelet would SIGKILL a draining runner")

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
        if any(not r.get("from") for r in internal_rules):
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
        refs = {v[name]["name"] for v in env.values() if isinstance(v, dict) and name in v}
        if secrets and not refs <= secrets:
            problems.append(f"env refers to Secrets {sorted(refs - secrets)} the chart does not create")
    check(f"{label}: listeners, ports, Services, NetworkPolicy, ServiceMonitor, HPA and PDB agree",
          not problems, "; ".join(problems))


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

    print("--- custom resources")
    validate_crds(crds, args.node_validator)

    print("--- canaries")
    canaries(args.node_validator, readme, chart)

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


if __name__ == "__main__":
    sys.exit(main())
