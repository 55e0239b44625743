// `com.example.hello-ts`: examples/hello, in TypeScript.
//
// - `GET /hello` and `GET /hello/:name` (or `?name=`): a JSON greeting naming
//   the tenant, the extension and the request, plus one info log line;
// - `POST /echo`: the JSON body, echoed back;
// - `GET /visits`: counts visits per tenant in `storage.kv` (namespace
//   `hello`, key `visits`, with optimistic concurrency: a lost race retries);
// - `POST /relay` `{"url": "…"}`: `http.fetch` GET of an allowed URL with the
//   header `x-api-key: {{secret:api-key}}`: the host fills in the secret, so
//   this code never holds it; answers the upstream's status and body;
// - anything else: `404` JSON.

import { ExtError, FetchError, Request, Response, StorageError, defineHandler, http, kv, log } from '@ext-runner/sdk';

export const handler = defineHandler((req) => {
  if (req.method === 'GET') {
    if (req.matchPath('/visits') !== undefined) return visits();
    const params = req.matchPath('/hello/:name');
    if (params !== undefined) return greet(req, params.name ?? 'world');
    if (req.matchPath('/hello') !== undefined) return greet(req, req.query('name') || 'world');
  }
  if (req.method === 'POST' && req.matchPath('/echo') !== undefined) {
    return Response.json(200, req.json());
  }
  if (req.method === 'POST' && req.matchPath('/relay') !== undefined) {
    const body = req.json<{ url?: unknown }>();
    if (typeof body?.url !== 'string') throw ExtError.badRequest('body must be {"url": "…"}');
    return relay(body.url);
  }
  throw ExtError.notFound(`no route for ${req.method} ${req.path}`);
});

function greet(req: Request, name: string): Response {
  log.info(`said hello to ${name}`);
  return Response.json(200, {
    message: `Hello, ${name}!`,
    tenant: req.context.tenantId,
    extension: req.context.extensionId,
    request_id: req.context.requestId ?? null,
  });
}

/** Increments the tenant's visit counter; revisions make concurrent visits safe. */
function visits(): Response {
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = kv.get('hello', 'visits');
    const count = current === undefined ? 0 : current.json<number>();
    try {
      // Revision 0: create only if still absent.
      kv.putJson('hello', 'visits', count + 1, { expectedRevision: current?.revision ?? 0n });
      return Response.json(200, { visits: count + 1 });
    } catch (e) {
      if (e instanceof StorageError && e.code === 'conflict') continue;
      throw e;
    }
  }
  throw ExtError.internal('storage: too much contention');
}

/** Fetches `url` with the `api-key` secret as a handle the host fills in. */
function relay(url: string): Response {
  try {
    const upstream = http.get(url, { 'x-api-key': '{{secret:api-key}}' });
    return Response.json(200, { upstream_status: upstream.status, upstream_body: upstream.text() });
  } catch (e) {
    if (e instanceof FetchError) throw new ExtError(502, 'fetch_failed', `http.fetch: ${e.code}`);
    throw e;
  }
}
