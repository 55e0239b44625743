// `com.example.hello-ts`: examples/hello, in TypeScript.
//
// - `GET /hello` and `GET /hello/:name` (or `?name=`): a JSON greeting naming
//   the tenant, the extension and the request, plus one info log line;
// - `POST /echo`: the JSON body, echoed back;
// - anything else: `404` JSON.

import { ExtError, Request, Response, defineHandler, log } from '@ext-runner/sdk';

export const handler = defineHandler((req) => {
  if (req.method === 'GET') {
    const params = req.matchPath('/hello/:name');
    if (params !== undefined) return greet(req, params.name ?? 'world');
    if (req.matchPath('/hello') !== undefined) return greet(req, req.query('name') || 'world');
  }
  if (req.method === 'POST' && req.matchPath('/echo') !== undefined) {
    return Response.json(200, req.json());
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
