// Validates custom resources against the schemas of their CRDs, as compiled
// into the @kubernetes-models packages (Knative Serving; Prometheus Operator:
// ServiceMonitor, PrometheusRule).
// Used by scripts/check-deploy through deploy/check/validate.py.
//
// Input (stdin): JSON array of Kubernetes objects.
// Output (stdout): JSON array, one {ok, errors} per object, same order.
// The node_modules directory comes from EXT_CHECK_NODE_MODULES (the tools
// directory), so nothing is installed next to this file.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.EXT_CHECK_NODE_MODULES;
if (!modules) {
  console.error("EXT_CHECK_NODE_MODULES is not set");
  process.exit(2);
}

// apiVersion/kind → [module file, export name]
const MODELS = {
  "serving.knative.dev/v1/Service": ["@kubernetes-models/knative/serving.knative.dev/v1/Service.js", "Service"],
  "monitoring.coreos.com/v1/ServiceMonitor": [
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
    "ServiceMonitor",
  ],
  "monitoring.coreos.com/v1/PrometheusRule": [
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
    "PrometheusRule",
  ],
};

async function model(apiVersion, kind) {
  const entry = MODELS[`${apiVersion}/${kind}`];
  if (!entry) return null;
  const module = await import(pathToFileURL(join(modules, entry[0])).href);
  return module[entry[1]];
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const Model = await model(object.apiVersion, object.kind);
  if (!Model) {
    results.push({ ok: false, errors: [`no schema for ${object.apiVersion} ${object.kind}`] });
    continue;
  }
  try {
    new Model(object).validate();
    results.push({ ok: true, errors: [] });
  } catch (error) {
    results.push({ ok: false, errors: String(error.message ?? error).split(", ") });
  }
}
process.stdout.write(JSON.stringify(results));
